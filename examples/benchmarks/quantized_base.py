"""A quantized base (bitsandbytes int8, nf4) against full precision: memory, training step and inference time.

Memory: one child process per quantization loads the base and nothing else, and reports the bytes of
its linear layers' weights (with their quantization state), of all its weights, and the process's peak
resident memory. Time: one process holds the three bases, each with an ``orth`` session at the first task
of the stream, and times a training step (forward, loss, backward, Riemannian Adam) and the answers to a
batch of inputs, the three taking turns call by call (``_common.interleaved``); ratios are to full precision.

    python examples/benchmarks/quantized_base.py --stream cl-benchmark-4 --data-dir ../shared/data/CL_Benchmark \
        --json docs/benchmarks-data/quantized_base.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, machine, median_ms, parse_timing_args, print_json, timing_args  # noqa: E402
from train_step import clora_step_fn  # noqa: E402

from clora.config import RunConfig  # noqa: E402
from clora.families.loading import load_base_model  # noqa: E402
from clora.families.quantization import linear_weight_bytes  # noqa: E402
from clora.workflows.run import prepare  # noqa: E402

QUANTIZATIONS = ("none", "int8", "nf4")


def memory_child(model: str, quantize: str) -> dict:
    """Run in a fresh process: load the base, report its weight bytes and this process's peak memory, and
    the peak before the load (the libraries imported: transformers, and bitsandbytes when quantized)."""
    import transformers  # noqa: F401

    if quantize != "none":
        import bitsandbytes  # noqa: F401
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    base = load_base_model(model, quantize=quantize)
    state = base.model.state_dict()
    return {"linear_weight_bytes": linear_weight_bytes(base.model),
            "all_weight_bytes": sum(t.numel() * t.element_size() for t in state.values()),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "rss_before_load_bytes": before}


def memory(model: str) -> dict:
    """``{quantization: memory_child's dict}``, each measured in its own process; the three run at once (a
    process's peak memory is its own, so they need not wait for each other)."""
    children = {}
    for q in QUANTIZATIONS:
        code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
                f"from quantized_base import memory_child; print(json.dumps(memory_child({model!r}, {q!r})))")
        children[q] = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
    out = {}
    for q, child in children.items():
        stdout, stderr = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"measuring {q} failed: {stderr.strip().splitlines()[-1:]}")
        out[q] = json.loads(stdout.strip().splitlines()[-1])
    return out


def timings(config: RunConfig, repeats: int, warmup: int, batch_size: int, eval_batch: int) -> dict:
    """Median ms of a training step and of answering ``eval_batch`` inputs, per quantization."""
    sessions = {q: prepare(dataclasses.replace(config, quantize=q)) for q in QUANTIZATIONS}
    task = sessions["none"].tasks[0]
    batch, texts = task.train[:batch_size], [e.text for e in task.test[:eval_batch]]
    steps = {q: clora_step_fn(s, 0, task, batch) for q, s in sessions.items()}

    def answer(s):
        with torch.no_grad():
            return s.family.answer(task, texts, probability=False)
    answers = {q: (lambda s=s: answer(s)) for q, s in sessions.items()}
    train = {q: median_ms(t) for q, t in interleaved(steps, repeats, warmup).items()}
    infer = {q: median_ms(t) for q, t in interleaved(answers, max(3, repeats // 2), 1).items()}
    return {"train_step_ms": train, "inference_ms": infer,
            "train_step_ratio": {q: train[q] / train["none"] for q in QUANTIZATIONS},
            "inference_ratio": {q: infer[q] / infer["none"] for q in QUANTIZATIONS}}


def table(result: dict) -> str:
    """The markdown table docs/quantization.md shows."""
    mem, t = result["memory"], result["time"]
    full = mem["none"]["linear_weight_bytes"]
    lines = ["| base | linear weights (MB) | vs fp32 | all weights (MB) | peak memory (MB) | of it, loading (MB) "
             "| training step (ms) | vs fp32 | answering a batch (ms) | vs fp32 |", "|---" * 10 + "|"]
    for q in QUANTIZATIONS:
        m = mem[q]
        lines.append(f"| {q} | {m['linear_weight_bytes'] / 1e6:.1f} | {m['linear_weight_bytes'] / full:.2f}x "
                     f"| {m['all_weight_bytes'] / 1e6:.1f} | {m['peak_rss_bytes'] / 1e6:.0f} "
                     f"| {(m['peak_rss_bytes'] - m['rss_before_load_bytes']) / 1e6:.0f} "
                     f"| {t['train_step_ms'][q]:.0f} | {t['train_step_ratio'][q]:.2f}x "
                     f"| {t['inference_ms'][q]:.0f} | {t['inference_ratio'][q]:.2f}x |")
    lines += ["", f"Batch {result['batch_size']} for a training step, {result['eval_batch']} inputs answered; "
              f"{result['repeats']} steps each, medians; {result['machine']['threads']} threads, "
              f"{result['machine'].get('gpu', 'CPU')}."]
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--stream", default="demo")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--eval-batch", type=int, default=64)
    timing_args(ap, repeats=10)
    args = parse_timing_args(ap, argv)
    config = RunConfig(stream=args.stream, data_dir=args.data_dir, model=args.model, method="orth",
                       max_train=max(64, args.batch_size), max_test=args.eval_batch, progress=False, device="cpu")
    result = {"benchmark": "quantized_base", "model": args.model, "stream": args.stream, "batch_size": args.batch_size,
              "eval_batch": args.eval_batch, "repeats": args.repeats, "machine": machine(),
              "memory": memory(args.model),
              "time": timings(config, args.repeats, args.warmup, args.batch_size, args.eval_batch)}
    print(table(result), file=sys.stderr)
    print_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
