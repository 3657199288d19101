"""--weights hf-hub:ORG/NAME: read through huggingface_hub's own cache. Nothing is downloaded: the success path
is a small checkpoint built here and laid out as huggingface_hub's cache holds one, read with HF_HUB_OFFLINE=1;
the refusals are the hub's own error classes, made by huggingface_hub from HTTP responses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sightx.models import hub_weights
from sightx.models.factory import build_model
from sightx.models.foreign import ForeignWeightsError

pytest.importorskip("huggingface_hub")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TRAIN = "from sightx.cli import train; train()"


def _offline_env(hf_home: Path) -> dict[str, str]:
    """The test's environment with huggingface_hub offline and its cache under `hf_home`, no token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home)}


def _cache(hf_home: Path, repo: str, files: dict[str, dict[str, torch.Tensor]]) -> None:
    """`files` as huggingface_hub's cache holds a download of `repo` at COMMIT, its main branch."""
    from safetensors.torch import save_file

    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    for name, state in files.items():
        save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / name))


def _train(shards: Path, out: Path, weights: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    args = [str(shards), "--out", str(out), "--arch", "resnet18", "--weights", weights, "--image-size", "32"]
    args += ["--epochs", "1", "--batch-size", "8", "--workers", "0", "--quiet"]
    return subprocess.run([sys.executable, "-c", TRAIN, *args], env=env, capture_output=True, text=True, timeout=300)


def test_a_cached_hub_checkpoint_trains_offline_and_is_recorded(tiny_shards: Path, tmp_path: Path) -> None:
    imagenet = build_model("resnet18", "classify").state_dict() | {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    _cache(tmp_path / "hf", "someone/retina-r18", {"model.safetensors": imagenet})
    done = _train(tiny_shards, tmp_path / "run", "hf-hub:someone/retina-r18", _offline_env(tmp_path / "hf"))
    assert done.returncode == 0, done.stderr
    line = "--weights hf-hub:someone/retina-r18 (safetensors state dict, model.safetensors@" + COMMIT + "): loaded "
    assert line in done.stderr and "2 missing (fc.weight, fc.bias), 2 ignored" in done.stderr
    record = json.loads((tmp_path / "run" / "weights.json").read_text())
    assert record["path"] == "hf-hub:someone/retina-r18" and record["resolved"] == f"model.safetensors@{COMMIT}"
    assert record["ignored"]["fc.weight"].startswith("shape (1000, 512)") and "layer4.1.conv2.weight" in record["loaded"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["weights"] == "hf-hub:someone/retina-r18"


def test_offline_and_not_cached_is_one_line_through_the_cli(tiny_shards: Path, tmp_path: Path) -> None:
    (tmp_path / "hf").mkdir()
    done = _train(tiny_shards, tmp_path / "run", "hf-hub:someone/not-cached", _offline_env(tmp_path / "hf"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "hf-hub:someone/not-cached: not in the Hugging Face cache" in done.stderr
    assert "run once online" in done.stderr and "--weights PATH" in done.stderr


def test_a_retfound_style_repository_is_found_by_its_own_file_name(tmp_path: Path) -> None:
    assert hub_weights.candidates("YukunZhou/RETFound_mae_natureCFP") == (
        "model.safetensors",
        "pytorch_model.bin",
        "RETFound_mae_natureCFP.pth",
    )
    assert hub_weights.parse("hf-hub:org/name@v1.0") == ("org/name", "v1.0")
    assert hub_weights.parse("hf-hub:org/name") == ("org/name", None)
    for bad in ("hf-hub:name", "hf-hub:org/", "hf-hub:a/b/c"):
        with pytest.raises(ForeignWeightsError, match=r"hf-hub:ORG/NAME\[@REVISION\]"):
            hub_weights.parse(bad)


def _hub_error(status: int, code: str) -> Exception:
    """The exception huggingface_hub raises for this answer of the hub."""
    import httpx2
    from huggingface_hub.utils import HfHubHTTPError, hf_raise_for_status

    url = "https://huggingface.co/org/model/resolve/main/model.safetensors"
    response = httpx2.Response(status, headers={"X-Error-Code": code}, request=httpx2.Request("HEAD", url))
    with pytest.raises(HfHubHTTPError) as e:
        hf_raise_for_status(response)
    return e.value


@pytest.mark.parametrize(
    ("status", "code", "says"),
    [
        (401, "GatedRepo", "gated and you are not logged in here: accept its licence on https://huggingface.co/org/model"),
        (403, "GatedRepo", "gated and this account has no access yet: accept its licence"),
        (401, "RepoNotFound", "no such model on the hub (https://huggingface.co/org/model), or it is private"),
        (404, "RevisionNotFound", "org/model has no revision 'v9'"),
        (500, "", "the hub refused the download"),
    ],
)
def test_the_hubs_refusals_are_one_line_saying_what_to_do(status: int, code: str, says: str) -> None:
    message = str(hub_weights.explain("hf-hub:org/model@v9", _hub_error(status, code)))
    assert says in message and "\n" not in message
    if code == "GatedRepo":
        assert "hf auth login" in message and "--weights PATH" in message
