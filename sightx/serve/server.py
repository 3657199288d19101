"""Run the service with uvicorn: load the checkpoint (refused with one line if it is not SightX's) and any
gradability model (refused unless it was trained on the same preprocessing), bind, serve.

uvicorn reads a request's headers with no deadline: a connection that never finishes them is
kept open for ever (each holds a socket; enough of them and the process runs out). The protocol
here closes a connection whose next request's headers are not all in within `read_idle_s` of
the connection or of the previous answer; the body then has its own deadlines (uploads.py).
Library warnings (Pillow's, about a photo's metadata) go to the log as one line without the
library's file path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from sightx.inference.gradability_model import load as load_gradability
from sightx.inference.grader import Grader
from sightx.serve.app import create_app
from sightx.serve.config import LOOPBACK, ServeConfig
from sightx.serve.errors import clean

_LOG = logging.getLogger("uvicorn.error")


def protocol(headers_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing connections whose request headers take longer than headers_s."""

    class Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_headers()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._await_headers()

        def _await_headers(self) -> None:
            waiting = self.cycle
            self.loop.call_later(headers_s, self._headers_due, waiting)

        def _headers_due(self, waiting: Any) -> None:
            idle = self.cycle is None or self.cycle.response_complete
            if self.cycle is waiting and idle and not self.transport.is_closing():
                self.transport.close()  # no new request since: its headers never came

    return Protocol


def uvicorn_config(app: FastAPI, host: str, port: int, config: ServeConfig, **kw: Any) -> uvicorn.Config:
    """The server settings: the header deadline above, keep-alive no longer than it, no Server header."""
    keep_alive = max(1, min(5, int(config.read_idle_s)))
    return uvicorn.Config(
        app, host=host, port=port, http=protocol(config.read_idle_s), timeout_keep_alive=keep_alive, server_header=False, **kw
    )


def _log_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    _LOG.warning(clean(f"{category.__name__}: {message}")[:300])


def log_warnings() -> None:
    """Warnings as one log line each, without the file and line that raised them (a library's path)."""
    warnings.showwarning = _log_warning


def exposure_warning(host: str, token: str | None) -> str | None:
    """What to tell an operator who binds beyond this machine."""
    if host in LOOPBACK:
        return None
    reach = f"listening on {host}: reachable from other machines"
    if token is None:
        return f"warning: {reach}, and without --token anyone who can reach it can grade photos; put it behind TLS"
    return f"warning: {reach}; the bearer token travels in clear text unless a TLS proxy fronts this server"


def run(
    checkpoint: Path | str,
    host: str,
    port: int,
    device: str,
    config: ServeConfig,
    log: Callable[[str], None],
    gradability_model: Path | None = None,
    runtime: str = "auto",
) -> None:
    grader = Grader(checkpoint, device, runtime=runtime)
    gradability = None
    if gradability_model is not None:
        gradability = load_gradability(gradability_model, device)
        gradability.check_preprocess(grader.preprocess, f"{checkpoint}'s photos")
        log(f"gradability scores from {gradability_model} (sha256 {gradability.sha256[:12]})")
    if host not in ("0.0.0.0", "::") and host not in config.allowed_hosts:
        config = dataclasses.replace(config, allowed_hosts=(*config.allowed_hosts, host))  # the address it binds is its name too
    warning = exposure_warning(host, config.token)
    if host in ("0.0.0.0", "::") and "*" not in config.allowed_hosts:
        log(f"clients must name it as one of {', '.join(config.allowed_hosts)} in their Host header: add names with --allowed-host")
    if warning:
        log(warning)
    facts = f"{grader.checkpoint.arch}, {grader.checkpoint.head}, sha256 {grader.sha256[:12]}"
    log(f"grading with {checkpoint} ({facts}) on {grader.device} with {grader.runtime.name}")
    if grader.model is None:
        log("Grad-CAM heat maps need PyTorch: the page shows none with this runtime (serve the hub folder or the .pt for them)")
    log_warnings()
    uvicorn.Server(uvicorn_config(create_app(grader, config, gradability), host, port, config, log_level="info")).run()
