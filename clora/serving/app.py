"""The HTTP API (FastAPI on uvicorn): ``POST /predict``, ``GET /tasks``, ``GET /health``, ``GET /metrics``,
and the OpenAI-compatible ``/v1`` endpoints (``clora.serving.openai_api``).

``POST /predict`` ``{"inputs": [...], "mode": "routed", "task": null}`` ->
``{"version": n, "predictions": [{"input", "task", "prediction", "answer_probability", "router_confidence",
"source", "confidence"}]}``.
Requests are validated (OpenAPI docs at ``/docs``), queued and answered in mixed-adapter
micro-batches (``clora.serving.batching``); every error is JSON ``{"error": ...}``.
A newer library version on disk is picked up by the request that notices it, while the
others go on with the version in use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from clora.errors import CloraError, StorageError, as_storage_error
from clora.serving.batching import MicroBatcher, QueueFull
from clora.serving.guard import Guard, Limits
from clora.serving.health import Problems
from clora.serving.inference import LoadedLibrary, Query, check_text
from clora.serving.prediction import Prediction
from clora.serving.metrics import ServerMetrics
from clora.serving.openai_api import add_openai_routes, openai_error
from clora.serving.priority import check_nice, lower_this_thread


@dataclass(frozen=True)
class ServeSettings:
    """How a server batches and what it accepts (every field a ``clora serve`` option)."""

    max_batch: int = 32
    batch_wait_ms: float = 5.0
    max_queue: int = 1024
    max_inputs: int = 64
    max_input_chars: int = 10_000
    loop_nice: int = 10  # the event loop's CPU priority below inference (clora.serving.priority)
    limits: Limits = Limits()
    #: learning live (``clora.inbox.hooks.server_hooks`` makes these; the server knows no inbox itself):
    #: ``record(answers)`` is given every fallback answer; ``feedback(body, labels_of) -> dict`` answers
    #: ``POST /feedback`` (None: 404); ``background`` has ``start()``, ``stop()`` and ``last`` (for /health)
    record: Callable[[list[Prediction]], None] | None = None
    feedback: Callable[[dict, dict], dict] | None = None
    background: object | None = None
    #: gateway mode: a :class:`clora.serving.gateway.Upstream` that answers the ``/v1`` completions
    upstream: object | None = None

    def __post_init__(self) -> None:
        check_nice(self.loop_nice)


class FeedbackRequest(BaseModel):
    input: str = Field(min_length=1, description="The input text.")
    label: str | None = Field(None, description="Its correct label (classification).")
    target: str | None = Field(None, description="Its correct answer (free text).")
    task: str | None = Field(None, description="The task it belongs to, when known.")


class PredictRequest(BaseModel):
    inputs: list[str] = Field(min_length=1, description="Texts to answer.")
    mode: Literal["routed", "oracle", "sum", "base"] = "routed"
    task: str | list[str] | None = Field(None, description="Answer as this task (one name, or one per input).")


def _queries(body: PredictRequest, settings: ServeSettings) -> list[Query]:
    if len(body.inputs) > settings.max_inputs:
        raise CloraError(f"at most {settings.max_inputs} inputs per request, got {len(body.inputs)}")
    for i, text in enumerate(body.inputs):
        if len(text) > settings.max_input_chars:
            raise CloraError(f"input {i + 1} has {len(text)} characters (at most {settings.max_input_chars})")
        check_text(text, i)  # here, not in the batch: one bad input must not fail other clients' answers
    tasks = body.task if isinstance(body.task, list) else [body.task] * len(body.inputs)
    if len(tasks) != len(body.inputs):
        raise CloraError(f"{len(tasks)} task names for {len(body.inputs)} inputs (give one per input)")
    return [Query(text, body.mode, name) for text, name in zip(body.inputs, tasks)]


def _error(request: Request, message: str, status: int, param: str | None = None, code: str | None = None,
           headers: dict | None = None) -> JSONResponse:
    """``{"error": message}``; under ``/v1/`` the OpenAI API's error object."""
    if request.url.path.startswith("/v1/"):
        return openai_error(message, status, param, code, headers)
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _error_handlers(app: FastAPI, problems: Problems) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(request, f"{where + ': ' if where else ''}{first.get('msg')}", 400, param=where or None)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        return _error(request, str(exc.detail), exc.status_code)

    @app.exception_handler(CloraError)
    async def bad_input(request, exc):
        status = getattr(exc, "status", 400)
        if isinstance(exc, StorageError):
            problems.set("storage", str(exc))
        return _error(request, str(exc), status, param=getattr(exc, "param", None), code=getattr(exc, "code", None))

    @app.exception_handler(OSError)
    async def storage(request, exc):  # a full or failing disk: JSON with the reason, and /health hears of it
        refusal = as_storage_error(exc)
        problems.set("storage", str(refusal))
        return _error(request, str(refusal), 503, headers={"Retry-After": "30"})

    @app.exception_handler(QueueFull)
    async def busy(request, exc):
        return _error(request, str(exc), 503, headers={"Retry-After": "1"})


