"""sightx-serve: a web page and a REST API that grade fundus photos through sightx.inference.grader.

app (routes) over a micro-batcher (one model instance, batches from many requests), gates (who
may hold what: per client, body bytes, grading slots), uploads (bounded in size and time, in
memory), pixels (the serving pixel limits, from headers), web (Host check, security headers,
/docs), memory (handing freed memory back when idle), schemas (typed responses, hence the
OpenAPI schema) and cam (Grad-CAM). `create_app` loads lazily: `sightx.serve.config` (the CLI's
defaults) imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

from sightx.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from sightx.serve.app import create_app

        return create_app
    raise AttributeError(name)
