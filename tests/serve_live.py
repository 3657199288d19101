"""The service under uvicorn on loopback, in a thread of the test process, configured as sightx-serve configures it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from sightx.bench.serve import free_port
from sightx.inference.grader import Grader
from sightx.serve import ServeConfig, create_app
from sightx.serve.server import uvicorn_config

TIMEOUT = 60.0
LOCAL = "http://127.0.0.1"  # TestClient's own host name, testserver, is not one the server answers
SERVICES: dict[str, Any] = {}  # url -> the live server's Service, to read its counters


@contextlib.contextmanager
def live_server(checkpoint: Path, config: ServeConfig) -> Iterator[str]:
    port = free_port()
    app = create_app(Grader(checkpoint, "cpu"), config)
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, config, log_level="warning"))
    url = f"http://127.0.0.1:{port}"
    SERVICES[url] = app.state.service
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        SERVICES.pop(url, None)
