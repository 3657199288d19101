"""Run the service with uvicorn: load the checkpoint (refused with one line if it is not SightX's) and any
gradability model (refused unless it was trained on the same preprocessing), bind, serve."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import uvicorn

from sightx.inference.gradability_model import load as load_gradability
from sightx.inference.grader import Grader
from sightx.serve.app import create_app
from sightx.serve.config import LOOPBACK, ServeConfig


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
    warning = exposure_warning(host, config.token)
    if warning:
        log(warning)
    facts = f"{grader.checkpoint.arch}, {grader.checkpoint.head}, sha256 {grader.sha256[:12]}"
    log(f"grading with {checkpoint} ({facts}) on {grader.device} with {grader.runtime.name}")
    if grader.model is None:
        log("Grad-CAM heat maps need PyTorch: the page shows none with this runtime (serve the hub folder or the .pt for them)")
    uvicorn.run(create_app(grader, config, gradability), host=host, port=port, log_level="info", server_header=False)
