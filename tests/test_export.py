"""sightx-export and the runtimes: an .onnx (float and int8), a .pt2 and a hub folder made from a small checkpoint,
each graded through every runtime with the same grades, probabilities and warnings; malformed exports refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from blocked import BLOCKER
from click.testing import CliRunner
from fastapi.testclient import TestClient

from sightx import cli
from sightx.contracts.checkpoint import CheckpointError
from sightx.export import formats, verify
from sightx.export.photos import ExportError
from sightx.inference import runtimes
from sightx.inference.grader import Grader
from sightx.inference.predict import grade_inputs
from sightx.models.factory import build_model
from sightx.serve import ServeConfig, create_app


@pytest.fixture(scope="module")
def photos(tiny_raw: Path) -> list[Path]:
    return sorted((tiny_raw / "train").glob("*.jpeg"))[:10]


@pytest.fixture(scope="module")
def exports(tiny_checkpoint: Path, tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three formats (and int8) of tiny_checkpoint, made through the CLI as a user would."""
    out = tmp_path_factory.mktemp("exports")
    runner = CliRunner()
    made = {"onnx": out / "model.onnx", "torch-export": out / "model.pt2", "hub": out / "hub"}
    for fmt, path in made.items():
        args = [str(tiny_checkpoint), "--format", fmt, "--out", str(path), "--n-photos", "20", "--json", str(out / f"{fmt}.json")]
        if fmt == "onnx":
            args += ["--quantize", "--photos", str(tiny_raw / "train")]
        if fmt == "hub":
            args += ["--dataset", "synthetic"]
        result = runner.invoke(cli.export, args)
        assert result.exit_code == 0, result.output
        assert "of PyTorch" in result.output
    made["int8"] = out / "model.int8.onnx"
    made["reports"] = out
    return made


def test_onnx_export_has_dynamic_batch_metadata_and_matches_pytorch(exports: dict[str, Path], tiny_checkpoint: Path) -> None:
    report = json.loads((exports["reports"] / "onnx.json").read_text())
    assert report["max_difference"] <= verify.TOLERANCE and report["photos"] == 20
    model = onnx.load(str(exports["onnx"]))
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # symbolic: any batch size
    meta = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert meta["head"] == "classify" and meta["arch"] == "resnet18" and meta["image_size"] == 64
    assert meta["thresholds"] == [0.5, 1.5, 2.5, 3.5] and meta["preprocess"]["size"] == 64
    assert meta["normalization"] == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert "temperature" not in meta  # none recorded by this run
    int8 = report["int8"]
    assert exports["int8"].is_file() and int8["calibration_photos"] == 16 and int8["agreement_photos"] == 4
    assert 0 <= int8["grade_agreement"] <= 1
    assert exports["int8"].stat().st_size < exports["onnx"].stat().st_size / 2


def test_torch_export_program_carries_the_facts(exports: dict[str, Path]) -> None:
    extra = {"sightx.json": ""}
    program = torch.export.load(str(exports["torch-export"]), extra_files=extra)
    facts = json.loads(extra["sightx.json"])
    assert facts["head"] == "classify" and facts["preprocess"]["size"] == 64
    out = program.module()(torch.zeros(5, 3, 64, 64))
    assert out.shape == (5, 5)


def test_hub_folder_is_config_safetensors_and_a_model_card(exports: dict[str, Path], tiny_checkpoint: Path) -> None:
    folder = exports["hub"]
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["arch"] == "resnet18" and config["val"]["kappa"] == 0.5 and "model" not in config
    card = (folder / "README.md").read_text()
    for words in ("resnet18", "screening aid, not a diagnosis", "validation split", "Populations and cameras", "Gradability"):
        assert words in card
    assert "licence of the data: synthetic photos" in card
    assert "| quadratic weighted kappa | 0.500 |" in card


