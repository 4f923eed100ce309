"""``clora inbox LIB list | cluster | label | promote | drop``: grow a library from what it could not route."""

from __future__ import annotations

import json
from pathlib import Path

import click

DEVICE = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")


def _pct(x: float) -> str:
    return f"{x:.1f}"


@click.group("inbox")
@click.argument("library", type=click.Path(path_type=Path))
@click.option("--inbox", "folder", type=click.Path(path_type=Path), default=None,
              help="The inbox folder (default: LIBRARY.inbox beside the library).")
@click.pass_context
def inbox(ctx, library, folder):
    """The inputs a served LIBRARY could not route (`clora serve --record-unrouted`) and the
    labelled feedback sent to it (POST /feedback): list them, cluster them into candidate
    tasks, label them, and promote a cluster to a new task behind a gate that refuses any
    promotion that would cost an earlier task more than --max-drop points. The inbox holds
    users' inputs: see docs/learning-live.md."""
    ctx.obj = (library, folder)


def _steps(ctx):
    from clora.inbox.steps import LibraryInbox

    return LibraryInbox(*ctx.obj)


@inbox.command("list")
@click.option("--kind", type=click.Choice(["unrouted", "feedback"]), default=None, help="Only records of this kind.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record.")
@click.pass_context
def list_cmd(ctx, kind, as_json):
    """One line per record: id, kind, label or target when known, router guess and confidence, input."""
    for r in _steps(ctx).list(kind):
        if as_json:
            click.echo(json.dumps({**r.to_dict(), "label": r.label, "target": r.target}, ensure_ascii=False))
        else:
            guess = f"{r.guess}:{r.confidence:.2f}" if r.guess is not None else "-"
            repeats = f" (x{r.count})" if r.count > 1 else ""
            click.echo(f"{r.id}  {r.kind:<8} {(r.answer_label or '-')[:16]:<16} {guess:<24} {r.input[:80]}{repeats}")


@inbox.command()
@click.option("--min-cluster-size", default=5, show_default=True, type=click.IntRange(min=2),
              help="The fewest inputs a cluster may have.")
@DEVICE
@click.option("--json", "as_json", is_flag=True, help="One JSON object per cluster (cluster, size, inputs, ...).")
@click.pass_context
def cluster(ctx, min_cluster_size, device, as_json):
    """Group the records into candidate tasks on the router's features (HDBSCAN); cluster 0 is the largest."""
    clusters = _steps(ctx).cluster(min_cluster_size, device=device)
    for c in clusters:
        if as_json:
            click.echo(json.dumps(c.to_dict(), ensure_ascii=False))
        else:
            click.echo(f"cluster {c.cluster}: {c.size} inputs, {c.labelled} labelled; words: {', '.join(c.words)}")
            for text in c.examples:
                click.echo(f"    {text[:100]}")
    if not clusters and not as_json:
        click.echo("no clusters (too few records, or none dense enough)")


@inbox.command()
@click.argument("pairs", nargs=-1)
@click.option("--file", "file", type=click.Path(path_type=Path, dir_okay=False),
              help='A JSON lines file of {"id": ..., "label": ...} (or "target").')
@click.option("--target", is_flag=True, help="The values are free-text targets, not labels.")
@click.pass_context
def label(ctx, pairs, file, target):
    """Label records: `clora inbox LIB label ID LABEL [ID LABEL ...]` or --file."""
    from clora.errors import DataError

    if len(pairs) % 2:
        raise DataError("give pairs of record id and label", field="labels")
    labels = dict(zip(pairs[::2], pairs[1::2]))
    if file is not None:
        labels.update(_label_file(file, "target" if target else "label"))
    click.echo(f"labelled {_steps(ctx).label(labels, target=target)} record(s)")


def _label_file(path: Path, key: str) -> dict[str, str]:
    from clora.data.files import read_text_bounded
    from clora.errors import DataError

    out = {}
    lines = read_text_bounded(path, "label file").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out[str(row["id"])] = str(row[key])
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{path}:{n}: expected {{\"id\": ..., \"{key}\": ...}}", field="file") from None
    return out


@inbox.command()
@click.option("--cluster", "cluster_id", required=True, type=int, help="The cluster (of the last `cluster`).")
@click.option("--name", required=True, help="The new task's name.")
@click.option("--labels", default=None, help="The new task's label set, comma-separated (default: those seen).")
@click.option("--max-drop", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Refuse when any earlier task's routed accuracy would drop by more points than this.")
@click.option("--epochs", default=None, type=click.IntRange(min=1),
              help="Training epochs (default: the library's, raised so that a small cluster gets 45 steps).")
@click.option("--seed", default=None, type=click.IntRange(min=0), help="Seed (default: the library's).")
@DEVICE
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def promote(ctx, cluster_id, name, labels, max_drop, epochs, seed, device, quiet):
    """Train a cluster's labelled examples as task NAME, check every earlier task, commit if none drops."""
    label_set = [x.strip() for x in labels.split(",") if x.strip()] if labels else None
    result = _steps(ctx).promote(cluster_id, name, labels=label_set, max_drop=max_drop, epochs=epochs, seed=seed,
                                 device=device, progress=not quiet)
    for row in result.gate:
        click.echo(f"  {row.task:<20} routed accuracy {_pct(row.before)} -> {_pct(row.after)} "
                   f"({row.examples} examples of its {row.data})")
    if not result.committed:
        raise click.ClickException(result.message())
    click.echo(result.message())


@inbox.command()
@click.argument("ids", nargs=-1)
@click.option("--cluster", "cluster_id", type=int, default=None, help="Every record of this cluster.")
@click.option("--all", "everything", is_flag=True, help="Every record.")
@click.pass_context
def drop(ctx, ids, cluster_id, everything):
    """Remove records by id, by cluster, or all (labelled feedback included)."""
    click.echo(f"dropped {_steps(ctx).drop(set(ids), cluster_id, everything)} record(s)")
