"""Serve stage, hostile clients: the latency of a normal client while slow clients hold connections
open (and while a slow-to-decode photo is in flight), and the server's memory over and after a
burst of decompression bombs. The real `sightx-serve` process, from outside, on 127.0.0.1.

Slow clients send their headers and a Content-Length and then one byte a second: never idle long
enough for --read-idle-s, so each holds its connection until --read-total-s. On Linux each comes
from its own loopback address (127.0.1.x), as a crowd of clients would, so --max-per-client does
not turn them away; where only 127.0.0.1 exists the server is started with a per-client limit
above their number instead. The bombs are black PNGs with a sparse speckle: 20 MP (under the 25 MP serving limit,
decoded: about a second and 60 MB each) in requests of 8, from `clients` clients at once, then
requests of 16 at 30 MP (over it: refused from the headers).
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sightx.bench.options import BenchError, BenchOptions
from sightx.bench.serve import rss_mb, server
from sightx.bench.stats import sig

_HEAD = "POST /v1/grade HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\nContent-Length: 10000000\r\n\r\n"
_DRIBBLE_S = 1.0  # a byte from each slow client this often
_SETTLE_S = 1.5  # idle time before reading the RSS after the burst (the server trims after 0.2 s)


def speckled_png(width: int, height: int) -> bytes:
    """Black with a sparse speckle: an all-black PNG is refused from its header (too few bytes for its
    pixels, sightx/image/limits.py); this one holds what a real photo must and is decoded at full cost."""
    from PIL import Image

    speckle = (np.random.default_rng(0).random((height, width)) < 0.05).astype(np.uint8) * 8
    buf = io.BytesIO()
    Image.fromarray(np.repeat(speckle[..., None], 3, axis=2)).save(buf, format="PNG")
    return buf.getvalue()


def loopback_sources(n: int) -> list[str] | None:
    """n distinct loopback addresses to connect from, or None where only 127.0.0.1 answers."""
    sources = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(n)]
    try:
        with socket.socket() as s:
            s.bind((sources[-1], 0))
    except OSError:
        return None
    return sources


@contextlib.contextmanager
def slow_clients(url: str, sources: list[str]) -> Iterator[list[socket.socket]]:
    host, port = url.removeprefix("http://").split(":")
    opened: list[socket.socket] = []
    stop = threading.Event()

    def dribble() -> None:
        while not stop.wait(_DRIBBLE_S):
            for s in opened:
                with contextlib.suppress(OSError):
                    s.send(b"x")

    thread = threading.Thread(target=dribble, daemon=True)
    try:
        for src in sources:
            s = socket.socket()
            s.bind((src, 0))
            s.connect((host, int(port)))
            s.sendall(_HEAD.encode())
            opened.append(s)
        thread.start()
        yield opened
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        for s in opened:
            s.close()


def _still_open(sockets: list[socket.socket]) -> int:
    """How many the server has neither answered nor closed."""
    n = 0
    for s in sockets:
        s.setblocking(False)
        try:
            n += not s.recv(1, socket.MSG_PEEK) == b""  # data (an answer) or EOF: done with it
        except BlockingIOError:
            n += 1
        except OSError:
            pass
        finally:
            s.setblocking(True)
    return n


def _latency(post: Callable[[], None], n: int) -> dict[str, Any]:
    ms = []
    for _ in range(n):
        start = time.perf_counter()
        post()
        ms.append((time.perf_counter() - start) * 1000)
    p50, p95 = np.percentile(ms, [50, 95])
    return {"requests": n, "p50_ms": sig(float(p50)), "p95_ms": sig(float(p95)), "max_ms": sig(max(ms))}


def bomb_burst(url: str, pid: int, clients: int, requests: int, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """`requests` requests of 8 20 MP zero PNGs from `clients` clients at once, then one of 16 at 30 MP:
    the RSS before, its peak (sampled every 20 ms), after settling, and each kind's answers."""
    import httpx

    accepted, refused = speckled_png(5000, 4000), speckled_png(6000, 5000)
    before = rss_mb(pid)[0]
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            with contextlib.suppress(OSError, KeyError, ValueError):
                peak.append(rss_mb(pid)[0])

    def post(files: list[tuple[str, tuple[str, bytes]]]) -> tuple[int, float]:
        start = time.perf_counter()
        res = httpx.post(f"{url}/v1/grade", files=files, timeout=600)
        return res.status_code, time.perf_counter() - start

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda i: post([("files", (f"{i}-{j}.png", accepted)) for j in range(8)]), range(requests)))
    burst_s = time.perf_counter() - start
    status, refused_s = post([("files", (f"b{j}.png", refused)) for j in range(16)])
    done.set()
    sampler.join()
    time.sleep(_SETTLE_S)
    after = rss_mb(pid)[0]
    log(f"serve  bombs: RSS {before:.0f} -> peak {max(peak):.0f} -> {after:.0f} MB after {_SETTLE_S} s idle")
    return {
        "requests": requests,
        "clients": clients,
        "photos_per_request": 8,
        "photo_mp": 20,
        "statuses": sorted({a[0] for a in answers}),
        "burst_s": sig(burst_s),
        "rss_mb_before": round(before, 1),
        "rss_mb_peak": round(max(peak), 1),
        "rss_mb_after": round(after, 1),
        "kept_mb": round(after - before, 1),
        "over_limit": {"photos": 16, "photo_mp": 30, "status": status, "ms": sig(refused_s * 1000)},
    }


def measure(opts: BenchOptions, ckpt: Path, photo: bytes, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    import httpx

    n_slow = opts.serve_slow_clients
    sources = loopback_sources(n_slow)
    extra = [] if sources else ["--max-per-client", str(n_slow + 8)]
    with server(ckpt, opts.device, 8, opts.workers, work / "serve-hostile.log", extra) as (url, proc):
        client = httpx.Client(base_url=url, timeout=600)

        def post() -> None:
            res = client.post("/v1/grade", content=photo, headers={"content-type": "image/jpeg"})
            if res.status_code != 200:
                raise BenchError(f"sightx-serve answered {res.status_code}: {res.text[:200]}")

        try:
            post()
            result: dict[str, Any] = {"slow_clients": n_slow, "distinct_addresses": sources is not None}
            result["alone"] = _latency(post, opts.serve_load_requests)
            with slow_clients(url, sources or ["127.0.0.1"] * n_slow) as slow:
                time.sleep(0.5)
                result["with_slow_clients"] = _latency(post, opts.serve_load_requests)
                slow_png = speckled_png(5000, 4000)
                stop = threading.Event()

                def decode_slowly() -> None:
                    while not stop.is_set():
                        httpx.post(f"{url}/v1/grade", content=slow_png, headers={"content-type": "image/png"}, timeout=600)

                hog = threading.Thread(target=decode_slowly, daemon=True)
                hog.start()
                try:
                    result["with_slow_clients_and_a_slow_photo"] = _latency(post, opts.serve_load_requests)
                finally:
                    stop.set()
                    hog.join()
                result["slow_clients_still_open"] = _still_open(slow)
            a, s, b = (result[k]["p95_ms"] for k in ("alone", "with_slow_clients", "with_slow_clients_and_a_slow_photo"))
            log(f"serve  p95 {a} ms alone, {s} ms with {n_slow} slow clients, {b} ms with a 20 MP PNG decoding too")
            time.sleep(_SETTLE_S)
            result["bombs"] = bomb_burst(url, proc.pid, opts.serve_clients, opts.serve_bomb_requests, log)
        finally:
            client.close()
    return result
