"""Continual quality on a quantized base: collect run folders named ``<method>-<quantization>`` into one JSON.

    D=../shared/data/CL_Benchmark
    for m in orth inc; do for q in none int8 nf4; do
      clora run cl-benchmark-4 --data-dir $D --max-train 1000 --max-test 500 --seed 0 --method $m --quantize $q \\
        --out runs/q/$m-$q
    done; done
    python examples/benchmarks/quantized_cl4.py runs/q/* --json docs/benchmarks-data/quantized_cl4.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_json  # noqa: E402

MODES = ("sum", "oracle", "routed")


def collect(folders) -> dict:
    """``{"runs": [{method, quantize, train_s, overlap, <mode>_aa, <mode>_bwt}]}`` from the runs' report.json."""
    runs = []
    for folder in folders:
        report = json.loads((Path(folder) / "report.json").read_text())
        row = {"run": Path(folder).name, "method": report["method"], "quantize": Path(folder).name.rsplit("-", 1)[1],
               "train_s": report["timing"]["train_s"], "overlap": report["overlap"], "settings": report["settings"]}
        for mode in MODES:
            row[f"{mode}_aa"] = report["modes"][mode]["average_accuracy"]
            row[f"{mode}_bwt"] = report["modes"][mode]["bwt"]
        runs.append(row)
    return {"benchmark": "quantized_cl4", "stream": "cl-benchmark-4", "runs": runs}


def _full_precision(result: dict) -> dict:
    """``{method: run}`` of the full-precision runs."""
    return {r["method"]: r for r in result["runs"] if r["quantize"] == "none"}


def table(result: dict) -> str:
    """Each run beside its method's full-precision run: AA and BWT per mode, the differences to full precision."""
    full = _full_precision(result)
    lines = ["| method | base | sum AA | vs none | sum BWT | vs none | oracle AA | routed AA | vs none | overlap |",
             "|---" * 10 + "|"]
    for r in sorted(result["runs"], key=lambda r: (r["method"] != "orth", r["method"],
                                                   ("none", "int8", "nf4").index(r["quantize"]))):
        ref = full.get(r["method"])

        def diff(key):
            return "" if ref is None or r is ref else f"{100 * (r[key] - ref[key]):+.1f}"
        overlap = "n/a" if r["overlap"] is None else f"{r['overlap']:.1e}"
        lines.append(f"| {r['method']} | {r['quantize']} | {100 * r['sum_aa']:.1f} | {diff('sum_aa')} | "
                     f"{100 * r['sum_bwt']:+.1f} | {diff('sum_bwt')} | {100 * r['oracle_aa']:.1f} | "
                     f"{100 * r['routed_aa']:.1f} | {diff('routed_aa')} | {overlap} |")
    return "\n".join(lines)


def full_precision_table(result: dict) -> str:
    """The full-precision runs alone (docs/results.md): per method, AA and BWT of each mode and the overlap."""
    lines = ["| method | sum AA | sum BWT | oracle AA | routed AA | routed BWT | overlap |", "|---" * 7 + "|"]
    for r in _full_precision(result).values():
        overlap = "n/a" if r["overlap"] is None else f"{r['overlap']:.1e}"
        lines.append(f"| {r['method']} | {100 * r['sum_aa']:.2f} | {100 * r['sum_bwt']:+.2f} | {100 * r['oracle_aa']:.2f} | "
                     f"{100 * r['routed_aa']:.2f} | {100 * r['routed_bwt']:+.2f} | {overlap} |")
    return "\n".join(lines)


def readme_sentence(result: dict) -> str:
    """The README's one line on cl-benchmark-4: orth against inc at full precision."""
    full = _full_precision(result)
    orth, inc = full["orth"], full["inc"]
    return (f"On `cl-benchmark-4` (seed 0, 1000 training and 500 test examples per task), `orth` ends at "
            f"{100 * orth['sum_aa']:.2f}% in sum mode (every adapter at once, no task id) with BWT "
            f"{100 * orth['sum_bwt']:+.2f}, against {100 * inc['sum_aa']:.2f}% and BWT {100 * inc['sum_bwt']:+.2f} "
            f"for `inc` (a new adapter per task, not kept orthogonal).")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    result = collect(args.folders)
    print(table(result), file=sys.stderr)
    print_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
