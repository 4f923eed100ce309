"""Options shared by the commands that train (run, compare) and the router's knobs (predict, serve, add-task)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import click

from clora.config import DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_MODEL, MIN_STEPS, ROUTER_TOKENS, SUBSPACE_SOURCES, RunConfig


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
                      + ", ".join(f"{m} {lr:g}" for m, lr in DEFAULT_LR.items()) + "."),
    click.option("--frame-lr", default=None, type=float,
                 help="orth: learning rate of the Stiefel frames X_t (default: --lr; B always takes --lr); "
                      "scaled by sqrt(d_in r) so a frame steps as far as a Euclidean matrix would."),
    click.option("--frame-schedule", default=_default("frame_schedule"), show_default=True,
                 type=click.Choice(["constant", "linear"]),
                 help="orth: the frames' rate over a task: constant, or linear (falls to 0 by the task's last step; "
                      "B keeps --lr)."),
    click.option("--attenuation", default=_default("attenuation"), show_default=True, type=float,
                 help="orth: scale a new adapter down (by up to 90%) in the free directions where earlier tasks' "
                      "inputs left energy outside the reserved subspace, by SGP's importance with scale "
                      "coefficient gamma (larger: scaled more); 0 turns it off (scaled projection, SGP)."),
    click.option("--batch-size", default=_default("batch_size"), show_default=True, type=int, help="Training batch size."),
    click.option("--max-train", default=None, type=int, help="Cap on training examples per task (sampled with --seed)."),
    click.option("--max-test", default=None, type=int, help="Cap on test examples per task (sampled with --seed)."),
    click.option("--seed", default=_default("seed"), show_default=True, type=int, help="Random seed for sampling, init and order."),
    click.option("--targets", default=None, help="Comma-separated module names to adapt (default: the family's query and value)."),
    click.option("--subspace", default=_default("subspace"), show_default=True,
                 help=f"orth: where reserved directions come from: {', '.join(SUBSPACE_SOURCES)}."),
    click.option("--energy", default=None, type=float,
                 help="orth with activations: share of input energy a task reserves (GPM threshold); "
                      "default 0.95 for a classification task, 0.99 for a generation task."),
    click.option("--capacity-tasks", default=None, type=int,
                 help="orth: how many tasks the reserved subspace keeps room for (default: the stream's length); "
                      "each task reserves at most what leaves every later task room for its rank."),
    click.option("--retraction", default=_default("retraction"), show_default=True,
                 help="orth: Stiefel retraction, cayley (canonical metric, a Lie-group step) or qr."),
    click.option("--frame-init", default=None,
                 help="orth: where each frame starts: gradient (the free directions along which a sample of the "
                      "task's loss falls fastest) or random (uniform in the free directions); default random for "
                      "a classification task, gradient for a generation task."),
    click.option("--lambda1", default=_default("lambda1"), show_default=True, type=float, help="olora: weight of sum |A_i A_t^T|."),
    click.option("--lambda2", default=_default("lambda2"), show_default=True, type=float, help="olora: weight of the L2 term on new factors."),
    click.option("--olie-lambda", default=_default("olie_lambda"), show_default=True, type=float, help="olie: weight of sum ||E_i E_t^T||_F."),
    click.option("--taylor-order", default=_default("taylor_order"), show_default=True, type=int, help="olie: order of the Taylor exp."),
    click.option("--replay-fraction", default=_default("replay_fraction"), show_default=True, type=float,
                 help="replay: share of each task's training examples kept and trained on with every later task."),
    click.option("--osf-preserve", default=_default("osf_preserve"), show_default=True, type=(float, float),
                 help="osf: fraction of each weight's singular directions frozen on the first and on the last task "
                      "(raised linearly in between, as in PEFT's OSF example)."),
    click.option("--temperature", default=_default("temperature"), show_default=True, type=float, help="Encoder label matching: cosine temperature."),
    click.option("--max-length", default=_default("max_length"), show_default=True, type=int, help="Tokens per input (longer inputs are truncated)."),
    click.option("--router-layer", default=None, type=int,
                 help="Layer whose hidden states the router reads (default: half way up, 3 of MiniLM's 6)."),
    click.option("--router-tokens", default=ROUTER_TOKENS, show_default=True, type=int,
                 help="Tokens of each input the router reads; fewer make routing cheaper (docs/results.md)."),
    click.option("--device", default=_default("device"), show_default=True,
                 help="Where to train and evaluate: auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:N. "
                      "Under `accelerate launch` each process takes the device Accelerate assigns it."),
    click.option("--precision", default=_default("precision"), show_default=True, type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
                 help="Base model weights: auto (bf16 on a GPU that has it, else fp32), fp32, bf16, fp16 (GPU only). "
                      "Adapters train in fp32."),
    click.option("--quiet", is_flag=True, help="No progress bars or per-task lines (results are still printed)."),
]


def training_options(command):
    """Attach every shared training option to a click command."""
    for option in reversed(TRAINING_OPTIONS):
        command = option(command)
    return command


def make_config(stream: str, out: Path | None, method: str, targets: str | None, quiet: bool, **options) -> RunConfig:
    """A validated RunConfig from parsed options (CloraError on a bad value)."""
    if quiet:
        logging.getLogger("clora").setLevel(logging.WARNING)
    return RunConfig(stream=stream, out=out, method=method, progress=not quiet,
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
