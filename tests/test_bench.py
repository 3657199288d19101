"""sightx-bench --quick end to end on tiny generated images: real processes, the result's shape,
every figure positive. Never asserts speed: that depends on the machine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sightx.bench import BenchError, BenchOptions, run_bench
from sightx.bench.engines import DASK_ENGINES, ENGINES
from sightx.bench.load import PIPELINES
from sightx.bench.options import parse_model
from sightx.bench.report import TARGETS, render
from sightx.bench.sources import SOURCES
from sightx.cli import bench as bench_cli

# Figures that must be positive wherever they appear; ratios and shares are checked by name below.
FIGURES = {"median", "min", "max", "mb_per_s", "end_to_end_images_per_s", "peak_rss_mb", "images_per_epoch"}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("bench")
    # img2dataset is not a test dependency: point at nothing so its row is "not available" everywhere.
    return run_bench(
        BenchOptions.smoke(stages=("shard", "load", "train"), workers=2, work=str(work), img2dataset=str(work / "no-img2dataset"))
    )


def _numbers(node: Any, key: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _numbers(v, k)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield key, node


def test_result_shape(result: dict[str, Any]) -> None:
    assert result["format"] == "sightx-bench" and result["version"] == 1
    assert {"machine", "options", "shard", "load", "train", "targets", "elapsed_s"} <= set(result)
    shard = result["shard"]
    assert list(shard["engines"]) == list(ENGINES)
    for name, engine in shard["engines"].items():
        if name == "img2dataset":
            assert engine["error"] and not engine["runs"]
            continue
        assert set(engine["runs"]) == {"1", "2"}, name
        for w, run in engine["runs"].items():
            assert run["workers"] == int(w)
            expected = range(0, 1) if name == "decode-floor" else range(1, shard["input"]["images"] + 1)
            assert run["written"] in expected, (name, w)  # SightX may reject an ungradable shot
    assert set(shard["sightx_ratio"]) == set(ENGINES) - {"img2dataset"}
    assert set(shard["decode_floor_multiple"]) == {"1", "2"}
    assert set(shard["projection"]["hours"]["sightx"]) == {"2", "10"}
    steps = shard["breakdown"]["steps_ms"]
    assert steps["decode at reduced DCT scale"] > 0 and steps["field-of-view search"] > 0 and shard["breakdown"]["total_ms"] > 0
    assert list(result["load"]["pipelines"]) == list(PIPELINES)
    assert [t["target"] for t in result["targets"]] == [t[0] for t in TARGETS]
    json.loads(json.dumps(result))  # plain JSON all the way down


def test_every_figure_is_positive(result: dict[str, Any]) -> None:
    figures = [(k, v) for k, v in _numbers(result) if k in FIGURES]
    assert len(figures) > 40 and all(v > 0 for _, v in figures), [f for f in figures if f[1] <= 0]
    shard = result["shard"]
    assert all(v > 0 for r in shard["sightx_ratio"].values() for v in r.values())
    assert all(v > 0 for v in shard["scaling_efficiency"].values())
    assert all(v > 0 for h in shard["projection"]["hours"].values() for v in h.values())
    assert all(r["field_fill"] > 0 for e, row in shard["engines"].items() if e != "decode-floor" for r in row["runs"].values())
    assert result["load"]["sightx_ratio"] > 0
    assert result["train"]["images_per_s"]["median"] > 0 and result["train"]["loader_over_model"] > 0
    assert all(t["value"] is None or t["value"] > 0 for t in result["targets"])


def test_tables_name_every_row(result: dict[str, Any]) -> None:
    text, md = render(result, markdown=False), render(result, markdown=True)
    for label in [e["label"] for e in result["shard"]["engines"].values()] + [p["label"] for p in result["load"]["pipelines"].values()]:
        assert label in text and f"| {label} |" in md
    assert "not available:" in text and "projection" in text and "88,702" in md


def test_cli_quick_single_stage(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(bench_cli, ["train", "--quick", "--quiet", "--markdown", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert "train" in data and "shard" not in data and "load" not in data
    assert data["train"]["images_per_s"]["median"] > 0
    assert "| cpu" in res.output or "| cuda" in res.output or "| mps" in res.output


def test_cli_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(bench_cli, ["shard", "--quick", "--quiet", "--input", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "Error: --input" in res.output and "Traceback" not in res.output


def test_work_folder_must_be_empty(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(BenchError, match="not empty"):
        run_bench(BenchOptions.smoke(stages=("train",), work=str(tmp_path)))
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_options_refuse_too_few_images() -> None:
    with pytest.raises(BenchError, match="twice --workers"):
        BenchOptions(images=3, workers=2)


@pytest.mark.slow
def test_the_dask_option_measures_sightx_on_dask_against_its_pool(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    result = run_bench(BenchOptions.smoke(stages=("shard",), executor="dask-local", workers=2, work=str(tmp_path)))
    shard = result["shard"]
    assert list(shard["engines"]) == list(DASK_ENGINES)  # the same engine, pool and Dask, nothing else
    written = {e: [r["written"] for r in row["runs"].values()] for e, row in shard["engines"].items()}
    assert written["sightx-dask"] == written["sightx"] and min(written["sightx"]) >= 1
    d = shard["dask"]
    rates = {w: shard["engines"][e]["runs"][w]["images_per_s"]["median"] for e in DASK_ENGINES for w in ("1", "2")}
    assert set(d["overhead_per_image"]) == set(d["images_per_s_per_core"]) == {"1", "2"} == set(rates)
    assert all(v > -1 for v in d["overhead_per_image"].values()) and all(v > 0 for v in d["images_per_s_per_core"].values())
    assert d["input_mb_per_image"] == pytest.approx(shard["input"]["mb"] / shard["input"]["images"], rel=0.01)
    assert d["scaling_efficiency"] == shard["scaling_efficiency"]["sightx-dask"] > 0
    cluster = d["projection"]["workers"]
    assert list(cluster) == ["16", "64", "256"]
    assert cluster["64"]["images_per_s"] == pytest.approx(4 * cluster["16"]["images_per_s"], rel=0.01)
    assert cluster["64"]["read_mb_per_s"] == pytest.approx(cluster["64"]["images_per_s"] * d["input_mb_per_image"], rel=0.01)
    text = render(result, markdown=True)
    assert "| SightX on Dask (LocalCluster) |" in text and "overhead per image" in text and "filesystem read MB/s" in text


@pytest.fixture(scope="module")
def sources_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The sources stage on six tiny images, one worker (in-process builds: fast)."""
    return run_bench(BenchOptions.smoke(stages=("sources",), workers=1, work=str(tmp_path_factory.mktemp("sources"))))


