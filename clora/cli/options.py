"""Options shared by the commands that train (run, compare) and the router's knobs (predict, serve, add-task)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import click

from clora.config import DEFAULT_EPOCHS, DEFAULT_MODEL, METHODS, MIN_STEPS, QUANTIZATIONS, ROUTER_TOKENS, RunConfig
from clora.settings import settings_class


def _default(field: str):
    """RunConfig's default for ``field``: one source of truth for the library and the CLI."""
    return RunConfig.__dataclass_fields__[field].default


TRAINING_OPTIONS = [
    click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                 help="Root of the task data (cl_benchmark folders; relative file paths)."),
    click.option("--model", default=DEFAULT_MODEL, show_default=True,
                 help="Base model: a local folder, a hub id, or the offline default all-MiniLM-L6-v2."),
    click.option("--rank", default=_default("rank"), show_default=True, type=int, help="LoRA rank r per task."),
    click.option("--alpha", default=_default("alpha"), show_default=True, type=float, help="LoRA scale numerator (update = alpha/r * B A)."),
    click.option("--epochs", default=None, type=int,
                 help=f"Training epochs per task. Default {DEFAULT_EPOCHS}, raised for a small task until it takes "
                      f"--min-steps optimiser steps (48 examples at batch 16: 15 epochs); given, exactly that many."),
    click.option("--min-steps", default=None, type=int,
                 help=f"The fewest optimiser steps a task trains for when --epochs is not given (default {MIN_STEPS}; "
                      "0: exactly the epochs). The shipped benchmarks take more steps than this already."),
    click.option("--lr", default=None, type=float,
                 help="Learning rate (Riemannian Adam). Default per method, tuned on the CL benchmark: "
                      + ", ".join(f"{m} {settings_class(m).default_lr:g}" for m in METHODS) + "."),
    click.option("--batch-size", default=_default("batch_size"), show_default=True, type=int, help="Training batch size."),
    click.option("--max-train", default=None, type=int, help="Cap on training examples per task (sampled with --seed)."),
    click.option("--max-test", default=None, type=int, help="Cap on test examples per task (sampled with --seed)."),
    click.option("--seed", default=_default("seed"), show_default=True, type=int, help="Random seed for sampling, init and order."),
    click.option("--targets", default=None, help="Comma-separated module names to adapt (default: the family's query and value)."),
    click.option("--temperature", default=_default("temperature"), show_default=True, type=float, help="Encoder label matching: cosine temperature."),
    click.option("--max-length", default=_default("max_length"), show_default=True, type=int, help="Tokens per input (longer inputs are truncated)."),
    click.option("--router-layer", default=None, type=int,
                 help="Layer whose hidden states the router reads (default: half way up, 3 of MiniLM's 6)."),
    click.option("--router-tokens", default=ROUTER_TOKENS, show_default=True, type=int,
                 help="Tokens of each input the router reads; fewer make routing cheaper (docs/routing.md)."),
    click.option("--device", default=_default("device"), show_default=True,
                 help="Where to train and evaluate: auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:N. "
                      "Under `accelerate launch` each process takes the device Accelerate assigns it."),
    click.option("--precision", default=_default("precision"), show_default=True, type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
                 help="Base model weights: auto (bf16 on a GPU that has it, else fp32), fp32, bf16, fp16 (GPU only). "
                      "Adapters train in fp32."),
    click.option("--quantize", default=None, type=click.Choice(QUANTIZATIONS),
                 help="Load the base's linear layers quantized (bitsandbytes; QLoRA's nf4, or int8), adapters in fp32; "
                      "needs pip install 'clora[quantize]'. Default: full precision (docs/quantization.md)."),
    click.option("--quiet", is_flag=True, help="No progress bars or per-task lines (results are still printed)."),
]


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _knob_owners() -> dict:
    """Knob name -> (its field, the methods that have it), in the order of ``METHODS``."""
    owners: dict[str, tuple] = {}
    for method in METHODS:
        for knob in settings_class(method).knobs():
            owners.setdefault(knob.name, (knob, []))[1].append(method)
    return owners


def knob_options() -> list:
    """One option per method knob (``clora/methods/<method>_settings.py``), its help prefixed by the methods
    that have it. Each defaults to ``None`` (not given): the method's own default then holds, and a knob
    given to a method that lacks it is refused rather than ignored."""
    options = []
    for name, (field, methods) in _knob_owners().items():
        meta = field.metadata
        kind = click.Choice(meta["choices"]) if meta.get("choices") else meta["type"]
        default = "" if field.default is None else f" [default: {_shown(field.default)}]"
        options.append(click.option(f"--{name.replace('_', '-')}", name, default=None, type=kind,
                                    help=f"{', '.join(methods)}: {meta['help']}{default}"))
    return options


METHOD_OPTIONS = knob_options()
#: every method knob's name (its option's too)
KNOBS = frozenset(_knob_owners())


def training_options(command):
    """Attach every shared training option, then every method knob's, to a click command."""
    for option in reversed(TRAINING_OPTIONS + METHOD_OPTIONS):
        command = option(command)
    return command


def split_knobs(options: dict) -> tuple[dict, dict]:
    """``options`` less the method knobs, and the knobs that were given (name -> value)."""
    knobs = {k: v for k, v in options.items() if k in KNOBS and v is not None}
    return {k: v for k, v in options.items() if k not in KNOBS}, knobs


def make_config(stream: str, out: Path | None, method: str, targets: str | None, quiet: bool, **options) -> RunConfig:
    """A validated RunConfig from parsed options, the method's knobs among them (CloraError on a bad value)."""
    if quiet:
        logging.getLogger("clora").setLevel(logging.WARNING)
    options, knobs = split_knobs(options)
    return RunConfig(stream=stream, out=out, method=method, progress=not quiet, settings=knobs,
                     targets=tuple(targets.split(",")) if targets else None, **options)


def with_config(command):
    """Decorator: turn the parsed options into ``config`` for the wrapped command."""
    @functools.wraps(command)
    def wrapper(stream, out, method, targets, quiet, **options):
        return command(make_config(stream, out, method, targets, quiet, **options))
    return wrapper


ROUTER_OPTIONS = [
    click.option("--threshold", type=float, default=None,
                 help="Router confidence below which an input falls back (default: the library's, else 0.8; "
                      "see docs/routing.md)."),
    click.option("--margin", type=float, default=None,
                 help="How much further than 95% of its task's fresh inputs an input may be before it counts "
                      "as unseen and its confidence is damped (default: the library's, else 1.1)."),
    click.option("--fallback", type=click.Choice(["sum", "base"]), default=None,
                 help="What an unsure input runs with: every adapter (sum) or none (base) (default: the "
                      "library's, else sum)."),
]


def with_router_options(command):
    for option in reversed(ROUTER_OPTIONS):
        command = option(command)
    return command