def _rows(checkpoint: str | Path, runtime: str, photos: list[Path]) -> list[dict]:
    return grade_inputs(Grader(checkpoint, "cpu", runtime=runtime), photos, batch_size=4, progress=False)


@pytest.mark.parametrize(
    ("model", "runtime"), [("hub", "torch"), ("hub", "auto"), ("onnx", "onnxruntime"), ("onnx", "openvino"), ("onnx", "auto")]
)
def test_every_runtime_gives_the_same_grades_probabilities_and_warnings(
    exports: dict[str, Path], tiny_checkpoint: Path, photos: list[Path], model: str, runtime: str
) -> None:
    reference = _rows(tiny_checkpoint, "torch", photos)
    rows = _rows(exports[model], runtime, photos)
    assert [r["image"] for r in rows] == [r["image"] for r in reference]
    for a, b in zip(reference, rows):
        assert a["level"] == b["level"] and a["warnings"] == b["warnings"] and a["gradability"] == b["gradability"]
        assert max(abs(a[f"p{k}"] - b[f"p{k}"]) for k in range(5)) <= 1e-4


def test_openvino_bf16_grades_within_its_rounding_and_is_never_chosen_by_auto(
    exports: dict[str, Path], tiny_checkpoint: Path, photos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not runtimes.cpu_has_bf16():
        pytest.skip("this CPU has no bf16 instructions: OpenVINO would run float32")
    assert Grader(exports["onnx"], "cpu", runtime="openvino-bf16").runtime.name == "openvino-bf16"
    reference, f32, bf16 = (
        _rows(m, r, photos) for m, r in ((tiny_checkpoint, "torch"), (exports["onnx"], "openvino"), (exports["onnx"], "openvino-bf16"))
    )
    gaps = [max(abs(a[f"p{k}"] - b[f"p{k}"]) for k in range(5)) for a, b in zip(reference, bf16)]
    assert 1e-4 < max(gaps) <= 0.05  # really computed in bfloat16 (float32 agrees within 1e-4), and close
    assert max(max(abs(a[f"p{k}"] - b[f"p{k}"]) for k in range(5)) for a, b in zip(reference, f32)) <= 1e-4
    assert [(r["warnings"], r["gradability"]) for r in bf16] == [(r["warnings"], r["gradability"]) for r in reference]
    assert Grader(exports["onnx"], "cpu").runtime.name in ("openvino", "onnxruntime")  # auto: float32 only
    monkeypatch.setattr(runtimes, "cpu_has_bf16", lambda: False)  # as on a CPU without bf16 instructions
    _one_line_error(exports["onnx"], "needs a CPU with bf16 instructions", runtime="openvino-bf16")


def test_auto_picks_a_runtime_that_reads_the_file(exports: dict[str, Path], tiny_checkpoint: Path) -> None:
    assert Grader(tiny_checkpoint, "cpu").runtime.name == "torch"
    assert Grader(exports["hub"], "cpu").runtime.name == "torch"
    assert Grader(exports["onnx"], "cpu").runtime.name == runtimes.CPU_ORDER[0]


def test_int8_grades_through_both_onnx_runtimes(exports: dict[str, Path], photos: list[Path]) -> None:
    a, b = (_rows(exports["int8"], r, photos) for r in ("onnxruntime", "openvino"))
    assert all(r["level"] != "" and not r["error"] for r in a + b)


def test_pytorch_runs_folded_channels_last_with_the_same_outputs() -> None:
    for arch in ("resnet18", "efficientnet_b0"):
        torch.manual_seed(0)
        model = build_model(arch, "classify").eval()
        for m in model.modules():  # batch norms with real statistics, as a trained model has
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        x = torch.randn(2, 3, 64, 64)
        with torch.inference_mode():
            before = model(x)
        fast = runtimes.TorchRuntime(model, torch.device("cpu"))
        assert fast.channels_last and not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.module.modules())
        assert torch.allclose(fast(x), before, atol=1e-4)


