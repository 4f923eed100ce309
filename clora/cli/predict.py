"""``clora predict`` and ``clora serve``: answer inputs with a library."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from clora.cli.options import with_router_options
from clora.config import QUANTIZATIONS
from clora.routing.shares import routing_shares
from clora.data.files import read_text_bounded
from clora.errors import DataError

MODES = ("routed", "oracle", "sum", "base")
DEVICE_OPTIONS = [
    click.option("--device", default="auto", show_default=True,
                 help="Where the model runs: auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:N."),
    click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
                 help="Base model weights: auto (bf16 on a GPU that has it, else fp32), fp32, bf16, fp16 (GPU only)."),
    click.option("--quantize", default=None, type=click.Choice(QUANTIZATIONS),
                 help="Load the base's linear layers quantized (bitsandbytes). Default: as the library's base was; "
                      "another is checked against the library's weights and warned about (docs/quantization.md)."),
]


def router_options(command):
    for option in reversed(DEVICE_OPTIONS):
        command = option(command)
    return with_router_options(command)


def _read_inputs(path: Path) -> list[tuple[str, str | None]]:
    """``(input, expected task)`` per line: a plain line is an input; a JSON object gives its 'input' or
    'sentence' field and, in 'task', the task it belongs to (then misroutes are counted)."""
    lines = read_text_bounded(path, "input file").splitlines()
    texts = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path}: line {n} looks like JSON but does not parse") from None
            except RecursionError:
                raise DataError(f"{path}: line {n} nests JSON too deeply") from None
            text, expected = row.get("input", row.get("sentence")), row.get("task")
            if not isinstance(text, str):
                raise DataError(f"{path}: line {n} has no string 'input' or 'sentence' field")
            if expected is not None and not isinstance(expected, str):
                raise DataError(f"{path}: line {n}: 'task' must be a task name")
            texts.append((text, expected))
        else:
            texts.append((line, None))
    return texts


@click.command()
@click.argument("library", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("--input", "input_file", type=click.Path(path_type=Path), default=None,
              help="File with one input per line (plain text, or JSON lines with 'input' / 'sentence').")
@click.option("--mode", type=click.Choice(MODES), default="routed", show_default=True,
              help="routed: the router picks the task; oracle: the snapshot of --task; sum: every adapter; base: none.")
@click.option("--task", default=None, help="Answer every input as this task (skips routing).")
@click.option("--router", type=click.Choice(["lda", "arrow"]), default="lda", show_default=True,
              help="lda: clora's router (triggers, the learned trigger, fallback); arrow: PEFT's Arrow routing over "
                   "the task adapters, for comparison (needs peft; docs/routing.md).")
@router_options
def predict(library, texts, input_file, mode, task, router, threshold, margin, fallback, device, precision, quantize):
    """Answer TEXT... (or --input FILE) with LIBRARY; one JSON line per input.

    Each line is {"input", "task", "prediction", "answer_probability", "router_confidence",
    "source", "confidence"}: the answer and the model's own probability of it (softmax over
    the task's labels; for generated text, the mean token probability), the task the input
    was answered as, how sure the router was of that task (1 for triggers and --task), and
    why (trigger, learned, fallback, given). "confidence" repeats "router_confidence" for
    older clients.
    """
    from clora.serving.inference import load_library

    inputs = [(text, None) for text in texts] + (_read_inputs(input_file) if input_file else [])
    if not inputs:
        raise DataError("give texts to answer, or --input FILE")
    # --precision defaults to auto, which the arrow router has no use for; a precision asked for is refused
    precision = None if router == "arrow" and precision == "auto" else precision
    loaded = load_library(library, router=router, threshold=threshold, margin=margin, fallback=fallback,
                          device=device, precision=precision, quantize=quantize)
    predictions = loaded.predict([text for text, _ in inputs], mode=mode, task=task)
    for row in predictions:
        click.echo(json.dumps(row.to_dict()))
    if mode == "routed" and task is None:
        click.echo(routing_shares(predictions, [expected for _, expected in inputs]).line(), err=True)


#: serve's learning-live options (docs/learning-live.md), handed to ``learning_settings`` as they are
LEARNING_OPTIONS = [
    click.option("--record-unrouted", is_flag=True,
                 help="Keep every input the router falls back on (with its router guess and the answer given) in "
                      "the library's inbox, for `clora inbox`. Stores users' inputs; off by default."),
    click.option("--inbox", "inbox_folder", type=click.Path(path_type=Path), default=None,
                 help="The inbox folder (default: LIBRARY.inbox beside the library); also enables POST /feedback."),
    click.option("--inbox-max-bytes", default=16 << 20, show_default=True, type=click.IntRange(min=4096),
                 help="The inbox's bound: past half of it the record file rotates (one older file is kept)."),
    click.option("--auto-promote", is_flag=True,
                 help="Promote a cluster of the inbox to a new task on a background thread once it has "
                      "--min-examples labelled examples, behind the --max-drop gate; served live."),
    click.option("--min-examples", default=40, show_default=True, type=click.IntRange(min=8),
                 help="Labelled examples a cluster needs before --auto-promote trains it."),
    click.option("--max-drop", default=1.0, show_default=True, type=click.FloatRange(min=0),
                 help="The gate of --auto-promote: the most points any earlier task's routed accuracy may lose."),
    click.option("--promote-every", default=30.0, show_default=True, type=click.FloatRange(min=0.1),
                 help="Seconds between two looks at the inbox by --auto-promote."),
]


def learning_options(command):
    for option in reversed(LEARNING_OPTIONS):
        command = option(command)
    return command



@click.command()
@click.argument("library", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on, 1-65535 (0: any free port).")
@router_options
@click.option("--max-batch", default=32, show_default=True, type=click.IntRange(min=1),
              help="Inputs answered together in one forward pass (requests are batched across clients; 1: one "
                   "request at a time).")
@click.option("--batch-wait-ms", default=5.0, show_default=True, type=click.FloatRange(min=0),
              help="How long a request may wait for others to share its batch.")
@click.option("--max-queue", default=1024, show_default=True, type=click.IntRange(min=1),
              help="Inputs that may wait for a batch; beyond it requests get 503.")
@click.option("--max-inputs", default=64, show_default=True, type=click.IntRange(min=1), help="Inputs per request.")
@click.option("--max-input-chars", default=10_000, show_default=True, type=click.IntRange(min=1),
              help="Characters per input.")
@click.option("--max-body-bytes", default=1 << 20, show_default=True, type=click.IntRange(min=1),
              help="Request body size; larger bodies get 413 without being read.")
@click.option("--body-timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds within which a request's headers (else the connection is closed) and each part of "
                   "its body (else 408) must arrive.")
@click.option("--max-connections", default=256, show_default=True, type=click.IntRange(min=1),
              help="Open connections and requests at once; beyond them new requests get 503.")
@click.option("--max-client-connections", default=None, type=click.IntRange(min=1),
              help="Open connections one client address may hold; one more gets 503 (default: a quarter of "
                   "--max-connections).")
@click.option("--max-header-bytes", default=16 << 10, show_default=True, type=click.IntRange(min=1024),
              help="Request line and headers; larger get 431 and the connection is closed.")
@click.option("--loop-nice", default=10, show_default=True, type=click.IntRange(0, 19),
              help="How much lower the CPU priority of connection handling is than inference's (Linux; 0: "
                   "the same), so that floods of refused requests do not slow the answers.")
@learning_options
@click.option("--api-key", envvar="CLORA_API_KEY", default=None,
              help="Require 'Authorization: Bearer KEY' on every route but /health (or set CLORA_API_KEY).")
@click.option("--admin-key", envvar="CLORA_ADMIN_KEY", default=None,
              help="A second secret: only a request with 'Authorization: Bearer ADMIN_KEY' may send feedback naming "
                   "a library task, which becomes evaluation data for the promotion gate (or set CLORA_ADMIN_KEY).")
@click.option("--upstream", default=None, metavar="URL",
              help="Gateway mode: route each /v1 completion here and forward it to this OpenAI-compatible server "
                   "(e.g. vLLM serving `clora library export LIB --all`), its model replaced by the routed task.")
@click.option("--upstream-fallback", default=None, metavar="MODEL",
              help="With --upstream: the model that answers inputs the router is unsure of (default: the "
                   "library's base model name).")
@click.option("--upstream-timeout", default=60.0, show_default=True, type=click.FloatRange(min=0.1),
              help="With --upstream: seconds to connect and for each read; past them the client gets 504.")
@click.option("--upstream-key", envvar="CLORA_UPSTREAM_KEY", default=None,
              help="With --upstream: sent as 'Authorization: Bearer KEY' upstream (or set CLORA_UPSTREAM_KEY).")
def serve(library, host, port, threshold, margin, fallback, device, precision, quantize, max_batch, batch_wait_ms, max_queue,
          max_inputs, max_input_chars, max_body_bytes, body_timeout, max_connections, max_client_connections,
          max_header_bytes, loop_nice, api_key, admin_key, upstream, upstream_fallback, upstream_timeout, upstream_key,
          **learning):
    """Serve LIBRARY over HTTP: POST /predict, GET /tasks, GET /health, GET /metrics (docs at /docs), and the
    OpenAI-compatible GET /v1/models, POST /v1/completions, /v1/chat/completions and /v1/route.

    POST /predict takes {"inputs": [...], "mode": "routed", "task": null}. In the /v1 API,
    `model` is a task name or `auto` (the router decides). Concurrent requests are answered
    together in mixed-adapter batches. Tasks added with `clora add-task` are picked up
    without a restart. See docs/serving.md.
    """
    from clora.serving.app import ServeSettings
    from clora.serving.guard import Limits
    from clora.serving.inference import load_library
    from clora.serving.server import check_client_connections, check_port, serve as run_server

    check_port(port)  # before the model loads, as the limits and the key
    # click reads an empty variable as unset: an open server (or admin route) nobody asked for
    api_key = os.environ.get("CLORA_API_KEY") if api_key is None else api_key
    admin_key = os.environ.get("CLORA_ADMIN_KEY") if admin_key is None else admin_key
    limits = Limits(max_body_bytes=max_body_bytes, body_timeout_s=body_timeout, api_key=api_key,
                    admin_key=admin_key, max_header_bytes=max_header_bytes)
    check_client_connections(max_client_connections, max_connections)
    if learning["inbox_folder"] is not None:  # before the model loads, as the other settings
        from clora.inbox.records import check_inbox_folder

        check_inbox_folder(library, learning["inbox_folder"])
    loaded = load_library(library, threshold=threshold, margin=margin, fallback=fallback, device=device,
                          precision=precision, quantize=quantize)
    hooks = learning_settings(library, loaded.device, **learning)
    if upstream is not None:
        from clora.serving.gateway import Upstream

        hooks["upstream"] = Upstream(upstream, loaded, upstream_fallback or loaded.base_model_name,
                                     timeout_s=upstream_timeout, api_key=upstream_key)
    settings = ServeSettings(max_batch=max_batch, batch_wait_ms=batch_wait_ms, max_queue=max_queue,
                             max_inputs=max_inputs, max_input_chars=max_input_chars, loop_nice=loop_nice, **hooks,
                             limits=limits)

    def ready(bound):
        via = f", answering /v1 through {upstream}" if upstream else ""
        click.echo(f"serving {library} (version {loaded.version}) on http://{host}:{bound}{via}", err=True)

    run_server(loaded, host, port, settings, ready=ready, max_connections=max_connections,
               max_client_connections=max_client_connections)


def learning_settings(library, device, record_unrouted, inbox_folder, inbox_max_bytes, auto_promote, min_examples,
                      max_drop, promote_every) -> dict:
    """The inbox and auto-promote parts of ``ServeSettings`` from serve's options."""
    from clora.inbox.auto import AutoPromoter
    from clora.inbox.hooks import server_hooks
    from clora.inbox.records import Inbox

    if not (record_unrouted or inbox_folder or auto_promote):
        return {}
    inbox = Inbox(library, max_bytes=inbox_max_bytes, folder=inbox_folder)
    promoter = AutoPromoter(library, min_examples=min_examples, every_s=promote_every, max_drop=max_drop,
                            device=device, inbox_folder=inbox_folder) if auto_promote else None
    return server_hooks(inbox, record_unrouted, promoter)
