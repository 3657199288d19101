"""The learned gradability score: EyeQ quality labels, quality shards, --task gradability, the model's
score in predict and serve. Real synthetic photos (with the generator's ungradable shots), real shards,
real torch training, a real HTTP app in-process."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from eyeq import eyeq_csv
from fastapi.testclient import TestClient

from sightx import cli
from sightx.contracts import checkpoint as ckpt
from sightx.contracts import manifest as mf
from sightx.contracts import sample as smp
from sightx.contracts.verify import verify
from sightx.evaluation import metrics
from sightx.image.preprocess import PreprocessOptions
from sightx.inference.gradability_model import GradabilityModelError, load
from sightx.inference.grader import Grader
from sightx.labels.files import LabelError
from sightx.labels.formats import detect, read_label_set
from sightx.serve import ServeConfig, create_app
from sightx.shard import ShardOptions, run
from sightx.synth.generate import SynthOptions, generate
from sightx.train import TrainConfig, train

PRE = PreprocessOptions(size=64, quality=90)  # tiny_checkpoint's, so its photos and the model's agree


@pytest.fixture(scope="module")
def quality_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 photos, 40% of them ungradable, with an EyeQ-style label file beside train/."""
    root = tmp_path_factory.mktemp("quality_raw")
    generate(root, SynthOptions(n=100, seed=5, sizes=((400, 267),), workers=2, ungradable_rate=0.4, progress=False))
    eyeq_csv(root)
    return root