def test_served_onnx_answers_as_pytorch_and_grad_cam_says_why_not(
    exports: dict[str, Path], tiny_checkpoint: Path, photos: list[Path]
) -> None:
    answers = []
    for grader in (Grader(tiny_checkpoint, "cpu"), Grader(exports["onnx"], "cpu", runtime="onnxruntime")):
        with TestClient(create_app(grader, ServeConfig(tune_batch=False)), base_url="http://127.0.0.1") as client:  # a Host it answers
            res = client.post("/v1/grade", content=photos[0].read_bytes(), headers={"content-type": "image/jpeg"})
            assert res.status_code == 200
            answers.append(res.json()["results"][0])
            info = client.get("/v1/model").json()
            assert info["runtime"] == grader.runtime.name and info["cam"] == (grader.model is not None)
            cam = client.post("/v1/grade?cam=1", content=photos[0].read_bytes(), headers={"content-type": "image/jpeg"})
            if grader.model is None:
                assert cam.status_code == 400 and cam.json()["detail"].startswith("Grad-CAM needs PyTorch")
                assert "\n" not in cam.json()["detail"]
            else:
                assert cam.status_code == 200 and cam.json()["results"][0]["cam_png"]
    torch_answer, onnx_answer = answers
    assert torch_answer["grade"] == onnx_answer["grade"] and torch_answer["warnings"] == onnx_answer["warnings"]
    assert np.allclose(torch_answer["probabilities"], onnx_answer["probabilities"], atol=1e-4)


