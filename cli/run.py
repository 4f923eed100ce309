"""``clora run``: one continual stream end to end."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from clora.config import DEFAULT_MODEL, METHODS, SUBSPACE_SOURCES, RunConfig



def _targets(value: str | None):
    return tuple(value.split(",")) if value else None


@click.command()
@click.argument("stream")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder to write (default: clora-runs/<stream>-<method>). An earlier run there is replaced only when the new one finishes.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Root of the task data (cl_benchmark folders; relative file paths).")
@click.option("--model", default=DEFAULT_MODEL, show_default=True,
              help="Base model: a local folder, a hub id, or the offline default all-MiniLM-L6-v2.")
@click.option("--method", default="orth", show_default=True, help=f"Continual method: {', '.join(METHODS)}.")
@click.option("--rank", default=8, show_default=True, type=int, help="LoRA rank r per task.")
@click.option("--alpha", default=16.0, show_default=True, type=float, help="LoRA scale numerator (update = alpha/r * B A).")
@click.option("--epochs", default=3, show_default=True, type=int, help="Training epochs per task.")
@click.option("--lr", default=1e-3, show_default=True, type=float, help="Learning rate (Riemannian Adam).")
@click.option("--batch-size", default=16, show_default=True, type=int, help="Training batch size.")
@click.option("--max-train", default=None, type=int, help="Cap on training examples per task (sampled with --seed).")
@click.option("--max-test", default=None, type=int, help="Cap on test examples per task (sampled with --seed).")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed for sampling, init and order.")
@click.option("--targets", default=None, help="Comma-separated module names to adapt (default: the family's query and value).")
@click.option("--subspace", default="adapters", show_default=True,
              help=f"orth only: where reserved directions come from: {', '.join(SUBSPACE_SOURCES)}.")
@click.option("--energy", default=0.95, show_default=True, type=float,
              help="orth with activations: share of input energy a task reserves (GPM threshold).")
@click.option("--max-length", default=128, show_default=True, type=int, help="Tokens per input (longer inputs are truncated).")
@click.option("--quiet", is_flag=True, help="No progress bars or per-task lines (results are still printed).")
def run(stream, out, data_dir, model, method, rank, alpha, epochs, lr, batch_size, max_train, max_test,
        seed, targets, subspace, energy, max_length, quiet):
    """Train STREAM task by task and report forgetting.

    STREAM is a shipped stream name (e.g. `demo`) or the path of a YAML stream file.
    Writes report.json, report.md, accuracy_<mode>.csv, heatmap_<mode>.png and the
    trained adapters (library/) into the run folder.
    """
    config = RunConfig(stream=stream, out=out, data_dir=data_dir, model=model, method=method, rank=rank,
                       alpha=alpha, epochs=epochs, lr=lr, batch_size=batch_size, max_train=max_train,
                       max_test=max_test, seed=seed, targets=_targets(targets), subspace=subspace,
                       energy=energy, max_length=max_length, progress=not quiet)
    from clora.runner import run_stream  # heavy imports only when a run starts

    if quiet:
        logging.getLogger("clora").setLevel(logging.WARNING)
    report = run_stream(config)
    click.echo(f"wrote {report['out']}/report.json")
    for mode, block in report["modes"].items():
        click.echo(f"{mode:>6}: AA {100 * block['average_accuracy']:5.1f}  BWT {100 * block['bwt']:+5.1f}  "
                   f"forgetting {100 * block['forgetting']:5.1f}  FWT {100 * block['fwt']:+5.1f}")
    if report["overlap"] is not None:
        click.echo(f"overlap: {report['overlap']:.2e}")
    for note in report.get("notes", []):
        click.echo(f"note: {note}")
