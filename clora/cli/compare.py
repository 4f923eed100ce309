"""``clora compare``: several methods on one stream, same data, seed and settings."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from clora.cli.options import make_config, split_knobs, training_options
from clora.config import METHODS


@click.command()
@click.argument("stream")
@click.option("--methods", default="seq,inc,olora,olie,orth,mtl", show_default=True,
              help=f"Comma-separated methods to run, in order (any of {', '.join(METHODS)}).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for the runs (one sub-folder per method) and compare.{json,md,png} "
                   "(default: clora-runs/<stream>-compare).")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Methods to run at once, each in its own process with an equal share of the CPU "
                   "threads (same results as one at a time; progress bars are off when above 1).")
@click.option("--seeds", default=None,
              help="Comma-separated seeds (e.g. 0,1,2): the whole comparison once per seed into OUT/seed-<k>, "
                   "then mean ± sd of every metric in OUT/compare.{json,md,png}. Replaces --seed.")
@click.option("--reference", default=None,
              help="With --seeds: the method whose AA gap to every other method is given seed by seed "
                   "(default: orth when compared, else the first method).")
@click.option("--resume", is_flag=True,
              help="Keep each method whose finished run in OUT/<method> (OUT/seed-<k>/<method> with --seeds) used "
                   "the same stream, model, settings and data files; run only the others (goes on after an "
                   "interruption).")
@training_options
def compare(stream, methods, out, jobs, seeds, reference, resume, targets, quiet, **options):
    """Run several methods on STREAM and tabulate AA, BWT, forgetting, FWT, overlap, time.

    Every method sees the same data, seed and hyperparameters; each starts from a fresh
    copy of the base model. With --seeds, the comparison is repeated per seed and the
    table gives each number's mean and standard deviation over the seeds.
    """
    from clora.workflows.compare import parse_methods
    from clora.workflows.compare_seeds import compare_seeds, parse_seeds
    from clora.errors import ConfigError

    methods = parse_methods(methods)
    if seeds is not None and click.get_current_context().get_parameter_source("seed") is ParameterSource.COMMANDLINE:
        raise ConfigError("give --seed or --seeds, not both")
    seeds = parse_seeds(seeds) if seeds is not None else [options["seed"]]
    out = out or Path("clora-runs") / f"{Path(stream).stem}-compare"
    options, knobs = split_knobs(options)  # each compared method takes its own knobs
    config = make_config(stream, out, methods[0], targets, quiet, **options)
    compare_seeds(config, methods, out, seeds, lr=options["lr"], jobs=jobs, resume=resume, reference=reference,
                  knobs=knobs)
    click.echo(f"wrote {out}/compare.md")
    click.echo((out / "compare.md").read_text().split("\n\n", 2)[-1].rstrip())