def _lifespan(library: LoadedLibrary, settings: ServeSettings, batcher: MicroBatcher, metrics: ServerMetrics,
              *pools: ThreadPoolExecutor):
    """Start the inference thread (and learning live, if any) before the first request; stop them at shutdown."""

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()  # the inference thread exists from here on, at normal priority
        lower_this_thread(settings.loop_nice)
        if settings.background is not None:
            settings.background.start()  # after the line above: it runs at the event loop's lower priority
        metrics.version.set(library.version)
        yield
        if settings.background is not None:
            settings.background.stop()
        if settings.upstream is not None:
            await settings.upstream.close()
        await batcher.stop()
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)

    return lifespan


def create_app(library: LoadedLibrary, settings: ServeSettings = ServeSettings()):
    """The ASGI application (wrapped in the request :class:`Guard`) serving ``library``."""
    metrics = ServerMetrics()
    batcher = MicroBatcher(library.predict_queries, settings.max_batch, settings.batch_wait_ms / 1000,
                           settings.max_queue, observe=metrics.batch_size.observe)
    reloads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clora-reload")
    writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clora-feedback")
    reloading: dict = {"task": None}
    problems = Problems()
    app = FastAPI(title="clora", summary="Answer inputs with a continual-learning adapter library",
                  lifespan=_lifespan(library, settings, batcher, metrics, reloads, writes))
    _error_handlers(app, problems)

    async def fresh() -> None:
        """The request that notices a newer version waits for it; the others keep the version in use."""
        if reloading["task"] is None and library.newer_on_disk():
            reloading["task"] = asyncio.get_running_loop().run_in_executor(reloads, library.refresh)
            try:
                await reloading["task"]
            finally:
                reloading["task"] = None
                metrics.version.set(library.version)

    async def answer(queries: list[Query]) -> list[Prediction]:
        """Batched answers (``/predict`` and the ``/v1`` completions), counted and, when unsure, recorded."""
        # triggers are searched here, on a worker thread: a slow search delays this request only
        answers = await batcher.submit(await run_in_threadpool(library.search_triggers, queries))
        for a in answers:
            metrics.routes.labels(a.source).inc()
        unrouted = [a for a in answers if a.source == "fallback"]
        if settings.record is not None and unrouted:
            try:
                await run_in_threadpool(settings.record, unrouted)
                problems.clear("inbox")
            except Exception as exc:  # the answers stand; a record the disk refused is reported on /health
                storage = as_storage_error(exc)
                if storage is None:
                    raise
                problems.set("inbox", f"unrouted inputs are not being recorded: {storage}")
        return answers

    @app.post("/predict")
    async def predict(body: PredictRequest):
        await fresh()
        answers = await answer(_queries(body, settings))
        return {"version": library.version, "predictions": [a.to_dict() for a in answers]}

    @app.get("/tasks")
    async def tasks():
        await fresh()
        return {"version": library.version, "tasks": library.tasks()}

    add_openai_routes(app, library, settings, answer, fresh, upstream=settings.upstream)
    _status_routes(app, library, settings, batcher, metrics, problems, writes)
    return Guard(app, settings.limits, on_response=metrics.response)


def _status_routes(app: FastAPI, library: LoadedLibrary, settings: ServeSettings, batcher: MicroBatcher,
                   metrics: ServerMetrics, problems: Problems, writes: ThreadPoolExecutor) -> None:
    """``POST /feedback`` (learning live), ``GET /health`` and ``GET /metrics``: none of them loads a version."""

    @app.post("/feedback")
    async def feedback(body: FeedbackRequest, request: Request):
        if settings.feedback is None:
            raise HTTPException(404, "this server keeps no inbox (serve it with --record-unrouted or --inbox)")
        labels_of = {t["name"]: t["labels"] for t in library.tasks()}
        admin = bool(request.scope.get("state", {}).get("admin"))
        # on its own thread, not the pool that searches /predict's triggers: a slow disk delays feedback only
        kept = await asyncio.get_running_loop().run_in_executor(
            writes, settings.feedback, body.model_dump(), labels_of, admin)
        problems.clear("storage")
        return kept

    @app.get("/health")
    async def health():
        # no reload here: a health check must answer at once, even while a new version loads
        error, standing = library.reload_error, problems.current()
        learning = getattr(settings.background, "last", None)
        loading = library.loading  # read once: the load may finish between two reads
        return {"status": "degraded" if error or standing else "ok", "version": library.version,
                "queue": batcher.waiting, **({"loading": loading} if loading is not None else {}),
                **({"reload_error": error} if error else {}), **({"problems": standing} if standing else {}),
                **({"auto_promote": learning} if learning else {})}

    @app.get("/metrics")
    async def prometheus(request: Request):
        metrics.queue.set(batcher.waiting)
        return Response(metrics.render(), media_type=metrics.content_type)
