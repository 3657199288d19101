"""Serve stage: latency, throughput and memory of the real `sightx-serve` process, from outside,
over HTTP on 127.0.0.1 (issue 13's speed section).

For each model a checkpoint of that shape is built in the run (seeded, untrained: a forward pass
costs what a trained one's does), or a trained one named by its path is used as it is, and served
by `python -m sightx.serve` on a free loopback port.
One full-resolution synthetic EyePACS-size JPEG is posted again and again as a raw image body:
one client after another (latency p50/p95; photos/s at one client), then N clients at once
(photos/s, latency under load, the batch sizes the server reports), then in chunks of 100 at N
clients up to the request total, reading the server's RSS after each chunk: flat means the RSS
after the first ~100 requests equals the RSS at the end. A second server with --max-batch 1 under
the same N clients gives the micro-batching effect. The clients run in this process, on the same
cores as the server: on a small machine they take some of its CPU.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from sightx.bench.options import BenchError, BenchOptions, parse_model, trained_checkpoint
from sightx.bench.stats import sig

_READY_S = 120.0  # model load and warm-up on a slow machine
_CHUNK = 100  # requests between two RSS readings in the memory run
_TIMEOUT_S = 300.0  # one request: ResNet50 batches on two cores take seconds


def build_checkpoint(path: Path, arch: str, image_size: int, field: int) -> Path:
    """A seeded, untrained SightX checkpoint of this architecture and these sizes."""
    import torch

    from sightx.contracts.checkpoint import Checkpoint, save
    from sightx.image.preprocess import PreprocessOptions
    from sightx.models.factory import build_model

    torch.manual_seed(0)
    model = build_model(arch, "classify")
    pre = PreprocessOptions(size=field).to_dict()
    save(
        path,
        Checkpoint(
            arch=arch, head="classify", image_size=image_size, preprocess=pre, thresholds=[0.5, 1.5, 2.5, 3.5], model=model.state_dict()
        ),
    )
    return path


def free_port() -> int:
    """A loopback port free now (the OS picks it), for a server started next; tests and tools/ use it too."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> tuple[float, float | None]:
    """(current RSS, peak RSS or None where the OS does not say) of process pid, in MB."""
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024, None  # KiB on macOS and Linux alike


@contextlib.contextmanager
def server(
    checkpoint: Path, device: str, max_batch: int, workers: int, log_path: Path, extra: list[str] | None = None, runtime: str = "auto"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The real service in its own process, ready (its /readyz answered), stopped afterwards."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "sightx.serve", "--checkpoint", str(checkpoint), "--port", str(port), "--device", device]
    cmd += ["--max-batch", str(max_batch), "--workers", str(workers), "--max-queue", "256", "--max-per-client", "256", "--runtime", runtime]
    cmd += extra or []
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + _READY_S
            while True:
                if proc.poll() is not None:
                    tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                    raise BenchError(f"sightx-serve exited {proc.returncode}: {tail[0]}")
                if time.monotonic() > deadline:
                    raise BenchError(f"sightx-serve was not ready after {_READY_S:.0f} s")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                        break
                time.sleep(0.2)
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Load:
    """Clients posting the same photo; each answer's wall time and the batch the server put it in."""

    def __init__(self, url: str, photo: bytes) -> None:
        import httpx

        self.photo = photo
        self.client = httpx.Client(base_url=url, timeout=_TIMEOUT_S, limits=httpx.Limits(max_connections=256))
        self.answered = 0

    def one(self, _: int = 0) -> tuple[float, int]:
        start = time.perf_counter()
        res = self.client.post("/v1/grade", content=self.photo, headers={"content-type": "image/jpeg"})
        took = time.perf_counter() - start
        if res.status_code != 200:
            raise BenchError(f"sightx-serve answered {res.status_code}: {res.text[:200]}")
        self.answered += 1
        return took, int(res.json()["results"][0]["batch_size"])

    def run(self, requests: int, clients: int) -> dict[str, Any]:
        """`requests` posts from `clients` threads at once: photos/s, latency, mean batch size."""
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(self.one, range(requests)))
        elapsed = time.perf_counter() - start
        ms = np.array([a[0] for a in answers]) * 1000
        p50, p95 = np.percentile(ms, [50, 95])
        return {
            "clients": clients,
            "requests": requests,
            "photos_per_s": sig(requests / elapsed),
            "p50_ms": sig(float(p50)),
            "p95_ms": sig(float(p95)),
            "mean_batch": sig(float(np.mean([a[1] for a in answers])), 3),
        }

    def close(self) -> None:
        self.client.close()


