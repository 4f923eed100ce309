"""Print a Markdown table of the metrics in one or more run folders (their report.json).

    python examples/benchmarks/summarize_runs.py runs/cl4-seq runs/cl4-inc runs/cl4-orth
"""

import argparse
import json
from pathlib import Path


def _pct(x):
    return "n/a" if x is None else f"{100 * x:.1f}"


def table(folders) -> str:
    lines = ["| run | method | mode | AA | BWT | forgetting | FWT | overlap | train s | eval s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for folder in folders:
        report = json.loads((Path(folder) / "report.json").read_text())
        overlap = "n/a" if report["overlap"] is None else f"{report['overlap']:.1e}"
        for mode, b in report["modes"].items():
            lines.append(f"| {Path(folder).name} | {report['method']} | {mode} | {_pct(b['average_accuracy'])} | "
                         f"{_pct(b['bwt'])} | {_pct(b['forgetting'])} | {_pct(b['fwt'])} | {overlap} | "
                         f"{report['timing']['train_s']:.0f} | {report['timing']['eval_s']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    text = table(parser.parse_args(argv).folders)
    print(text)
    return text


if __name__ == "__main__":
    main()
