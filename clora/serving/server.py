"""``clora serve``: a small JSON HTTP API over a loaded library (Werkzeug).

``POST /predict`` ``{"inputs": [...], "mode": "routed", "task": null}`` ->
``{"version": n, "predictions": [{"input", "task", "confidence", "prediction", "source"}]}``;
``GET /tasks``; ``GET /health``. Malformed requests get 400 with ``{"error": "..."}``.
Before each request the server checks the library's version on disk and switches to a
newer one (``clora add-task``) without a restart.
"""

from __future__ import annotations

import json
import logging

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from clora.errors import CloraError
from clora.serving.inference import MODES, LoadedLibrary

MAX_INPUTS = 1024
log = logging.getLogger("clora")


def _json(data: dict, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


class BadRequest(ValueError):
    """A request the client must fix (HTTP 400)."""


def parse_predict(body: bytes) -> tuple[list[str], str, str | None]:
    """``(inputs, mode, task)`` from a request body, or BadRequest naming the problem."""
    try:
        data = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object with 'inputs'")
    inputs = data.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(x, str) for x in inputs):
        raise BadRequest("'inputs' must be a non-empty list of strings")
    if len(inputs) > MAX_INPUTS:
        raise BadRequest(f"at most {MAX_INPUTS} inputs per request")
    mode, task = data.get("mode", "routed"), data.get("task")
    if mode not in MODES:
        raise BadRequest(f"'mode' must be one of {', '.join(MODES)}")
    if task is not None and not isinstance(task, str):
        raise BadRequest("'task' must be a string")
    return inputs, mode, task


class App:
    """The WSGI application."""

    def __init__(self, library: LoadedLibrary):
        self.library = library
        self.urls = Map([Rule("/predict", endpoint="predict", methods=["POST"]),
                         Rule("/tasks", endpoint="tasks", methods=["GET"]),
                         Rule("/health", endpoint="health", methods=["GET"])])

    def _refresh(self) -> None:
        try:
            if self.library.refresh():
                log.info("serving library version %d", self.library.version)
        except CloraError as exc:  # keep serving the version in use rather than failing requests
            log.warning("library on disk not loadable, still serving version %d: %s", self.library.version, exc)

    def predict(self, request: Request) -> Response:
        inputs, mode, task = parse_predict(request.get_data())
        try:
            predictions = [p.to_dict() for p in self.library.predict(inputs, mode=mode, task=task)]
        except CloraError as exc:  # e.g. an unknown task: the client's mistake
            raise BadRequest(str(exc)) from None
        return _json({"version": self.library.version, "predictions": predictions})

    def tasks(self, request: Request) -> Response:
        return _json({"version": self.library.version, "tasks": self.library.tasks()})

    def health(self, request: Request) -> Response:
        return _json({"status": "ok", "version": self.library.version})

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            endpoint, _ = self.urls.bind_to_environ(environ).match()
            self._refresh()
            response = getattr(self, endpoint)(request)
        except BadRequest as exc:
            response = _json({"error": str(exc)}, 400)
        except (NotFound, MethodNotAllowed) as exc:
            response = _json({"error": exc.description}, exc.code)
        except HTTPException as exc:
            response = _json({"error": exc.description}, exc.code or 400)
        return response(environ, start_response)


def serve(library: LoadedLibrary, host: str, port: int, ready=None) -> None:
    """Serve until interrupted (threaded; concurrent predictions overlap, each with its own adapters)."""
    from werkzeug.serving import make_server

    server = make_server(host, port, App(library), threaded=True)
    if ready is not None:
        ready(server)
    server.serve_forever()