def measure_model(opts: BenchOptions, spec: str, photo: bytes, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """One model: the batching server (latency, throughput, memory), then the --max-batch 1 one."""
    arch, image_size, field = parse_model(spec)
    trained = trained_checkpoint(spec)
    ckpt = trained or build_checkpoint(work / f"serve-{arch}-{image_size}-{field}.pt", arch, image_size, field)
    clients, n = opts.serve_clients, opts.serve_load_requests
    batch = 8
    result: dict[str, Any] = {
        "arch": arch,
        "image_size": image_size,
        "field": field,
        "checkpoint": str(ckpt),
        "trained": trained is not None,
        "max_batch": batch,
        "workers": opts.workers,
    }
    with server(ckpt, opts.device, batch, opts.workers, work / "serve-batched.log") as (url, proc):
        load = Load(url, photo)
        try:
            model = load.client.get("/v1/model").json()
            result["tuned_batch"], result["batch_ms_per_photo"] = model["max_batch"], model["batch_ms_per_photo"]
            load.run(2, 1)  # warm-up: first requests allocate buffers, fill caches
            result["one_client"] = load.run(n, 1)
            result["n_clients"] = load.run(n * 2, clients)
            one, many = result["one_client"]["photos_per_s"], result["n_clients"]["photos_per_s"]
            log(f"serve  {spec}: {one} photos/s at 1 client, {many} at {clients}")
            result["memory"] = _memory(load, proc.pid, opts, clients)
        finally:
            load.close()
    with server(ckpt, opts.device, 1, opts.workers, work / "serve-unbatched.log") as (url, _):
        load = Load(url, photo)
        try:
            load.run(2, 1)
            result["n_clients_max_batch_1"] = load.run(n * 2, clients)
        finally:
            load.close()
    result["clients_gain"] = sig(result["n_clients"]["photos_per_s"] / result["one_client"]["photos_per_s"], 3)
    result["batching_gain"] = sig(result["n_clients"]["photos_per_s"] / result["n_clients_max_batch_1"]["photos_per_s"], 3)
    log(f"serve  {spec}: {clients} clients {result['clients_gain']}x one client; batching {result['batching_gain']}x --max-batch 1")
    if opts.serve_runtimes:
        from sightx.bench.runtimes import compare

        result["runtimes"] = compare(opts, spec, ckpt, photo, work, log, fit=trained is None)
    return result


def _memory(load: Load, pid: int, opts: BenchOptions, clients: int) -> dict[str, Any]:
    """Chunks of requests at `clients` clients until opts.serve_requests are answered in all (or
    opts.serve_max_s have passed); the server's RSS after each chunk."""
    chunk = min(_CHUNK, max(1, opts.serve_requests // 4))
    series = [(load.answered, round(rss_mb(pid)[0], 1))]
    start = time.perf_counter()
    while load.answered < opts.serve_requests and time.perf_counter() - start < opts.serve_max_s:
        load.run(min(chunk, opts.serve_requests - load.answered), clients)
        series.append((load.answered, round(rss_mb(pid)[0], 1)))
    early = next((s for s in series if s[0] >= min(_CHUNK, opts.serve_requests // 2)), series[-1])
    end = series[-1]
    peak = rss_mb(pid)[1]
    return {
        "requests": end[0],
        "stopped_by_time": end[0] < opts.serve_requests,
        "rss_mb_series": [list(s) for s in series],
        "early": {"requests": early[0], "rss_mb": early[1]},
        "end": {"requests": end[0], "rss_mb": end[1]},
        "growth_mb": round(end[1] - early[1], 1),
        "peak_rss_mb": None if peak is None else round(peak, 1),
    }


def stage(opts: BenchOptions, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Every --serve-model on the same photo; a model that fails to serve becomes an error row."""
    from sightx.synth.render import ImageSpec, render

    photo = render(ImageSpec(seed=(3,), grade=3, right_eye=True, size=opts.serve_photo, quality=90, ungradable_rate=0)).jpeg
    models: dict[str, Any] = {}
    for spec in opts.serve_models:
        try:
            models[spec] = measure_model(opts, spec, photo, work, log)
        except BenchError as e:
            log(f"serve  {spec}: failed: {e}")
            models[spec] = {"error": str(e)}
    first = models[opts.serve_models[0]]
    hostile: dict[str, Any] | None = None
    if "error" not in first:
        from sightx.bench import serve_hostile

        try:
            hostile = serve_hostile.measure(opts, Path(first["checkpoint"]), photo, work, log)
        except BenchError as e:
            log(f"serve  hostile clients: failed: {e}")
            hostile = {"error": str(e)}
    compared = [m["runtimes"]["targets"] for m in models.values() if m.get("runtimes")]
    return {
        "hostile": hostile,
        "photo": {"width": opts.serve_photo[0], "height": opts.serve_photo[1], "mb": round(len(photo) / 1e6, 2)},
        "device": opts.device,
        "clients": opts.serve_clients,
        "models": models,
        "headline_clients_gain": first.get("clients_gain"),
        # the runtime targets of the last model compared (the largest: ResNet50 at 512 px by default)
        "runtime_targets": compared[-1] if compared else None,
    }
