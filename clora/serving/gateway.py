"""Gateway mode: ``clora serve LIB --upstream URL`` routes each OpenAI request and forwards it upstream.

The upstream is any OpenAI-compatible server that serves the library's tasks as models under
their names, for example vLLM started on ``clora library export LIB --all`` (docs/serving.md).
clora's router reads each input (the prompt, or the last user message), the request's
``model`` is replaced by the routed task (``fallback_model`` for an input the router is unsure
of), and the request goes on as it came, streaming included; the routing decision is added to
the answer (``clora`` field, ``X-Clora-*`` headers). An upstream that cannot be reached is a
502, one that does not answer within ``timeout_s`` a 504, each one OpenAI-style error line; an
upstream's own errors come back as it sent them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from clora.errors import ConfigError
from clora.serving.openai_schema import OpenAIError, route_headers

AUTO = "auto"


def check_upstream_url(url: str) -> str:
    """``url`` without a trailing ``/`` or ``/v1`` (the request's own ``/v1/...`` path is appended)."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"the upstream must be an http:// or https:// URL, got {url!r}", field="upstream")
    url = url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


@dataclass
class Upstream:
    """Where routed requests go: ``url`` (an OpenAI-compatible server), the model name for inputs the router
    falls back on, the seconds each step of a forward may take, and the key to send upstream."""

    url: str
    library: object
    fallback_model: str
    timeout_s: float = 60.0
    api_key: str | None = None
    _client: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.url = check_upstream_url(self.url)
        if not (isinstance(self.timeout_s, (int, float)) and self.timeout_s > 0):
            raise ConfigError(f"the upstream timeout must be a positive number of seconds, got {self.timeout_s!r}",
                              field="upstream_timeout")

    def client(self):
        import httpx

        if self._client is None:  # made on first use, inside the server's event loop
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s))
        return self._client

    async def routes(self, model: str, texts: list[str]) -> list[dict]:
        """Each input's route and the upstream model that answers it."""
        if model != AUTO:
            return [{"task": model, "router_confidence": 1.0, "source": "given", "model": model} for _ in texts]
        decided = await run_in_threadpool(self.library.route, texts)
        return [{"task": r.task, "router_confidence": r.confidence, "source": r.source,
                 "model": r.task or self.fallback_model} for r in decided]

    async def forward(self, request: Request, body, texts: list[str], chat: bool) -> Response:
        routes = await self.routes(body.model, texts)
        models = {r["model"] for r in routes}
        if len(models) > 1:
            raise OpenAIError(f"the prompts route to different models ({', '.join(sorted(models))}); a gateway "
                              "forwards one model per request: send them one per request", param="prompt")
        payload = await request.json()  # as the client sent it, but for the model
        payload["model"] = models.pop()
        headers = {"content-type": "application/json", **route_headers(routes)}
        upstream_headers = {"content-type": "application/json"}
        if self.api_key:
            upstream_headers["authorization"] = f"Bearer {self.api_key}"
        return await self._send(request.url.path, payload, upstream_headers, routes, headers, bool(body.stream))

    async def _send(self, path: str, payload: dict, upstream_headers: dict, routes: list[dict], headers: dict,
                    stream: bool) -> Response:
        import httpx

        client = self.client()
        outgoing = client.build_request("POST", self.url + path, json=payload, headers=upstream_headers)
        try:
            answer = await client.send(outgoing, stream=True)
        except httpx.TimeoutException:
            raise OpenAIError(f"the upstream {self.url} did not answer within {self.timeout_s:g} s", status=504,
                              code="upstream_timeout") from None
        except httpx.HTTPError as exc:
            raise OpenAIError(f"the upstream {self.url} cannot be reached ({type(exc).__name__})", status=502,
                              code="upstream_unreachable") from None
        if stream and answer.status_code == 200:
            return StreamingResponse(self._relay(answer), status_code=200, media_type="text/event-stream",
                                     headers={k: v for k, v in headers.items() if k != "content-type"})
        try:
            content = await answer.aread()
        except httpx.TimeoutException:
            raise OpenAIError(f"the upstream {self.url} did not finish its answer within {self.timeout_s:g} s",
                              status=504, code="upstream_timeout") from None
        finally:
            await answer.aclose()
        return self._reply(answer.status_code, content, routes, headers)

    @staticmethod
    def _reply(status: int, content: bytes, routes: list[dict], headers: dict) -> Response:
        try:
            data = json.loads(content)
        except ValueError:
            return Response(content, status_code=status, headers=headers)
        if isinstance(data, dict) and status == 200:
            data["clora"] = {"routes": routes}
        return JSONResponse(data, status_code=status, headers={k: v for k, v in headers.items()
                                                               if k != "content-type"})

    async def _relay(self, answer):
        """The upstream's server-sent events as they come; a stream cut by the upstream ends here too."""
        import httpx

        try:
            async for chunk in answer.aiter_raw():
                yield chunk
        except httpx.HTTPError:
            return
        finally:
            await answer.aclose()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
