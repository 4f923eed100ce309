"""``compare_seeds``: one comparison per seed, then each metric's mean and spread.

One seed of a four-task stream at 500 test examples per task leaves about a point of
noise on an average accuracy (log 15b7361:docs/results.md), as much as the gaps between methods.
Several seeds, each a different sample of the data and different initial adapters,
say which gaps are real: ``OUT/seed-<k>`` holds one whole comparison per seed and
``OUT/compare.{json,md,png}`` their mean ± standard deviation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
import json
import logging
import statistics
from pathlib import Path

from dataclasses import asdict, dataclass, field

from clora.config import RunConfig
from clora.errors import ConfigError
from clora.evaluation.plots import grouped_bars
from clora.workflows.compare import COMPARE_MARKER, METRICS, Comparison, compare_methods
from clora.workflows.outdir import check_out_dir

log = logging.getLogger("clora")


def seed_folder(out: Path, seed: int) -> Path:
    """Where one seed's whole comparison goes."""
    return out / f"seed-{seed}"


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``, refusing empty, non-integer or repeated seeds."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise ConfigError("no seed given in the seed list", field="seeds")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"seeds must be 0 or more, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"a seed is listed twice in {text!r}")
    return seeds


def mean_sd(values: list[float | None]) -> dict:
    """``{"mean", "sd", "values"}`` over seeds; sd is the sample standard deviation (n - 1).

    A metric a method does not have (mtl's BWT: ``None``) stays ``None``.
    """
    if any(v is None for v in values):
        return {"mean": None, "sd": None, "values": values}
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "sd": sd, "values": values}


def check_reference(reference: str, methods: list[str]) -> None:
    """Refuse a reference method that is not compared (its gaps would not exist)."""
    if reference not in methods:
        raise ConfigError(f"reference method {reference!r} is not among the compared methods ({', '.join(methods)})")


@dataclass
class SeedSummary:
    """A comparison repeated over seeds (``compare.json`` is ``to_dict()``).

    Every number is ``{"mean", "sd", "values"}`` over ``seeds``: ``methods[m]["modes"][mode][metric]``,
    ``methods[m]["overlap"]``, ``methods[m]["train_s"]``; ``gaps[m][mode]`` is ``reference``'s AA
    minus method ``m``'s, paired by seed.
    """

    stream: str
    model: str
    tasks: list[str]
    seeds: list[int]
    settings: dict
    methods: dict[str, dict]
    reference: str
    gaps: dict[str, dict]
    kept: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def __getitem__(self, key: str):
        """``summary["methods"]``: the compare.json view."""
        return self.to_dict()[key]


def paired_gaps(tables: dict[int, Comparison], reference: str) -> dict:
    """``reference``'s AA minus each other method's, seed by seed, per mode both have.

    Paired by seed, the two runs share their data sample, so the gap's spread is smaller
    than the two means' spreads together: it is the number that says whether one method
    beats another. ``{method: {mode: mean_sd}}``.
    """
    seeds = list(tables)
    ref_modes = tables[seeds[0]].methods[reference].modes
    gaps = {}
    for method, row in tables[seeds[0]].methods.items():
        if method == reference:
            continue
        gaps[method] = {mode: mean_sd([tables[s].methods[reference].modes[mode]["average_accuracy"]
                                       - tables[s].methods[method].modes[mode]["average_accuracy"] for s in seeds])
                        for mode in row.modes if mode in ref_modes}
    return gaps


def summarize_seeds(tables: dict[int, Comparison], reference: str | None = None) -> SeedSummary:
    """The per-seed comparison tables (``compare_methods``' return, by seed) -> one summary.

    Every table must hold the same methods and modes; each number becomes ``mean_sd``
    over the seeds, in the order given. ``reference`` (default: ``orth`` when compared,
    else the first method) is the method whose paired AA gaps to the others are given.
    """
    seeds = list(tables)
    first = tables[seeds[0]]
    methods = {}
    for method, row in first.methods.items():
        rows = [tables[s].methods[method] for s in seeds]
        methods[method] = {
            "lr": row.lr,
            "modes": {mode: {k: mean_sd([r.modes[mode][k] for r in rows]) for k in METRICS} for mode in row.modes},
            "overlap": mean_sd([r.overlap for r in rows]),
            "train_s": mean_sd([r.train_s for r in rows]),
        }
    reference = reference or ("orth" if "orth" in methods else next(iter(methods)))
    check_reference(reference, list(methods))
    return SeedSummary(stream=first.stream, model=first.model, tasks=first.tasks, seeds=seeds,
                       settings={k: v for k, v in first.settings.items() if k != "seed"}, methods=methods,
                       reference=reference, gaps=paired_gaps(tables, reference),
                       kept={str(s): tables[s].kept for s in seeds if tables[s].kept})


def _pm(stat: dict, scale: float = 100.0, digits: int = 1) -> str:
    """``"68.2 ± 0.7"`` (percent by default); ``n/a`` where the metric does not exist."""
    if stat["mean"] is None:
        return "n/a"
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['sd']:.{digits}f}"


def _signed(x: float) -> str:
    """A gap in points with its sign; a gap that rounds to zero is ``+0.0``, never ``-0.0``."""
    return f"{round(100 * x, 1) + 0.0:+.1f}"


