"""The FastAPI application: the page, the REST API, health and readiness, over one Grader.

A request is admitted by gates.py (per client, body bytes, then a grading slot once its body is
in) and its body read under deadlines (uploads.py); its photos' headers are checked against the
serving pixel limits (pixels.py) before anything is decoded. Photos are preprocessed on a thread
pool, at most `workers` at a time per request so one request of many photos cannot queue ahead
of every other, and graded in micro-batches on the model's own thread; Grad-CAM runs on that
thread too, after the batch. A client that goes away cancels the work not yet started.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from sightx import __version__
from sightx.errors import Rejection, describe
from sightx.inference.gradability_model import GradabilityModel
from sightx.inference.grader import Graded, Grader, Photo
from sightx.inference.warnings import MESSAGES
from sightx.labels.grades import NAMES, REFERABLE
from sightx.serve import batch_size, pixels, schemas, web
from sightx.serve.batcher import MicroBatcher
from sightx.serve.config import ServeConfig
from sightx.serve.errors import Refused, clean, refused_photo
from sightx.serve.gates import Gates
from sightx.serve.memory import Trimmer
from sightx.serve.uploads import Reading, Upload, read_uploads

STATIC = Path(__file__).parent / "static"
_LOG = logging.getLogger("uvicorn.error")  # uvicorn's own log: the operator reads one stream
_BINARY = {"type": "string", "format": "binary"}
_GRADE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"files": {"type": "array", "items": _BINARY}}, "required": ["files"]}
            },
            "image/jpeg": {"schema": _BINARY},
            "image/png": {"schema": _BINARY},
            "image/tiff": {"schema": _BINARY},
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"example": {"detail": text}}}}
    for code, text in (
        (401, "missing or wrong bearer token"),
        (408, "the request body did not arrive in time"),
        (413, "request body over the upload limit, or its photos over the pixels per request"),
        (415, "not a JPEG, PNG or TIFF"),
        (422, "a photo that cannot be graded (truncated, too large, too small)"),
        (429, "too many requests in progress from this client: retry after the Retry-After seconds"),
        (503, "busy: retry after the Retry-After seconds"),
    )
}


class Service:
    """The grader with its executors, batcher and request slots; started and stopped by the app's lifespan."""

    def __init__(self, grader: Grader, config: ServeConfig, gradability: GradabilityModel | None = None) -> None:
        self.grader = grader
        self.config = config
        self.gradability = gradability  # runs on the model thread too: one model call at a time
        self.prep = ThreadPoolExecutor(config.workers, thread_name_prefix="sightx-prep")
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="sightx-model")
        self.batcher: MicroBatcher[torch.Tensor, tuple[np.ndarray, float, int]] = MicroBatcher(
            self._run_batch, self.model_thread, config.max_batch, config.batch_wait_ms / 1000
        )
        self.gates = Gates(config, self._idle)
        self.trimmer = Trimmer(lambda: bool(self.gates.clients))
        self.prepared = 0  # photos whose preprocessing started (tests: work stops when a client goes away)
        self.cancelled = 0  # requests whose client went away before the answer
        self.ready = False
        self.batch_timings: dict[int, float] = {}  # seconds per photo by batch size, when tuned at start

    async def start(self) -> None:
        self.batcher.start()
        # Model calls before the first photo: readiness means the model has run at every batch
        # size it will see (so memory is flat from the first request), not just loaded.
        await asyncio.get_running_loop().run_in_executor(self.model_thread, self._warm_up)
        self.ready = True

    def _warm_up(self) -> None:
        if self.config.tune_batch:
            self.batch_timings = batch_size.measure(self._run_zeros, self.config.max_batch)
            self.batcher.max_batch = batch_size.choose(self.batch_timings)
            timed = ", ".join(f"{k}: {v * 1000:.1f}" for k, v in self.batch_timings.items())
            _LOG.info(f"batches of up to {self.batcher.max_batch} photos (model ms per photo by batch size: {timed})")
        for size in batch_size.warm_sizes(self.batcher.max_batch):
            if size not in self.batch_timings:
                self._run_zeros(size)

    def _run_zeros(self, n: int) -> None:
        size = self.grader.transform.size
        self.grader.outputs([torch.zeros((3, size, size), dtype=torch.uint8)] * n)

    async def stop(self) -> None:
        self.ready = False
        await self.batcher.stop()
        self.prep.shutdown(wait=False, cancel_futures=True)
        self.model_thread.shutdown(wait=False, cancel_futures=True)

    def _run_batch(self, tensors: list[torch.Tensor]) -> list[tuple[np.ndarray, float, int]]:
        start = time.perf_counter()
        outputs = self.grader.outputs(tensors)
        ms = round((time.perf_counter() - start) * 1000, 2)
        return [(out, ms, len(tensors)) for out in outputs]

    def _idle(self) -> None:
        self.trimmer.idle()

    def reading(self, hold: Callable[[int], None]) -> Reading:
        c = self.config
        return Reading(c.max_upload_bytes, c.max_files, c.read_idle_s, c.read_total_s, hold)

    def _prepare(self, data: bytes) -> tuple[Photo, torch.Tensor]:
        self.prepared += 1
        photo = self.grader.prepare(data)
        return photo, self.grader.tensor(photo.jpeg)

    async def prepare(self, upload: Upload, turn: asyncio.Semaphore) -> tuple[Photo, torch.Tensor]:
        async with turn:
            try:
                return await asyncio.get_running_loop().run_in_executor(self.prep, self._prepare, upload.data)
            except Rejection as e:
                raise refused_photo(upload.name, e) from None

    async def cam(self, tensor: torch.Tensor, grade: int, size: int) -> bytes:
        from sightx.serve.cam import heat_map, overlay_png  # captum (and matplotlib) load on the first heat map

        heat = await asyncio.get_running_loop().run_in_executor(self.model_thread, heat_map, self.grader, tensor, grade)
        return overlay_png(heat, size, tensor)

    async def grade(self, uploads: list[Upload], cam: bool, start: float) -> list[schemas.GradeResult]:
        c = self.config
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.prep, pixels.check, uploads, c.max_photo_mp, c.max_request_mp)
        turn = asyncio.Semaphore(c.workers)  # this request's photos take turns with other requests'
        prepared = await _all_or_none([self.prepare(u, turn) for u in uploads])
        outputs = await _all_or_none([self.batcher.submit(tensor) for _, tensor in prepared])
        scores: list[float | None] = [None] * len(prepared)
        if self.gradability is not None:
            jpegs = [photo.jpeg for photo, _ in prepared]
            found = await asyncio.get_running_loop().run_in_executor(self.model_thread, self.gradability.score_jpegs, jpegs)
            scores = [round(float(s), 6) for s in found]
        results = []
        for upload, (photo, tensor), (out, model_ms, batch), score in zip(uploads, prepared, outputs, scores):
            graded = self.grader.judge(out[None], [photo], model_ms)[0]
            extra = {}
            if cam:
                size = self.grader.preprocess.size
                extra = {
                    "cam_png": _b64(await self.cam(tensor, graded.grade, size)),
                    "field_jpeg": _b64(photo.jpeg),
                }
            results.append(self._result(upload.name, graded, batch, start, extra, score))
        return results

    def _result(
        self, name: str, g: Graded, batch: int, start: float, extra: dict[str, str], gradability: float | None = None
    ) -> schemas.GradeResult:
        classify = self.grader.head.width > 1
        photo = g.photo
        return schemas.GradeResult(
            image=name,
            grade=g.grade,
            grade_name=g.name,
            probabilities=[float(p) for p in g.output] if classify else None,
            score=None if classify else float(g.output),
            thresholds=None if classify else self.grader.thresholds,
            referable=g.referable,
            referable_probability=g.referable_score if classify else None,
            quality=schemas.PhotoMeasures(**photo.measures),
            warnings=[schemas.Warning(code=w, message=MESSAGES.get(w, w)) for w in photo.warnings],
            timings_ms=schemas.Timings(
                decode=photo.timings_ms.get("decode", 0.0),
                preprocess=photo.timings_ms.get("preprocess", 0.0),
                model=g.model_ms,
                total=round((time.perf_counter() - start) * 1000, 2),
            ),
            model=self.grader.sha256,
            batch_size=batch,
            gradability_model=gradability,
            **extra,
        )

    def model_info(self) -> schemas.ModelInfo:
        ck = self.grader.checkpoint
        return schemas.ModelInfo(
            arch=ck.arch,
            head=ck.head,
            image_size=ck.image_size,
            epoch=ck.epoch,
            preprocess=self.grader.preprocess.to_dict(),
            thresholds=None if self.grader.head.width > 1 else self.grader.thresholds,
            grades=list(NAMES),
            referable_from_grade=REFERABLE,
            validation=_validation(ck.val),
            sha256=ck.sha256,
            device=str(self.grader.device),
            max_batch=self.batcher.max_batch,
            batch_ms_per_photo={str(k): round(v * 1000, 2) for k, v in self.batch_timings.items()} or None,
            gradability_model=None if self.gradability is None else self.gradability.sha256,
            runtime=self.grader.runtime.name,
            cam=self.grader.model is not None,
        )


