"""sightx-serve: a web page and a REST API that grade fundus photos through sightx.inference.grader.

app (routes) over a micro-batcher (one model instance, batches from many requests), uploads
(bounded, in memory), schemas (typed responses, hence the OpenAPI page) and cam (Grad-CAM).
"""

from sightx.serve.app import create_app
from sightx.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]
