"""Markdown tables of the metrics in run reports (report.json): one row per run and mode, or a summary.

    python examples/benchmarks/summarize_runs.py runs/cl4-seq runs/cl4-inc runs/cl4-orth
    python examples/benchmarks/summarize_runs.py runs/gen-* --json docs/benchmarks-data/demo_gen.json

A folder stands for its report.json; ``--json`` writes ``{run name: report}``, the data that
``runs_table`` renders in docs/results.md (``modes_table`` renders one report.json as it is).
"""

import argparse
import json
from pathlib import Path


def _pct(x):
    return "n/a" if x is None else f"{100 * x:.1f}"


def _overlap(report):
    return "n/a" if report["overlap"] is None else f"{report['overlap']:.1e}"


def _report(path) -> dict:
    path = Path(path)
    return json.loads((path / "report.json" if path.is_dir() else path).read_text())


def table(folders) -> str:
    lines = ["| run | method | mode | AA | BWT | forgetting | FWT | overlap | train s | eval s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for folder in folders:
        report = _report(folder)
        for mode, b in report["modes"].items():
            lines.append(f"| {Path(folder).name} | {report['method']} | {mode} | {_pct(b['average_accuracy'])} | "
                         f"{_pct(b['bwt'])} | {_pct(b['forgetting'])} | {_pct(b['fwt'])} | {_overlap(report)} | "
                         f"{report['timing']['train_s']:.0f} | {report['timing']['eval_s']:.0f} |")
    return "\n".join(lines)


def modes_table(report: dict) -> str:
    """One run (a report.json): per mode, AA, BWT, forgetting and FWT in percent, and the overlap."""
    lines = ["| mode | AA | BWT | forgetting | FWT | overlap |", "|---|---|---|---|---|---|"]
    for mode, b in report["modes"].items():
        lines.append(f"| {mode} | {_pct(b['average_accuracy'])} | {_pct(b['bwt'])} | {_pct(b['forgetting'])} | "
                     f"{_pct(b['fwt'])} | {_overlap(report)} |")
    return "\n".join(lines)


def runs_table(runs: dict) -> str:
    """``{run name: report}``: one row per run, AA and BWT of each mode, the overlap and each task as learnt."""
    lines = ["| run | model | method | sum AA | sum BWT | oracle AA | routed AA | overlap | learnt (diagonal) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, report in runs.items():
        modes = report["modes"]
        matrix = modes["oracle"]["accuracy_matrix"]
        learnt = ", ".join(_pct(matrix[i][i]) for i in range(len(matrix)))
        routed = modes.get("routed", {}).get("average_accuracy")
        lines.append(f"| {name} | {Path(report['model']).name} | {report['method']} | "
                     f"{_pct(modes['sum']['average_accuracy'])} | "
                     f"{_pct(modes['sum']['bwt'])} | {_pct(modes['oracle']['average_accuracy'])} | {_pct(routed)} | "
                     f"{_overlap(report)} | {learnt} |")
    return "\n".join(lines)


def summary_table(runs: dict) -> str:
    """``{method: {mode: {average_accuracy, bwt, ...}, overlap, diagonal}}`` (a stream's summary, as
    long10_seed0.json): one row per method, then each task as learnt."""
    lines = ["| method | sum AA | sum BWT | oracle AA | routed AA | overlap | learnt (diagonal, in stream order) |",
             "|---|---|---|---|---|---|---|"]
    for method, run in runs.items():
        learnt = ", ".join(_pct(x) for x in run["diagonal"])
        lines.append(f"| {method} | {_pct(run['sum']['average_accuracy'])} | {_pct(run['sum']['bwt'])} | "
                     f"{_pct(run['oracle']['average_accuracy'])} | {_pct(run['routed']['average_accuracy'])} | "
                     f"{_overlap(run)} | {learnt} |")
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="Run folders (or their report.json files).")
    parser.add_argument("--json", type=Path, default=None, help="Write {run name: report} here.")
    args = parser.parse_args(argv)
    if args.json:
        runs = {Path(f).name.removesuffix(".json"): _report(f) for f in args.folders}
        args.json.write_text(json.dumps(runs, indent=2) + "\n")
        text = runs_table(runs)
    else:
        text = table(args.folders)
    print(text)
    return text


if __name__ == "__main__":
    main()