_T = TypeVar("_T")


async def _all_or_none(coros: list[Coroutine[Any, Any, _T]]) -> list[_T]:
    """Every result in order, or the first error with the rest cancelled (a request grades all its photos or none)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        return [t.result() for t in tasks]
    finally:
        for t in tasks:
            t.cancel()


async def _unless_gone(receive: Callable[[], Awaitable[Any]], work: Awaitable[_T], service: Service) -> _T:
    """`work`'s result, or cancel it when the client disconnects first (its body is in: the next message is the disconnect)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            service.cancelled += 1
    if task.cancelled():
        raise Refused(400, "the client went away before the answer")
    return task.result()


async def _disconnect(receive: Callable[[], Awaitable[Any]]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _validation(val: dict[str, Any] | None) -> schemas.Validation | None:
    if not val:
        return None
    ref = val.get("referable") or {}
    return schemas.Validation(
        n=val.get("n"),
        kappa=val.get("kappa"),
        accuracy=val.get("accuracy"),
        referable_sensitivity=ref.get("sensitivity"),
        referable_specificity=ref.get("specificity"),
        referable_auc=ref.get("auc"),
        majority_accuracy=(val.get("baseline") or {}).get("accuracy"),
    )


def create_app(grader: Grader, config: ServeConfig | None = None, gradability: GradabilityModel | None = None) -> FastAPI:
    """The application for one grader (and optionally a learned gradability model, whose preprocessing the
    caller has checked: `GradabilityModel.check_preprocess`); testable in-process with fastapi.testclient.TestClient."""
    config = config or ServeConfig()
    service = Service(grader, config, gradability)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="SightX",
        version=__version__,
        description="Diabetic-retinopathy grades for fundus photos, with the preprocessing the model was trained with.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load scripts from a CDN: web.docs_page instead
        redoc_url=None,
    )
    app.state.service = service
    app.add_middleware(web.Guard, allowed_hosts=config.allowed_hosts)

    @app.exception_handler(Refused)
    async def _refused(request: Request, e: Refused) -> JSONResponse:
        headers = dict(e.headers)
        if request.method == "POST":
            headers["Connection"] = "close"  # the rest of its body may still be coming: not worth reading
        return JSONResponse({"detail": clean(str(e))}, e.status, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, e: Exception) -> JSONResponse:
        _LOG.error(clean(f"internal error: {describe(e)}"))
        return JSONResponse({"detail": "internal error (the server's log has it)"}, 500)

    def authorised(request: Request) -> None:
        if config.token is None:
            return
        if not web.bearer_matches(request.headers.get("authorization", ""), config.token):
            raise Refused(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)", {"WWW-Authenticate": "Bearer"})

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorised)], responses={401: _ERRORS[401]})

    @v1.post(
        "/grade",
        response_model=schemas.GradeResponse,
        openapi_extra=_GRADE_BODY,
        responses={k: v for k, v in _ERRORS.items() if k != 401},
        summary="Grade one or more photos",
    )
    async def grade(request: Request, cam: bool = False) -> schemas.GradeResponse:
        """Multipart `files` (repeatable) or one raw image body. `cam=1` adds the Grad-CAM heat map and the
        preprocessed field. A request grades all its photos or none: one bad photo fails it, naming the photo."""
        start = time.perf_counter()
        with service.gates.request(request.client.host if request.client else "unknown") as ticket:
            uploads = await read_uploads(request, service.reading(ticket.hold))
            ticket.grade()
            results = await _unless_gone(request.receive, service.grade(uploads, cam, start), service)
            return schemas.GradeResponse(results=results)

    @v1.get("/model", response_model=schemas.ModelInfo, summary="The checkpoint being served")
    async def model() -> schemas.ModelInfo:
        return service.model_info()

    app.include_router(v1)

    @app.get("/healthz", response_model=schemas.Status, summary="The process is up")
    async def healthz() -> schemas.Status:
        return schemas.Status(status="ok")

    @app.get("/readyz", response_model=schemas.Status, responses={503: {"description": "not ready"}}, summary="Ready to grade")
    async def readyz() -> Response:
        if service.ready and service.batcher.running:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "starting"}, 503)

    for path, endpoint in (("/healthz", healthz), ("/readyz", readyz)):  # HEAD answered as GET (uvicorn sends no body)
        app.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)

    index = (STATIC / "index.html").read_text(encoding="utf-8")

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(index)

    @app.api_route("/docs", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(web.docs_page(app.openapi()))

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
