"""How far each quantization library's layers move MiniLM's output on this CPU: the measurement behind
docs/quantization.md's choice of bitsandbytes.

For each backend that is installed (bitsandbytes int8 and nf4, torchao int8 weight-only, optimum-quanto int8
and int4), loads MiniLM quantized through transformers and reports the relative error of its last hidden
state on one batch against full precision, and the seconds that batch took. A backend that is not installed
is reported as such.

    python examples/benchmarks/quantization_choice.py --json docs/benchmarks-data/quantization_choice.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, print_json  # noqa: E402

SENTENCES = ["a recipe with an apple and an oven", "the harbour master signals a storm",
             "stocks fell sharply after the report", "the team won the final in extra time"] * 4


def _configs():
    from transformers import BitsAndBytesConfig, QuantoConfig, TorchAoConfig

    def torchao_int8():
        from torchao.quantization import Int8WeightOnlyConfig

        return TorchAoConfig(Int8WeightOnlyConfig())
    return {"bitsandbytes int8": lambda: BitsAndBytesConfig(load_in_8bit=True),
            "bitsandbytes nf4": lambda: BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.float32),
            "torchao int8 weight-only": torchao_int8,
            "optimum-quanto int8": lambda: QuantoConfig(weights="int8"),
            "optimum-quanto int4": lambda: QuantoConfig(weights="int4")}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("transformers", "bitsandbytes", "torchao", "optimum-quanto"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def table(result: dict) -> str:
    """The markdown table docs/quantization.md shows."""
    lines = ["| backend | relative error of the last hidden state | seconds for the batch |", "|---|---|---|"]
    for name, row in result["backends"].items():
        if "error" in row:
            lines.append(f"| {name} | not run: {row['error']} | |")
        else:
            lines.append(f"| {name} | {100 * row['relative_error']:.1f}% | {row['batch_s']:.2f} |")
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v)
    return "\n".join(lines + ["", f"{result['inputs']} sentences, one batch, {result['machine']['threads']} threads; "
                                  f"{versions}."])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from transformers import AutoModel, AutoTokenizer

    from clora.families.loading import resolve_model_path

    path = resolve_model_path("all-MiniLM-L6-v2")
    batch = AutoTokenizer.from_pretrained(path)(SENTENCES, return_tensors="pt", padding=True)
    with torch.no_grad():
        reference = AutoModel.from_pretrained(path).eval()(**batch).last_hidden_state
    rows = {}
    for name, make in _configs().items():
        try:
            model = AutoModel.from_pretrained(path, quantization_config=make(), device_map="cpu").eval()
        except Exception as exc:  # noqa: BLE001 - a backend missing or refusing the CPU is a result here
            rows[name] = {"error": str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}
            continue
        with torch.no_grad():
            started = time.perf_counter()
            out = model(**batch).last_hidden_state
            seconds = time.perf_counter() - started
        rows[name] = {"relative_error": float((out - reference).norm() / reference.norm()), "batch_s": seconds}
        print(name, rows[name], file=sys.stderr)
    result = {"benchmark": "quantization_choice", "model": "all-MiniLM-L6-v2", "inputs": len(SENTENCES),
              "machine": machine(), "versions": _versions(), "backends": rows}
    print_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
