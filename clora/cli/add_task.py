"""``clora add-task``: train one new task onto an existing library."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from clora.cli.options import with_router_options
from clora.config import QUANTIZATIONS
from clora.errors import ConfigError


def _pct(x) -> str:
    return "  n/a" if x is None else f"{100 * x:5.1f}"


def _eval_files(values) -> dict[str, Path]:
    files = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--eval expects NAME=FILE, got {value!r}")  # the CLI may name its flags
        files[name] = Path(path)
    return files


def _change(before, after) -> str:
    return "  n/a" if before is None or after is None else f"{100 * (after - before):+5.1f}"


def print_result(result) -> None:
    routed = "" if result.routed_accuracy is None else f", routed {_pct(result.routed_accuracy).strip()}%"
    click.echo(f"added {result.task!r} to {result.library} (version {result.version}): "
               f"{result.metric} {_pct(result.accuracy).strip()}% (every adapter active){routed}")
    if result.earlier:
        click.echo("earlier tasks: routed is what predict and serve answer (each input in the snapshot of the task "
                   "the router picks); sum has every adapter active")
        click.echo(f"  {'task':<20} {'routed before':>13}  after  change   {'sum before':>10}  after  change")
        for row in result.earlier:
            click.echo(f"  {row.task:<20} {_pct(row.routed_before):>13}  {_pct(row.routed_after)}  "
                       f"{_change(row.routed_before, row.routed_after)}   {_pct(row.before):>10}  {_pct(row.after)}  "
                       f"{_change(row.before, row.after)}")
    t = result.timing
    click.echo(f"time: load {t['load_s']:.1f} s, train {t['train_s']:.1f} s, eval {t['eval_s']:.1f} s, "
               f"commit {t['commit_s']:.2f} s")
    for note in result.notes:
        click.echo(f"note: {note}")


@click.command("add-task")
@click.argument("library", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Name of the new task (letters, digits, '.', '_', '-').")
@click.option("--train", "train", required=True, type=click.Path(path_type=Path),
              help="Training data file (jsonl, json or csv).")
@click.option("--test", type=click.Path(path_type=Path), default=None,
              help="Test data file (default: 20% of --train, split with --seed).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "json", "csv"]), default=None,
              help="Data format (default: from the file name).")
@click.option("--labels", default=None, help="Comma-separated label set (default: the labels found in --train).")
@click.option("--instruction", default="", help="Task instruction (used in the prompt of causal/seq2seq models).")
@click.option("--trigger", "triggers", multiple=True, help="Routes matching inputs to this task (repeatable): a keyword, 'regex:PATTERN' or 'prefix:TEXT'.")
@click.option("--text-field", default="sentence", show_default=True, help="Field holding the input text.")
@click.option("--label-field", "--target-field", "label_field", default="label", show_default=True,
              help="Field holding the label (or, for --kind generation, the target answer).")
@click.option("--kind", type=click.Choice(["classification", "generation"]), default="classification",
              show_default=True, help="generation: free-text targets, answered by greedy generation (causal and "
                                      "seq2seq models).")
@click.option("--metric", type=click.Choice(["exact_match", "f1", "rouge_l"]), default=None,
              help="How a generation task is scored (default: exact_match).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=32, show_default=True,
              help="The longest answer a generation task generates.")
@click.option("--eval", "evals", multiple=True, metavar="NAME=FILE",
              help="Test file of an earlier task to re-evaluate (repeatable; tasks the library references are always evaluated).")
@click.option("--model", default=None, help="Base model (default: the one named in the library; must have the same weights).")
@click.option("--epochs", type=int, default=None,
              help="Training epochs, exactly (default: the library's, raised for a small task until --min-steps).")
@click.option("--min-steps", type=click.IntRange(min=0), default=None,
              help="The fewest optimiser steps the task trains for when --epochs is not given: a small task gets "
                   "more whole epochs until it reaches this many (default: the library's; 45 for a library made "
                   "before the setting).")
@click.option("--lr", type=float, default=None, help="Learning rate (default: the library's).")
@click.option("--batch-size", type=int, default=None, help="Training batch size (default: the library's).")
@click.option("--max-train", type=int, default=None, help="Cap on training examples (sampled with --seed).")
@click.option("--max-test", type=int, default=None, help="Cap on test examples (sampled with --seed).")
@click.option("--seed", type=int, default=None, help="Random seed (default: the library's).")
@click.option("--device", default="auto", show_default=True,
              help="auto (a GPU when there is one, else the CPU), cpu, cuda or cuda:N.")
@click.option("--quantize", default=None, type=click.Choice(QUANTIZATIONS),
              help="The base's quantization: the library's (the default) is the only one accepted, since its tasks "
                   "were all trained on that base.")
@with_router_options
@click.option("--quiet", is_flag=True, help="No progress bars.")
def add_task(library, name, train, test, fmt, labels, instruction, triggers, text_field, label_field, kind, metric,
             max_new_tokens, evals, model, epochs, min_steps, lr, batch_size, max_train, max_test, seed, device, quantize, threshold, margin, fallback, quiet):
    """Train task NAME onto LIBRARY without touching the tasks already there.

    The new adapter is trained with the library's method (orth: orthogonal to the stored
    subspace) on the library's base model, every earlier task with test data is
    re-evaluated, their forgetting printed, and the new version committed atomically.
    --threshold, --margin and --fallback are stored in the new version: predict and serve
    use them unless told otherwise.
    """
    from clora.workflows.add_task import AddTaskRequest, add_task as run_add_task

    if quiet:
        logging.getLogger("clora").setLevel(logging.WARNING)
    request = AddTaskRequest(
        library=library, name=name, train=train, test=test, format=fmt,
        labels=[x.strip() for x in labels.split(",") if x.strip()] if labels else None, instruction=instruction,
        triggers=list(triggers), text_field=text_field, label_field=label_field, kind=kind, metric=metric,
        max_new_tokens=max_new_tokens, eval_files=_eval_files(evals),
        model=model, epochs=epochs, min_steps=min_steps, lr=lr, batch_size=batch_size, max_train=max_train, max_test=max_test,
        seed=seed, device=device, quantize=quantize, progress=not quiet, threshold=threshold, margin=margin, fallback=fallback)
    result = run_add_task(request)
    if result.version is not None:  # under accelerate launch only the main process commits and reports
        print_result(result)
