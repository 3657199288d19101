"""Latency, throughput and memory of a running sightx-serve process, from outside, over HTTP on 127.0.0.1.

    python tools/serve_load.py CHECKPOINT [--requests 40] [--clients 8]

Starts `python -m sightx.serve` on a free loopback port, sends one full-resolution synthetic EyePACS
photo (3888x2592) repeatedly: one client after another for latency, then 1 and N clients at once for
throughput; reads the server's peak RSS (VmHWM) from /proc. A measurement aid, not a benchmark stage.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from sightx.synth.render import ImageSpec, render


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    photo = render(ImageSpec(seed=(3,), grade=3, right_eye=True, size=(3888, 2592), quality=90, ungradable_rate=0)).jpeg
    port = _port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "sightx.serve", "--checkpoint", args.checkpoint, "--port", str(port), "--max-queue", "64"]
    proc = subprocess.Popen(cmd)
    try:
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)

        def one(_: int) -> float:
            start = time.perf_counter()
            res = httpx.post(f"{url}/v1/grade", content=photo, headers={"content-type": "image/jpeg"}, timeout=120)
            assert res.status_code == 200, res.text
            return time.perf_counter() - start

        one(0)
        rss_start = _peak_rss_mb(proc.pid)
        lat = np.array([one(i) for i in range(args.requests)]) * 1000
        p50, p95 = np.percentile(lat, [50, 95])
        print(f"photo {len(photo) / 1e6:.1f} MB 3888x2592; latency one client: p50 {p50:.0f} ms, p95 {p95:.0f} ms")
        for clients in (1, args.clients):
            start = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(one, range(args.requests)))
            print(f"{clients} client(s): {args.requests / (time.perf_counter() - start):.2f} photos/s")
        print(f"server peak RSS: {rss_start:.0f} MB after the first request, {_peak_rss_mb(proc.pid):.0f} MB after {3 * args.requests + 1}")
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