def test_sources_stage_shards_every_form_of_the_download_to_the_same_bytes(sources_result: dict[str, Any]) -> None:
    s = sources_result["sources"]
    assert list(s["sources"]) == list(SOURCES)
    for name, row in s["sources"].items():
        assert row["same_bytes_as_folder"], name  # computed from the outputs' sha256: a real check
        run = row["runs"]["1"]
        assert run["written"] == s["sources"]["folder"]["runs"]["1"]["written"] > 0, name
        assert run["images_per_s"]["median"] > 0 and run["read_mb_per_s"] > 0 and run["peak_rss_mb"] > 0, name
    assert s["ratio"]["folder"] == {"1": 1.0, "top": 1.0}
    assert all(r["top"] > 0 for r in s["ratio"].values())
    d = s["download"]
    assert d["unpacked_extra_mb"] > d["download_mb"] and d["direct_s"]["median"] > 0 and d["unpack_s"]["median"] > 0
    targets = {t["target"]: t for t in sources_result["targets"]}
    assert targets["competition zip (streamed) >= 0.9x the folder, N workers"]["value"] == s["ratio"]["competition zip"]["top"]
    text = render(sources_result, markdown=True)
    assert "| competition zip |" in text and "unzip the outer zip, join the parts" in text


def test_serve_stage_measures_the_real_server(tmp_path: Path) -> None:
    result = run_bench(BenchOptions.smoke(stages=("serve",), work=str(tmp_path)))
    s = result["serve"]
    m = s["models"]["resnet18:64:64"]
    assert "error" not in m, m
    for key in ("one_client", "n_clients", "n_clients_max_batch_1"):
        assert m[key]["photos_per_s"] > 0 and 0 < m[key]["p50_ms"] <= m[key]["p95_ms"], key
    assert m["one_client"]["mean_batch"] == 1 and m["n_clients_max_batch_1"]["mean_batch"] == 1
    assert 1 <= m["n_clients"]["mean_batch"] <= 2  # two clients: batches of one or two photos
    mem = m["memory"]
    assert mem["requests"] >= 24 and not mem["stopped_by_time"] and mem["early"]["rss_mb"] > 0
    assert mem["rss_mb_series"][-1] == [mem["end"]["requests"], mem["end"]["rss_mb"]]
    assert s["headline_clients_gain"] == m["clients_gain"] > 0
    assert "| resnet18 at 64 px, 64 px fields |" in render(result, markdown=True)
    h = s["hostile"]
    for key in ("alone", "with_slow_clients", "with_slow_clients_and_a_slow_photo"):
        assert 0 < h[key]["p50_ms"] <= h[key]["p95_ms"], key
    assert h["slow_clients"] == 8 and h["slow_clients_still_open"] == 8  # held, not refused, while the normal client was served
    b = h["bombs"]
    assert b["statuses"] == [200] and b["over_limit"]["status"] == 422 and b["rss_mb_peak"] >= b["rss_mb_before"] > 0
    assert "slow clients holding connections" in render(result, markdown=True)
    r = m["runtimes"]  # --quick compares PyTorch and int8 ONNX Runtime against eager PyTorch
    assert set(r["variants"]) == {"torch", "onnxruntime-int8"} and r["photos"] == 4
    assert r["export_max_difference"] <= 1e-4 and r["torch-eager"]["model"]["batch_1"] > 0
    for v in r["variants"].values():
        assert v["model"]["batch_1"] > 0 and v["x_eager_batch_1"] > 0 and 0 <= v["grade_agreement"] <= 1
        assert v["one_client"]["photos_per_s"] > 0 and v["n_clients"]["p50_ms"] <= v["n_clients"]["p95_ms"]
    assert r["variants"]["torch"]["grade_agreement"] == 1.0  # folded batch norms, channels-last: the same grades
    assert s["runtime_targets"]["float"]["variant"] == "torch" and s["runtime_targets"]["int8"]["variant"] == "onnxruntime-int8"
    targets = {t["target"]: t for t in result["targets"]}
    int8 = targets["serve: fastest int8 runtime >= 3x eager PyTorch, batch 1"]
    assert int8["value"] == r["variants"]["onnxruntime-int8"]["x_eager_batch_1"]
    text = render(result, markdown=True)
    assert "serve: runtimes, against eager PyTorch" in text and "| resnet18:64:64 | onnxruntime-int8 |" in text


def test_serve_model_specs_are_checked_before_work(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="ARCH:INPUT_PX:FIELD_PX"):
        BenchOptions(serve_models=("resnet18-160",))
    with pytest.raises(BenchError, match="not found"):
        BenchOptions(serve_models=(str(tmp_path / "best.pt"),))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError, match="not a SightX checkpoint"):
        BenchOptions(serve_models=(str(tmp_path / "bad.pt"),))
    assert parse_model(str(tiny_checkpoint)) == ("resnet18", 64, 64)  # a trained checkpoint is served as it is
