"""``clora predict`` and ``clora serve``: answer inputs with a library."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clora.errors import DataError

MODES = ("routed", "oracle", "sum", "base")
ROUTER_OPTIONS = [
    click.option("--threshold", type=float, default=None,
                 help="Router confidence below which an input falls back (default 0.5; see docs/routing.md)."),
    click.option("--fallback", type=click.Choice(["sum", "base"]), default=None,
                 help="What an unsure input runs with: every adapter (sum, default) or none (base)."),
]


def router_options(command):
    for option in reversed(ROUTER_OPTIONS):
        command = option(command)
    return command


def _read_inputs(path: Path) -> list[str]:
    """One input per line; a line that is a JSON object contributes its 'input' or 'sentence' field."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"input file {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from None
    texts = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path}: line {n} looks like JSON but does not parse") from None
            text = row.get("input", row.get("sentence"))
            if not isinstance(text, str):
                raise DataError(f"{path}: line {n} has no string 'input' or 'sentence' field")
            texts.append(text)
        else:
            texts.append(line)
    return texts


@click.command()
@click.argument("library", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("--input", "input_file", type=click.Path(path_type=Path), default=None,
              help="File with one input per line (plain text, or JSON lines with 'input' / 'sentence').")
@click.option("--mode", type=click.Choice(MODES), default="routed", show_default=True,
              help="routed: the router picks the task; oracle: the snapshot of --task; sum: every adapter; base: none.")
@click.option("--task", default=None, help="Answer every input as this task (skips routing).")
@router_options
def predict(library, texts, input_file, mode, task, threshold, fallback):
    """Answer TEXT... (or --input FILE) with LIBRARY; one JSON line per input.

    Each line is {"input", "task", "confidence", "prediction", "source"}: the task the
    input was answered as, how sure the router was (1 for triggers and --task), and why
    (trigger, learned, fallback, given).
    """
    from clora.serving.inference import load_library

    inputs = list(texts) + (_read_inputs(input_file) if input_file else [])
    if not inputs:
        raise DataError("give texts to answer, or --input FILE")
    loaded = load_library(library, threshold=threshold, fallback=fallback)
    for row in loaded.predict(inputs, mode=mode, task=task):
        click.echo(json.dumps(row.to_dict()))


@click.command()
@click.argument("library", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on (0: any free port).")
@router_options
def serve(library, host, port, threshold, fallback):
    """Serve LIBRARY over HTTP: POST /predict, GET /tasks, GET /health.

    POST /predict takes {"inputs": [...], "mode": "routed", "task": null}. Tasks added
    with `clora add-task` are picked up without a restart.
    """
    from clora.serving.inference import load_library
    from clora.serving.server import serve as run_server

    loaded = load_library(library, threshold=threshold, fallback=fallback)

    def ready(server):
        click.echo(f"serving {library} (version {loaded.version}) on http://{host}:{server.server_port}", err=True)

    run_server(loaded, host, port, ready=ready)