def seeds_markdown(summary: SeedSummary | dict) -> str:
    """Mean ± sd per method and mode, then each seed's AA (the numbers behind the mean)."""
    summary = summary.to_dict() if isinstance(summary, SeedSummary) else summary
    seeds = summary["seeds"]
    shared = ", ".join(f"{k} {v}" for k, v in summary["settings"].items())
    lines = [f"# clora compare: {summary['stream']} over seeds {', '.join(map(str, seeds))}", "",
             f"model `{summary['model']}`; tasks: {', '.join(summary['tasks'])}; one comparison per seed in seed-<k>/",
             "",
             f"settings shared by every method: {shared}", ""]
    for seed, kept in summary.get("kept", {}).items():
        lines += [f"seed {seed}: finished runs kept (--resume): {', '.join(kept)}", ""]
    lines += ["mean ± sample standard deviation over the seeds (%; overlap: the largest of any seed):", "",
              "| method | lr | mode | AA | BWT | forgetting | FWT | overlap (max) | train s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for method, row in summary["methods"].items():
        overlap = "n/a" if row["overlap"]["mean"] is None else f"{max(row['overlap']['values']):.1e}"
        for mode, m in row["modes"].items():
            cells = " | ".join(_pm(m[k]) for k in METRICS)
            lines.append(f"| {method} | {row['lr']:g} | {mode} | {cells} | {overlap} | {_pm(row['train_s'], 1, 0)} |")
    if summary["gaps"]:
        ref = summary["reference"]
        lines += ["", f"{ref}'s AA minus each method's, paired by seed (points; mean ± sd):", "",
                  "| method | mode | " + " | ".join(f"seed {s}" for s in seeds) + f" | {ref} minus method |",
                  "|---|---|" + "---|" * (len(seeds) + 1)]
        for method, modes in summary["gaps"].items():
            for mode, gap in modes.items():
                cells = " | ".join(_signed(v) for v in gap["values"])
                lines.append(f"| {method} | {mode} | {cells} | {_signed(gap['mean'])} ± {100 * gap['sd']:.1f} |")
    lines += ["", "AA (%) per seed:", "",
              "| method | mode | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "|---|---|" + "---|" * len(seeds)]
    for method, row in summary["methods"].items():
        for mode, m in row["modes"].items():
            lines.append(f"| {method} | {mode} | " + " | ".join(f"{100 * v:.1f}" for v in m["average_accuracy"]["values"]) + " |")
    return "\n".join(lines) + "\n"


def write_seed_summary(out: Path, summary: SeedSummary) -> None:
    """``compare.json``, ``compare.md`` and ``compare.png`` (mean AA per method and mode, sd as error bars)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(seeds_markdown(summary), encoding="utf-8")
    bars = {m: {mode: (100 * block["average_accuracy"]["mean"], 100 * block["average_accuracy"]["sd"])
                for mode, block in row["modes"].items()} for m, row in summary.methods.items()}
    grouped_bars(out / "compare.png", bars, f"{summary.stream}: average accuracy over {len(summary.seeds)} seeds",
                 ylabel="average accuracy (%), mean ± sd")
    # the marker goes last: its presence means every seed finished
    (out / COMPARE_MARKER).write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")


def _check_seeds_dir(out: Path, seeds: list[int], resume: bool) -> None:
    """Refuse a folder that is neither empty nor an earlier comparison; say when --resume would help."""
    if (out / COMPARE_MARKER).is_file():
        return
    started = [s for s in seeds if seed_folder(out, s).is_dir() and any(seed_folder(out, s).iterdir())]
    if started and resume:
        return  # each seed's folder is checked by its own comparison
    if started:
        raise ConfigError(f"output folder {str(out)!r} holds an unfinished comparison over seeds (started: "
                          f"{', '.join(map(str, started))}); resume it to keep its finished runs, or choose another output folder",
                          field="resume")
    check_out_dir(out, COMPARE_MARKER)


def compare_seeds(config: RunConfig, methods: list[str], out: Path, seeds: list[int], lr: float | None = None,
                  jobs: int = 1, resume: bool = False, reference: str | None = None,
                  knobs: Mapping | None = None) -> Comparison | SeedSummary:
    """``compare_methods`` once per seed into ``out/seed-<k>``, then their summary in ``out``.

    One seed is a plain comparison in ``out`` itself (``compare_methods``'s layout).
    ``jobs`` and ``resume`` apply within each seed; a resumed run keeps every finished
    method run of every seed whose settings match. ``reference``: see ``summarize_seeds``; ``knobs``: see
    ``compare_methods``.
    """
    if reference is not None:
        check_reference(reference, methods)  # before hours of training, not after
    if len(seeds) == 1:
        if reference is not None:
            raise ConfigError("a reference method gives gaps paired by seed: it needs two or more seeds", field="reference")
        return compare_methods(dataclasses.replace(config, seed=seeds[0]), methods, out, lr, jobs, resume, knobs)
    _check_seeds_dir(out, seeds, resume)
    tables = {}
    for k, seed in enumerate(seeds):
        log.info("=== seed %d (%d of %d)", seed, k + 1, len(seeds))
        tables[seed] = compare_methods(dataclasses.replace(config, seed=seed), methods, seed_folder(out, seed),
                                       lr, jobs, resume, knobs)
    summary = summarize_seeds(tables, reference)
    write_seed_summary(out, summary)
    return summary
