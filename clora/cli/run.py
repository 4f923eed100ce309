"""``clora run``: one continual stream end to end."""

from __future__ import annotations

from pathlib import Path

import click

from clora.cli.options import training_options, with_config
from clora.config import METHODS


def print_summary(report) -> None:
    for mode, block in report.modes.items():
        parts = [f"AA {100 * block.average_accuracy:5.1f}"]
        for key, label, sign in (("bwt", "BWT", "+"), ("forgetting", "forgetting", ""), ("fwt", "FWT", "+")):
            value = getattr(block, key)
            parts.append(f"{label} {'n/a' if value is None else format(100 * value, sign + '5.1f')}")
        click.echo(f"{mode:>6}: " + "  ".join(parts))
    if report.overlap is not None:
        click.echo(f"overlap: {report.overlap:.2e}")
    for note in report.notes:
        click.echo(f"note: {note}")


def print_next_steps(library: Path) -> None:
    """Where the library is and what a user does with it next."""
    click.echo(f"library: {library}")
    click.echo("next:")
    click.echo(f'  clora predict {library} "some text"          # answer inputs; the router picks the task')
    click.echo(f"  clora add-task {library} --name NAME --train FILE   # add a task later")
    click.echo(f"  clora serve {library}                       # HTTP API")


@click.command()
@click.argument("stream")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder to write (default: clora-runs/<stream>-<method>). An earlier run there is replaced only when the new one finishes.")
@click.option("--method", default="orth", show_default=True, help=f"Continual method: {', '.join(METHODS)}.")
@training_options
@with_config
def run(config):
    """Train STREAM task by task and report forgetting.

    STREAM is a shipped stream name (e.g. `demo`) or the path of a YAML stream file.
    Writes report.json, report.md, accuracy_<mode>.csv, heatmap_<mode>.png and the
    trained adapters (library/) into the run folder.
    """
    from clora.workflows.run import run_stream  # heavy imports only when a run starts

    report = run_stream(config)
    if not report.main_process:  # under accelerate launch the main process reports
        return
    click.echo(f"wrote {report.out}/report.json")
    print_summary(report)
    print_next_steps(report.out / "library")