@pytest.fixture(scope="module")
def quality_shards(quality_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quality_shards")
    opts = ShardOptions(PRE, shard_size=50, val_fraction=0.25, seed=1, labels=str(quality_raw / "Label_EyeQ_train.csv"), progress=False)
    run(quality_raw / "train", out, opts)
    return out


@pytest.fixture(scope="module")
def quality_run(quality_shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("quality_run")
    cfg = TrainConfig(
        shards=str(quality_shards),
        out=str(out),
        task="gradability",
        arch="resnet18",
        image_size=64,
        batch_size=16,
        workers=0,
        epochs=4,
        lr=2e-3,
        weight_decay=1e-4,
        progress=False,
    )
    train(cfg)
    return out


def test_eyeq_labels_are_read_with_or_without_the_index_column(tmp_path: Path) -> None:
    indexed = b",image,quality,DR_grade\n0,10_left.jpeg,0,1\n1,10_right.jpeg,2,0\n2,13_left.jpeg,1,4\n"
    plain = b"image,quality\n10_left.jpeg,0\n10_right.jpeg,2\n13_left.jpeg,1\n"
    for data in (indexed, plain):
        assert detect(data) == "eyeq"
        labels = read_label_set(data, "Label_EyeQ_train.csv")
        assert (labels.format, labels.kind) == ("eyeq", "quality")
        assert labels.grades == {"10_left": 0, "10_right": 2, "13_left": 1} and not labels.ungradable
    with pytest.raises(LabelError, match=r"quality not in 0-2 on line\(s\) 3"):
        read_label_set(b"image,quality\n10_left.jpeg,0\n10_right.jpeg,3\n", "q.csv")
    with pytest.raises(LabelError, match="grade not in 0-4"):  # a DR file keeps its 0-4 check
        read_label_set(b"image,level\n10_left,5\n", "trainLabels.csv")


def test_quality_shards_say_what_their_classes_are_and_dr_shards_are_unchanged(quality_shards: Path, tiny_shards: Path) -> None:
    m = mf.read(quality_shards)
    assert (m["labels"], m["version"], mf.num_classes(m)) == ("quality", 2, 3)
    assert all(len(info["grades"]) == 3 for info in m["splits"].values())
    assert m["splits"]["train"]["grades"][2] > 8  # enough Rejects to learn from
    with tarfile.open(mf.shard_file(quality_shards, mf.shards_of(m, "train")[0])) as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile(next(n for n in names if n.endswith(".json"))).read())  # type: ignore[union-attr]
        cls = int(tar.extractfile(next(n for n in names if n.endswith(".cls"))).read())  # type: ignore[union-attr]
    assert meta["grade"] is None and meta["quality"] == cls
    assert verify(quality_shards, deep=True).ok  # counts, members and .json checked against the quality kind

    dr = mf.read(tiny_shards)
    assert "labels" not in dr and dr["version"] == 1 and mf.labels_of(dr) == "grade"
    with tarfile.open(mf.shard_file(tiny_shards, mf.shards_of(dr, "train")[0])) as tar:
        meta = json.loads(tar.extractfile(next(n for n in tar.getnames() if n.endswith(".json"))).read())  # type: ignore[union-attr]
    assert "quality" not in meta and isinstance(meta["grade"], int)


def test_a_quality_manifest_with_dr_sized_counts_or_an_unknown_kind_is_refused(quality_shards: Path, tmp_path: Path) -> None:
    m = mf.read(quality_shards)
    for edit, message in (({"labels": "colour"}, "labels is 'colour'"), ({"labels": "grade"}, "not 5 counts")):
        (tmp_path / mf.MANIFEST).write_text(json.dumps({**m, **edit}))
        with pytest.raises(mf.ManifestError, match=message):
            mf.read(tmp_path)


def test_each_trainer_refuses_the_other_kind_of_shards(quality_shards: Path, tiny_shards: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    fast = ["--arch", "resnet18", "--image-size", "32", "--workers", "0", "--epochs", "1", "--quiet"]
    dr = runner.invoke(cli.train, [str(quality_shards), "--out", str(tmp_path / "a"), *fast])
    assert dr.exit_code == 1 and "labelled with quality classes, not grade" in dr.output and len(dr.output.strip().splitlines()) == 1
    q = runner.invoke(cli.train, [str(tiny_shards), "--out", str(tmp_path / "b"), "--task", "gradability", *fast])
    assert q.exit_code == 1 and "labelled with grade classes, not quality" in q.output and len(q.output.strip().splitlines()) == 1
    bad = runner.invoke(cli.train, [str(quality_shards), "--out", str(tmp_path / "c"), "--task", "gradability", "--head", "regress", *fast])
    assert bad.exit_code == 1 and "--head regress does not apply" in bad.output
    end = runner.invoke(
        cli.train, [str(quality_shards), "--out", str(tmp_path / "d"), "--task", "gradability", "--balance-end", "1,2,2,2,2", *fast]
    )
    assert end.exit_code == 1 and "--balance-end needs 3 positive weights, one per quality class" in end.output


def test_gradability_training_reports_reject_auc_and_saves_a_gradability_checkpoint(quality_run: Path, quality_shards: Path) -> None:
    history = [json.loads(line) for line in (quality_run / "metrics.jsonl").read_text().splitlines()]
    val = history[-1]["val"]
    n_val = mf.read(quality_shards)["splits"]["val"]["count"]
    assert val["n"] == n_val and np.asarray(val["confusion"]).shape == (3, 3)
    assert {"accuracy", "kappa", "reject", "baseline", "loss", "per_grade_recall"} <= set(val)
    state = ckpt.load(quality_run / "best.pt")
    assert (state.task, state.head, state.preprocess) == ("gradability", "quality", PRE.to_dict())
    best = max(h["val"]["reject"]["auc"] for h in history)
    assert state.val is not None and state.val["reject"]["auc"] == best  # best.pt is chosen by Reject AUC


def test_the_learned_score_separates_held_out_rejects_and_goes_into_predictions(
    quality_run: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Photos the model never saw (another seed), scored through sightx-predict --gradability-model."""
    held = tmp_path / "held"
    generate(held, SynthOptions(n=40, seed=6, sizes=((400, 267),), workers=2, ungradable_rate=0.4, progress=False))
    quality = eyeq_csv(held)
    out = tmp_path / "pred.csv"
    args = [str(held / "train"), "--checkpoint", str(tiny_checkpoint), "--gradability-model", str(quality_run / "best.pt")]
    result = CliRunner().invoke(cli.predict, [*args, "--out", str(out), "--workers", "1", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(quality) and all(r["error"] == "" for r in rows)
    scores = np.array([float(r["gradability_model"]) for r in rows])
    assert ((scores >= 0) & (scores <= 1)).all()
    rejects = np.array([quality[r["image"]] == 2 for r in rows])
    assert 6 <= rejects.sum() <= len(rows) - 6
    auc = metrics.roc_auc(~rejects, scores)  # higher score = gradable
    assert auc is not None and auc >= 0.8, auc


def test_models_are_refused_in_the_other_role_and_across_preprocessing(quality_run: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ckpt.CheckpointError, match="is a grade model .* not a gradability one: pass it as --checkpoint"):
        load(tiny_checkpoint)
    with pytest.raises(ckpt.CheckpointError, match="is a gradability model .* pass it as --gradability-model"):
        Grader(quality_run / "best.pt")
    model = load(quality_run / "best.pt", "cpu")
    with pytest.raises(GradabilityModelError, match="size 64 vs 128"):
        model.check_preprocess(PreprocessOptions(size=128, quality=90), "these photos")
    state = ckpt.load(tiny_checkpoint)
    state.preprocess = PreprocessOptions(size=64, quality=90, normalize="clahe").to_dict()
    ckpt.save(tmp_path / "clahe.pt", state)
    result = CliRunner().invoke(
        cli.predict,
        [str(tmp_path), "--checkpoint", str(tmp_path / "clahe.pt"), "--gradability-model", str(quality_run / "best.pt"), "--quiet"],
    )
    assert result.exit_code == 1 and "normalize 'graham' vs 'clahe'" in result.output and len(result.output.strip().splitlines()) == 1


def test_the_score_is_one_minus_p_reject_on_stored_fields(quality_run: Path, quality_shards: Path) -> None:
    model = load(quality_run / "best.pt", "cpu")
    m = mf.read(quality_shards)
    samples = list(smp.read_samples(mf.shard_file(quality_shards, mf.shards_of(m, "val")[0])))[:6]
    images = [smp.decode_sample(smp.image_of(parts)) for _, parts in samples]
    probs = model.probabilities(images)
    assert probs.shape == (6, 3) and np.allclose(probs.sum(1), 1, atol=1e-4)
    np.testing.assert_allclose(model.score(images), 1 - probs[:, 2], atol=1e-6)
    np.testing.assert_allclose(model.score_jpegs([smp.image_of(p) for _, p in samples]), model.score(images), atol=1e-6)
    assert model.score([]).shape == (0,)


def test_the_server_adds_the_learned_score_to_each_result(quality_run: Path, tiny_checkpoint: Path, quality_raw: Path) -> None:
    app = create_app(Grader(tiny_checkpoint, "cpu"), ServeConfig(workers=1), load(quality_run / "best.pt", "cpu"))
    photo = sorted((quality_raw / "train").glob("*.jpeg"))[0].read_bytes()
    with TestClient(app, base_url="http://127.0.0.1") as client:
        r = client.post("/v1/grade", files=[("files", ("a.jpeg", io.BytesIO(photo), "image/jpeg"))] * 2)
        assert r.status_code == 200, r.text
        scores = [res["gradability_model"] for res in r.json()["results"]]
        assert all(0 <= s <= 1 for s in scores) and scores[0] == scores[1]
        assert client.get("/v1/model").json()["gradability_model"] == ckpt.load(quality_run / "best.pt").sha256
    plain = create_app(Grader(tiny_checkpoint, "cpu"), ServeConfig(workers=1))
    with TestClient(plain, base_url="http://127.0.0.1") as client:
        r = client.post("/v1/grade", content=photo, headers={"content-type": "image/jpeg"})
        assert r.json()["results"][0]["gradability_model"] is None


def test_a_version_1_checkpoint_still_grades(tiny_checkpoint: Path, tmp_path: Path) -> None:
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["version"] = 1
    del state["task"]
    torch.save(state, tmp_path / "v1.pt")
    assert Grader(tmp_path / "v1.pt", "cpu").checkpoint.task == "grade"