def test_hub_folder_loads_from_hf_hub_without_the_network(exports: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    asked = []

    def snapshot_download(repo: str, revision: str | None = None, allow_patterns: list[str] | None = None) -> str:
        asked.append((repo, revision))
        return str(exports["hub"])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    grader = Grader("hf-hub:someone/sightx-dr@v1", "cpu")
    assert asked == [("someone/sightx-dr", "v1")] and grader.checkpoint.arch == "resnet18"


def _one_line_error(source: str | Path, match: str, runtime: str = "auto") -> None:
    with pytest.raises((CheckpointError, runtimes.RuntimeChoiceError), match=match) as e:
        Grader(source, "cpu", runtime=runtime)
    assert "\n" not in str(e.value)


def test_malformed_exports_are_one_line_errors(exports: dict[str, Path], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not a protobuf at all" * 10)
    _one_line_error(garbage, "not an ONNX model")
    bare = tmp_path / "bare.onnx"
    model = onnx.load(str(exports["onnx"]))
    del model.metadata_props[:]
    bare.write_bytes(model.SerializeToString())
    _one_line_error(bare, "no SightX metadata")
    edited = tmp_path / "edited.onnx"
    onnx.helper.set_model_props(model, {"format": '"sightx-checkpoint"', "version": "2", "arch": '"resnet18"', "head": '"nope"'})
    edited.write_bytes(model.SerializeToString())
    _one_line_error(edited, "head 'nope'")

    def folder(name: str, config: bytes | None, weights: bytes | None) -> Path:
        path = tmp_path / name
        path.mkdir()
        if config is not None:
            (path / "config.json").write_bytes(config)
        if weights is not None:
            (path / "model.safetensors").write_bytes(weights)
        return path

    good_config = (exports["hub"] / "config.json").read_bytes()
    good_weights = (exports["hub"] / "model.safetensors").read_bytes()
    _one_line_error(folder("empty", None, None), "no config.json")
    _one_line_error(folder("badjson", b"{not json", good_weights), "not JSON")
    _one_line_error(folder("noweights", good_config, None), "no readable model.safetensors")
    _one_line_error(folder("pickle", good_config, b"\x80\x04\x95" + b"x" * 64), "not a safetensors file")
    _one_line_error(folder("truncated", good_config, good_weights[: len(good_weights) // 2]), "not a safetensors file")
    wrong = json.loads(good_config)
    wrong["arch"] = "resnet34"
    _one_line_error(folder("wrongarch", json.dumps(wrong).encode(), good_weights), "do not fit a resnet34")


def test_runtimes_that_cannot_run_the_file_say_so(exports: dict[str, Path], tiny_checkpoint: Path) -> None:
    _one_line_error(tiny_checkpoint, "runs an exported model: sightx-export", runtime="onnxruntime")
    _one_line_error(exports["onnx"], "needs the PyTorch weights", runtime="torch")
    result = CliRunner().invoke(cli.predict, [str(tiny_checkpoint), "--checkpoint", str(tiny_checkpoint), "--runtime", "openvino"])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "Error: --runtime openvino runs an exported model" in result.output


def test_an_export_that_does_not_match_pytorch_is_refused_and_not_left(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify, "TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="does not match PyTorch"):
        formats.export(str(tiny_checkpoint), "onnx", tmp_path / "m.onnx", n_photos=0)
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_what_it_cannot_make(exports: dict[str, Path], tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="already exported"):
        formats.export(str(exports["onnx"]), "hub", tmp_path / "h")
    with pytest.raises(ExportError, match="--quantize"):
        formats.export(str(tiny_checkpoint), "hub", tmp_path / "h", quantize=True)


CLI = """
import sightx.cli
getattr(sightx.cli, sys.argv[2])(sys.argv[3:], prog_name="sightx-" + sys.argv[2])
"""


def _without(packages: str, command: str, *args: str) -> str:
    """The one stderr line of a CLI command run where `packages` are not installed (exit status 1)."""
    proc = subprocess.run([sys.executable, "-c", BLOCKER + CLI, packages, command, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    return line


def test_missing_export_packages_are_one_line_naming_the_install(tiny_checkpoint: Path, tmp_path: Path) -> None:
    line = _without("onnxscript", "export", str(tiny_checkpoint), "--format", "onnx", "--out", str(tmp_path / "m.onnx"))
    assert line == "Error: --format onnx needs onnx, onnxscript, onnxruntime: pip install 'sightx[export]' (missing: onnxscript)"
    line = _without("safetensors", "export", str(tiny_checkpoint), "--format", "hub", "--out", str(tmp_path / "hub"))
    assert line == "Error: --format hub needs safetensors: pip install 'sightx[export]' (missing: safetensors)"
    assert not (tmp_path / "hub").exists()


def test_an_onnx_without_its_runtimes_is_one_line_naming_the_install(exports: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process: torch._dynamo asks importlib for onnxruntime, so the import blocker cannot hide it from a child."""
    monkeypatch.setattr(runtimes, "installed", lambda name: name == "torch")
    _one_line_error(exports["onnx"], r"grading an \.onnx needs ONNX Runtime or OpenVINO: pip install 'sightx\[export\]'")
    _one_line_error(exports["onnx"], "--runtime openvino is not installed: pip install openvino", runtime="openvino")


def test_the_model_card_reads_the_runs_shards_and_metrics(tiny_checkpoint: Path, tiny_shards: Path) -> None:
    import dataclasses

    from sightx.contracts.checkpoint import load
    from sightx.export.card import model_card

    state = dataclasses.replace(load(tiny_checkpoint), config={"shards": str(tiny_shards), "epochs": 30, "weights": "imagenet"})
    card = model_card(state, dataset="eyepacs")
    assert "- train: 30 photos (" in card and "- val: 10 photos (" in card  # the manifest's split sizes
    assert "best epoch 1 of 30, initial weights imagenet" in card
    assert "licence of the data: EyePACS via the Kaggle Diabetic Retinopathy Detection competition" in card
    assert "| referable DR AUROC | 0.900 |" in card and "thresholds" not in card  # a classifier has none to show
    assert "licence of the data: CC BY 4.0 (ours)" in model_card(state, license="CC BY 4.0 (ours)", dataset="eyepacs")


def test_a_calibrated_checkpoints_temperature_travels_with_every_export(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """sightx-evaluate --fit-temperature stores T in the checkpoint; an export's metadata (the .onnx's, the
    .pt2's, the hub folder's config) carries it back, so the grader divides the logits by it as for the .pt."""
    import dataclasses

    from sightx.contracts import checkpoint as ckpt
    from sightx.contracts.exported import from_metadata, metadata

    state = dataclasses.replace(ckpt.load(tiny_checkpoint), temperature=2.5)
    assert from_metadata(metadata(state), "x.onnx").temperature == 2.5


def test_int8_calibrated_on_a_shard_sets_train_split_reports_its_qwk_change_on_val(
    tiny_checkpoint: Path, tiny_shards: Path, tmp_path: Path
) -> None:
    """--shards: the train split calibrates, the val split checks; the QWK of each model there is what
    sightx-evaluate's path (the stored samples through the grader) computes for the same file."""
    from sightx.evaluation.metrics import quadratic_weighted_kappa
    from sightx.inference.labelled import collect

    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(
        cli.export,
        [
            str(tiny_checkpoint),
            "--format",
            "onnx",
            "--out",
            str(out),
            "--quantize",
            "--shards",
            str(tiny_shards),
            "--json",
            str(tmp_path / "r.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    int8 = json.loads((tmp_path / "r.json").read_text())["int8"]
    manifest = json.loads((tiny_shards / "manifest.json").read_text())
    assert int8["calibration_photos"] == formats.CALIBRATION and int8["agreement_photos"] == manifest["splits"]["val"]["count"]
    for name, path in (("float", out), ("int8", out.with_name("m.int8.onnx"))):
        grader = Grader(path, "cpu", runtime="onnxruntime")
        seen = collect(grader, [tiny_shards], split="val", progress=False)
        want = quadratic_weighted_kappa(seen.grades, grader.head.grades(seen.outputs, grader.thresholds))
        assert int8["qwk"][name] == pytest.approx(want, abs=1e-4), name
    assert int8["qwk"]["change"] == pytest.approx(int8["qwk"]["int8"] - int8["qwk"]["float"], abs=1e-4)
    assert f"(change {int8['qwk']['change']:+.4f})" in result.output
    with pytest.raises(ExportError, match="not both"):
        formats.export(str(tiny_checkpoint), "onnx", tmp_path / "x.onnx", photos=tmp_path, shards=tiny_shards)


def test_sightx_evaluate_scores_an_exported_model_as_served(
    exports: dict[str, Path], tiny_checkpoint: Path, tiny_shards: Path, tmp_path: Path
) -> None:
    """--runtime: the .onnx through ONNX Runtime scores what the .pt scores (the same outputs within 1e-4)."""
    found = {}
    for name, source, runtime in (("pt", tiny_checkpoint, "torch"), ("onnx", exports["onnx"], "onnxruntime")):
        args = [str(source), str(tiny_shards), "--out", str(tmp_path / name), "--bootstrap", "20", "--quiet", "--runtime", runtime]
        result = CliRunner().invoke(cli.evaluate, args)
        assert result.exit_code == 0, result.output
        found[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert found["onnx"]["n"] == found["pt"]["n"] and found["onnx"]["qwk"]["estimate"] == pytest.approx(
        found["pt"]["qwk"]["estimate"], abs=1e-6
    )
    assert found["onnx"]["calibration"]["nll"] == pytest.approx(found["pt"]["calibration"]["nll"], abs=1e-3)
    args = [str(exports["onnx"]), str(tiny_shards), "--out", str(tmp_path / "t"), "--quiet", "--fit-temperature", str(tmp_path / "t.pt")]
    result = CliRunner().invoke(cli.evaluate, args)
    assert result.exit_code == 1 and "--fit-temperature writes a copy of a .pt checkpoint" in result.output
