"""What an int8 base does to the adapters' gradients: the measurement behind clora's weight-only int8 layer.

Loads cl-benchmark-4's MiniLM base four ways (full precision; int8 through bitsandbytes' own LLM.int8 matmul,
which also rounds the activations; int8 applied weight-only, as clora does; nf4), opens an orth adapter on
the second task with its factors set to small random values, and back-propagates one batch. Reported per
base: the relative error of the adapters' gradient against full precision.

    python examples/benchmarks/int8_gradients.py --data-dir ../shared/data/CL_Benchmark \\
        --json docs/benchmarks-data/int8_gradients.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, print_json  # noqa: E402

BASES = {"full precision": "none", "int8, LLM.int8 matmul (bitsandbytes)": "int8",
         "int8, weight-only (clora)": "int8", "nf4 (bitsandbytes, weight-only)": "nf4"}


def _gradients(data_dir: str, quantize: str, examples: int, keep_llm_int8: bool):
    """``(task name, the adapters' gradient (flat))`` for one batch of the stream's second task."""
    from clora.adapters import use_adapters
    from clora.config import RunConfig
    from clora.workflows.run import prepare

    config = RunConfig(stream="cl-benchmark-4", data_dir=data_dir, max_train=examples, max_test=8, quantize=quantize,
                       progress=False, seed=0)
    swap = mock.patch("clora.families.loading.to_weight_only", lambda model: 0) if keep_llm_int8 else mock.MagicMock()
    with swap:
        s = prepare(config)
    task = s.tasks[1]
    params = s.method.begin_task(s.lora, 0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # B starts at zero, where the frame gets no gradient: give both factors a value
        for p in params:
            if p.dim() == 2 and p.abs().sum() == 0:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.01)
    with use_adapters([0]):
        s.family.loss(task, task.train[:examples]).backward()
    return task.name, torch.cat([p.grad.flatten() for p in params])


def table(result: dict) -> str:
    """The markdown table docs/quantization.md shows."""
    lines = ["| base | adapters' gradient, relative error |", "|---|---|"]
    lines += [f"| {name} | {100 * err:.1f}% |" for name, err in result["gradient_error"].items()]
    return "\n".join(lines + ["", f"{result['examples']} training examples of {result['task']}, one batch; orth "
                                  f"adapter factors at 0.01; {result['machine']['threads']} threads."])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    measured = {name: _gradients(args.data_dir, q, args.examples, keep_llm_int8="LLM.int8" in name)
                for name, q in BASES.items()}
    task, reference = measured.pop("full precision")
    grads = {name: g for name, (_, g) in measured.items()}
    result = {"benchmark": "int8_gradients", "task": f"cl-benchmark-4's {task}", "examples": args.examples,
              "machine": machine(),
              "gradient_error": {name: float((g - reference).norm() / reference.norm()) for name, g in grads.items()}}
    print(table(result))
    print_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
