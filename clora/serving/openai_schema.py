"""The OpenAI-compatible API's requests and responses (``/v1/completions``, ``/v1/chat/completions``).

Only the fields clora can honour are taken: ``model`` (a task name, or ``auto`` for the router),
the input (``prompt``, or the last user message of ``messages``), ``max_tokens``, ``stop`` and
``n``; ``stream`` turns the answer into server-sent events. clora answers greedily (a label, or
a greedy generation), so sampling fields (``temperature``, ``top_p``, penalties, ``seed``) are
accepted and have no effect, and ``n`` copies repeat one answer. Fields that ask for what clora
cannot give (log-probabilities, echo, tools, ...) are refused with an OpenAI-style error naming
them, never ignored. Shapes follow the OpenAI API reference (completions, chat completions).
"""

from __future__ import annotations

import time
import uuid

from pydantic import BaseModel, ConfigDict, Field

from clora.errors import CloraError
from clora.serving.prediction import Prediction

#: request fields that ask for something clora does not produce: refused when set to anything but off
REFUSED = ("logprobs", "top_logprobs", "echo", "suffix", "best_of", "logit_bias", "tools", "tool_choice",
           "functions", "function_call", "response_format", "audio", "modalities", "prediction")
#: the value of each refused field that means "off" (anything else is refused)
_OFF = {"echo": False, "best_of": 1, "logprobs": False}


class OpenAIError(CloraError):
    """A request the OpenAI API would refuse: ``status``, the offending ``param`` and a ``code``."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message, field=param)
        self.param, self.status, self.code = param, status, code


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown fields: REFUSED are refused, the rest ignored

    model: str = Field(min_length=1, description="A task name, or 'auto': the router picks each input's task.")
    max_tokens: int | None = Field(None, ge=1, description="The most answer tokens (the answer is cut there).")
    stop: str | list[str] | None = Field(None, description="The answer is cut before the first of these.")
    n: int = Field(1, ge=1, le=16, description="Answers per input (greedy: n copies of one answer).")
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2, description="Accepted; clora answers greedily.")

    def refused_field(self) -> str | None:
        """The first field set that asks for something clora cannot give."""
        extra = self.model_extra or {}
        for name in REFUSED:
            if name in extra and extra[name] is not None and extra[name] != _OFF.get(name, None):
                return name
        return None

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(_Request):
    prompt: str | list[str] = Field(description="The input, or a list of inputs.")

    def inputs(self) -> list[str]:
        prompts = [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)
        if not prompts:
            raise OpenAIError("prompt must hold at least one input", param="prompt")
        return prompts


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict] | None = None

    def text(self) -> str:
        """The message's text (the text parts of a list content, joined by newlines)."""
        if isinstance(self.content, list):
            return "\n".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="The newer name of max_tokens.")

    def inputs(self) -> list[str]:
        """The input is the last user message: a task's instruction is its prompt, so a system message and
        earlier turns add nothing a task was trained on."""
        users = [m for m in self.messages if m.role == "user"]
        if not users or not users[-1].text().strip():
            raise OpenAIError("messages need a user message with text content", param="messages")
        return [users[-1].text()]


def cut(text: str, stops: list[str], token_ids, max_tokens: int | None, decode) -> tuple[str, str]:
    """``(answer, finish_reason)``: ``text`` cut before the first stop string, then to ``max_tokens`` tokens
    (``token_ids(text)`` / ``decode(ids)``: the library's tokenizer)."""
    for stop in stops:
        at = text.find(stop) if stop else -1
        if at >= 0:
            text = text[:at]
    if max_tokens is not None:
        ids = token_ids(text)
        if len(ids) > max_tokens:
            return decode(ids[:max_tokens]), "length"
    return text, "stop"


def route_info(prediction: Prediction, version: int) -> dict:
    """The routing decision of one input, as the documented ``clora`` field of a response."""
    return {"task": prediction.task, "router_confidence": prediction.confidence, "source": prediction.source,
            "answer_probability": prediction.answer_probability, "version": version}


def route_headers(routes: list[dict]) -> dict[str, str]:
    """``X-Clora-Task``, ``X-Clora-Router-Confidence`` and ``X-Clora-Source``: one comma-separated value per
    input (a gateway or a proxy reads them without parsing the body)."""
    return {"X-Clora-Task": ",".join(r["task"] or "" for r in routes),
            "X-Clora-Router-Confidence": ",".join(f"{r['router_confidence']:.4f}" for r in routes),
            "X-Clora-Source": ",".join(r["source"] for r in routes)}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def completion_body(model: str, choices: list[tuple[str, str]], usage: dict, routes: list[dict],
                    chat: bool) -> dict:
    """A ``text_completion`` or ``chat.completion`` object; ``choices`` are ``(text, finish_reason)``."""
    if chat:
        items = [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason,
                  "logprobs": None} for i, (text, reason) in enumerate(choices)]
    else:
        items = [{"index": i, "text": text, "finish_reason": reason, "logprobs": None}
                 for i, (text, reason) in enumerate(choices)]
    return {"id": new_id("chatcmpl" if chat else "cmpl"), "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": items, "usage": usage, "clora": {"routes": routes}}


def stream_chunks(model: str, choices: list[tuple[str, str]], routes: list[dict], chat: bool) -> list[dict]:
    """The server-sent events of a streamed answer: per choice, its text (chat: the role first), then its
    finish reason; the ``clora`` field rides on the first chunk."""
    ident, created = new_id("chatcmpl" if chat else "cmpl"), int(time.time())
    kind = "chat.completion.chunk" if chat else "text_completion"
    chunks = []
    for i, (text, reason) in enumerate(choices):
        if chat:
            parts = [({"role": "assistant", "content": ""}, None), ({"content": text}, None), ({}, reason)]
            items = [{"index": i, "delta": delta, "finish_reason": r, "logprobs": None} for delta, r in parts]
        else:
            items = [{"index": i, "text": text, "finish_reason": None, "logprobs": None},
                     {"index": i, "text": "", "finish_reason": reason, "logprobs": None}]
        chunks += [{"id": ident, "object": kind, "created": created, "model": model, "choices": [item]}
                   for item in items]
    chunks[0]["clora"] = {"routes": routes}
    return chunks
