"""``clora library ...``: inspect and maintain an adapter library."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clora.errors import CloraError, ConfigError

LIBRARY = click.argument("library", type=click.Path(path_type=Path))


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


@click.group("library")
def library():
    """Inspect and maintain an adapter library (a run's `library/` folder or one grown by add-task)."""


@library.command("list")
@LIBRARY
def list_cmd(library):
    """One line per task: name, method, rank, labels, score when learnt and in sum mode now, and its metric."""
    from clora.library.summary import list_tasks

    rows = list_tasks(library)
    click.echo(f"{'task':<20} {'method':<7} {'rank':>4} {'labels':>6} {'learnt':>7} {'sum':>6}  {'metric':<11}  source")
    for r in rows:
        labels = "text" if r.metric != "accuracy" else r.labels  # a generation task answers in free text
        click.echo(f"{r.name:<20} {r.method or '?':<7} {r.rank or 0:>4} {labels:>6} "
                   f"{_pct(r.learned):>7} {_pct(r.sum):>6}  {r.metric:<11}  {r.source}")


@library.command()
@LIBRARY
@click.option("--json", "as_json", is_flag=True, help="Print the whole description as JSON.")
def show(library, as_json):
    """The library's base model, method, settings, tasks and subspace capacity per module."""
    from clora.library.ops import show as describe

    info = describe(library)
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2))
        return
    quantized = "" if info.quantization == "none" else f", quantized {info.quantization}"
    click.echo(f"version {info.version} (format {info.format_version}), base model {info.base_model} "
               f"({info.family}{quantized}), method {info.method}, targets {', '.join(info.target_modules)}")
    click.echo(f"tasks: {', '.join(t['name'] for t in info.tasks) or 'none'}")
    private = [t["name"] for t in info.tasks if t.get("private")]
    if private:
        click.echo(f"private adapters (rank {info.settings.get('private_rank')}, each acts only where its own task "
                   f"answers): {', '.join(private)}")
    if info.reserved:
        click.echo(f"directions still reserved by removed tasks: {', '.join(r['name'] for r in info.reserved)}")
    click.echo("subspace capacity used (reserved / d_in):")
    for name, c in info.capacity.items():
        click.echo(f"  {name:<50} {c['reserved']:>5} / {c['d_in']:<5} ({100 * c['reserved'] / c['d_in']:.0f}%)")
    if info.capacity_by_task:
        click.echo("reserved by each task:")
        for line in info.capacity_lines()[2:]:
            click.echo(f"  {line}")


@library.command()
@LIBRARY
def verify(library):
    """Check checksums and structure; exit non-zero naming what is wrong."""
    from clora.library.ops import verify as check

    result = check(library)
    for note in result.notes:
        click.echo(f"note: {note}")
    if not result.ok:
        for problem in result.problems[1:]:
            click.echo(f"problem: {problem}", err=True)
        raise CloraError(f"library {str(library)!r} is damaged: {result.problems[0]}")
    click.echo(f"ok: {library}")


@library.command()
@LIBRARY
@click.argument("task")
@click.option("--release", is_flag=True, help="Also free the input directions the task reserved (orth).")
def remove(library, task, release):
    """Remove TASK (a new version; the previous one is kept for rollback)."""
    from clora.library.ops import remove as drop

    manifest = drop(library, task, release=release)
    kept = "" if release else " (its subspace directions stay reserved; --release frees them)"
    click.echo(f"removed {task!r}: library is at version {manifest.version}{kept}")


@library.command()
@LIBRARY
def rollback(library):
    """Make the previous version current again (run twice to undo)."""
    from clora.library.store import rollback as back

    manifest = back(library)
    tasks = ", ".join(manifest.names) or "none"
    click.echo(f"rolled back: version {manifest.version} restores the content before version "
               f"{manifest.rolled_back_from} (tasks: {tasks})")


@library.command("export")
@LIBRARY
@click.option("--task", default=None, help="Task whose snapshot to export.")
@click.option("--all", "every", is_flag=True,
              help="Every task: OUT/<task>/ per task snapshot and OUT/README.md on serving them with vLLM.")
@click.option("--base-model", default=None,
              help="The base model name the folders name (vLLM's resolver loads a folder only for the model it "
                   "serves; default: the library's).")
@click.option("--format", "fmt", type=click.Choice(["peft"]), default="peft", show_default=True)
@click.argument("out", type=click.Path(path_type=Path))
def export_cmd(library, task, every, base_model, fmt, out):
    """Write TASK's snapshot (or, with --all, every task's) as standard PEFT LoRA folders in OUT."""
    from clora.api import open_library

    if every == (task is not None):
        raise ConfigError("give --task NAME or --all")
    if every:
        folders = open_library(library).export_all(out, base_model=base_model)
        click.echo(f"wrote {len(folders)} PEFT folders in {out} ({', '.join(f.name for f in folders)}) and "
                   f"{out}/README.md (how to serve them with vLLM)")
        return
    open_library(library).export(task, out, base_model=base_model)
    click.echo(f"wrote {out}/adapter_config.json and adapter_model.safetensors (load with PeftModel.from_pretrained)")


@library.command("import")
@LIBRARY
@click.argument("peft_dir", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Name of the new task.")
@click.option("--labels", default=None, help="Comma-separated label set of the task (classification).")
@click.option("--kind", type=click.Choice(["classification", "generation"]), default="classification",
              show_default=True, help="generation: the task answers in free text (no --labels).")
@click.option("--metric", type=click.Choice(["exact_match", "f1", "rouge_l"]), default=None,
              help="How a generation task is scored (default: exact_match).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=32, show_default=True,
              help="The longest answer a generation task generates.")
@click.option("--instruction", default="", help="Task instruction.")
@click.option("--trigger", "triggers", multiple=True, help="Routes matching inputs to this task (repeatable): a keyword, 'regex:PATTERN' or 'prefix:TEXT'.")
def import_cmd(library, peft_dir, name, labels, kind, metric, max_new_tokens, instruction, triggers):
    """Add the PEFT LoRA folder PEFT_DIR to LIBRARY as task NAME."""
    from clora.library.ops import import_peft

    generation = {"metric": metric, "max_new_tokens": max_new_tokens} if kind == "generation" else None
    manifest, notes = import_peft(library, peft_dir, name, [x.strip() for x in (labels or "").split(",") if x.strip()],
                                  instruction, list(triggers), generation=generation)
    click.echo(f"imported {name!r}: library is at version {manifest.version}")
    for note in notes:
        click.echo(f"note: {note}")
