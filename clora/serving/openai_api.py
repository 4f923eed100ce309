"""OpenAI-compatible endpoints on ``clora serve``: ``GET /v1/models``, ``POST /v1/completions``,
``POST /v1/chat/completions`` (``stream: true`` as server-sent events) and ``POST /v1/route``.

``model`` names a task (its snapshot answers, as ``/predict`` with ``mode: oracle``) or ``auto``
(the router picks each input's task, as ``/predict`` in routed mode). Answers go through the
same micro-batcher, limits, API key and metrics as ``/predict``. A classification task answers
with its label as the completion text. The routing decision of each input comes back in the
response's ``clora`` field and in ``X-Clora-*`` headers (``openai_schema.route_headers``).
With an upstream (``clora.serving.gateway``), completions are routed here and answered there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from clora.serving.guard import error_body
from clora.serving.inference import LoadedLibrary, Query, check_text
from clora.serving.openai_schema import (ChatRequest, CompletionRequest, OpenAIError, completion_body, cut,
                                         route_headers, route_info, stream_chunks)

AUTO = "auto"


class RouteRequest(BaseModel):
    input: str | list[str] = Field(description="An input, or a list of inputs, to route.")


def openai_error(message: str, status: int = 400, param: str | None = None, code: str | None = None,
                 headers: dict | None = None) -> JSONResponse:
    """An error in the OpenAI API's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    body = error_body("/v1/", message, status)
    body["error"].update(param=param, code=code)
    return JSONResponse(body, status_code=status, headers=headers)


def check_request(body, library: LoadedLibrary, settings) -> list[str]:
    """The request's inputs, after every check ``/predict`` makes and the OpenAI ones (model, fields)."""
    refused = body.refused_field()
    if refused:
        raise OpenAIError(f"{refused} is not supported: clora answers with a label or a greedy generation",
                          param=refused)
    if body.model != AUTO and body.model not in {t["name"] for t in library.tasks()}:
        raise OpenAIError(f"the model {body.model!r} does not exist: use a task name or 'auto' (GET /v1/models)",
                          param="model", status=404, code="model_not_found")
    texts = body.inputs()
    if len(texts) * body.n > settings.max_inputs:
        raise OpenAIError(f"at most {settings.max_inputs} answers per request, got {len(texts) * body.n}",
                          param="n" if body.n > 1 else "prompt")
    for i, text in enumerate(texts):
        if len(text) > settings.max_input_chars:
            raise OpenAIError(f"input {i + 1} has {len(text)} characters (at most {settings.max_input_chars})",
                              param="prompt")
        check_text(text, i)
    return texts


def queries_of(model: str, texts: list[str]) -> list[Query]:
    """``auto``: routed; a task name: that task's snapshot (oracle mode)."""
    return [Query(text) if model == AUTO else Query(text, "oracle", model) for text in texts]


def _choices(body, answers, library: LoadedLibrary) -> tuple[list[tuple[str, str]], dict]:
    """``(text, finish_reason)`` per choice (``n`` per input) and token usage."""
    max_tokens = getattr(body, "max_completion_tokens", None) or body.max_tokens
    choices, completion = [], 0
    for answer in answers:
        text, reason = cut(answer.prediction, body.stops(), library.token_ids, max_tokens, library.decode)
        choices += [(text, reason)] * body.n
        completion += len(library.token_ids(text)) * body.n
    prompt = sum(len(library.token_ids(a.input)) for a in answers)
    return choices, {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def sse(chunks: list[dict]):
    """Server-sent events, ending with ``data: [DONE]`` as OpenAI's stream does."""
    async def events():
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"
    return events()


def add_openai_routes(app: FastAPI, library: LoadedLibrary, settings, answer: Callable[[list[Query]], Awaitable],
                      fresh: Callable[[], Awaitable], upstream=None) -> None:
    """Register the ``/v1`` routes; ``answer(queries)`` is the server's batched answering (with its metrics
    and inbox hooks); ``upstream`` (a :class:`~clora.serving.gateway.Upstream`) answers instead, if given."""

    async def complete(body, chat: bool, request: Request):
        await fresh()
        texts = check_request(body, library, settings)
        if upstream is not None:
            return await upstream.forward(request, body, texts, chat)
        answers = await answer(queries_of(body.model, texts))
        routes = [route_info(a, library.version) for a in answers]
        choices, usage = _choices(body, answers, library)
        headers = route_headers(routes)
        if body.stream:
            return StreamingResponse(sse(stream_chunks(body.model, choices, routes, chat)),
                                     media_type="text/event-stream", headers=headers)
        return JSONResponse(completion_body(body.model, choices, usage, routes, chat), headers=headers)

    @app.get("/v1/models")
    async def models():
        await fresh()
        created = int(time.time())
        names = [AUTO] + [t["name"] for t in library.tasks()]
        return {"object": "list", "data": [{"id": n, "object": "model", "created": created, "owned_by": "clora"}
                                           for n in names]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        return await complete(body, False, request)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        return await complete(body, True, request)

    @app.post("/v1/route")
    async def route(body: RouteRequest):
        """Only the decision, for gateways that forward themselves: the task (or fallback) of each input."""
        await fresh()
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or len(texts) > settings.max_inputs:
            raise OpenAIError(f"give 1 to {settings.max_inputs} inputs", param="input")
        routes = await run_in_threadpool(library.route, texts)
        fallback = upstream.fallback_model if upstream is not None else None
        return {"version": library.version, "routes": [
            {"input": t, "task": r.task, "model": r.task or fallback, "router_confidence": r.confidence,
             "source": r.source, "guess": r.guess} for t, r in zip(texts, routes)]}
