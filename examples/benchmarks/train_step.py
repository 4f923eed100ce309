"""Training step time of clora ``orth`` and ``inc`` against PEFT's LoRA, side by side.

Same model, batch, rank, target modules and learning rate. At each position k of a
T-task stream clora trains adapter k with the k-1 earlier adapters frozen and active
(they are part of the cost), while PEFT trains its one adapter. A step is the whole
optimiser step: forward, loss, backward, update (clora: Riemannian Adam; PEFT: AdamW).
Two ablations show what clora's optimisations save: ``orth-unfolded`` applies the frozen
adapters as factors instead of folding them into the weight, and ``orth-dense-cayley``
takes geoopt's Cayley step with its dense ``(d, d)`` solve instead of the Woodbury form
(``clora.adapters.stiefel``). Prints JSON: median ms per step and ratios to PEFT per position.

    python examples/benchmarks/train_step.py --stream cl-benchmark-4 --data-dir ../shared/data/CL_Benchmark
    python examples/benchmarks/train_step.py --model tiny-llama
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import tempfile
from pathlib import Path

import geoopt
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, machine, median_ms, parse_timing_args, print_json, tiny_llama, timing_args  # noqa: E402

from clora.adapters import use_adapters  # noqa: E402
from clora.config import RunConfig  # noqa: E402
from clora.families import FAMILIES  # noqa: E402
from clora.families.loading import load_base_model  # noqa: E402
from clora.workflows.run import Session, prepare  # noqa: E402
from clora.training.loop import train_step  # noqa: E402
from clora.workflows.learn_task import close_task, open_task  # noqa: E402


def peft_step_fn(config: RunConfig, targets, task, batch):
    """A PEFT LoRA model of the same base and its AdamW step on ``batch``."""
    from peft import LoraConfig, get_peft_model

    base = load_base_model(config.model)
    model = get_peft_model(base.model, LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0,
                                                  target_modules=list(targets)))
    family = FAMILIES[base.kind](model.base_model.model, base.tokenizer, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)

    def step():
        optimizer.zero_grad(set_to_none=True)
        family.loss(task, batch).backward()
        optimizer.step()

    return step


def clora_step_fn(s: Session, k: int, task, batch, dense_cayley: bool = False):
    """Open task ``k`` in session ``s`` as every clora path does (``learn_task``'s first half); its training
    step on ``batch``."""
    selection = s.method.snapshot(k + 1)  # task k trains with snapshot k+1 selected
    params = open_task(s.family, s.method, s.lora, k, task, s.config, selection)
    if dense_cayley:
        for p in params:
            if isinstance(p, geoopt.ManifoldParameter):
                p.manifold = geoopt.CanonicalStiefel()  # geoopt's own step: a dense (d, d) solve
    optimizer = geoopt.optim.RiemannianAdam(s.method.param_groups(params, s.config.lr), lr=s.config.lr)
    step = functools.partial(train_step, s.family, task, batch, params, optimizer, lambda: s.method.penalty(s.lora))

    def run_step():
        with use_adapters(selection):
            return step()
    return run_step


def end_task(s: Session, k: int, task) -> None:
    """``learn_task``'s last half."""
    close_task(s.family, s.method, s.lora, k, task, s.config, s.method.snapshot(k + 1))


def table(result: dict) -> str:
    """The markdown table docs/benchmarks.md shows: median ms per contender and position, and the ratios to PEFT."""
    names = ["orth", "orth-unfolded", "orth-dense-cayley", "inc"]
    lines = ["| position (frozen adapters) | " + " | ".join(names) + " | PEFT | orth / PEFT | inc / PEFT | "
             "dense Cayley / PEFT |", "|---" * (len(names) + 5) + "|"]
    for row in result["positions"]:
        med, ratio = row["median_ms"], row["ratio_to_peft"]
        lines.append(f"| {row['position']} ({row['frozen_adapters']}) | "
                     + " | ".join(f"{med[n]:.0f}" for n in names) + f" | {med['peft']:.0f} | **{ratio['orth']:.3f}** | "
                     f"{ratio['inc']:.3f} | {ratio['orth-dense-cayley']:.3f} |")
    worst = result["max_ratio_to_peft"]
    lines += ["", f"Largest ratio to PEFT over the positions: orth **{worst['orth']:.3f}**, inc {worst['inc']:.3f} "
              f"({result['repeats']} steps per contender and position, {result['machine']['threads']} thread)."]
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="a model folder, the MiniLM default, or tiny-llama")
    ap.add_argument("--stream", default="demo")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--tasks", type=int, default=4, help="positions in the stream to measure")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16)
    timing_args(ap)
    args = parse_timing_args(ap, argv)
    model = args.model
    if model == "tiny-llama":
        model = str(tiny_llama(Path(tempfile.gettempdir()) / "clora-bench-tiny-llama"))
    base = RunConfig(stream=args.stream, data_dir=args.data_dir, model=model, rank=args.rank,
                     batch_size=args.batch_size, max_train=max(64, args.batch_size), max_test=8, progress=False,
                     device="cpu")
    sessions = {"orth": prepare(dataclasses.replace(base, method="orth")),
                "orth-unfolded": prepare(dataclasses.replace(base, method="orth")),
                "orth-dense-cayley": prepare(dataclasses.replace(base, method="orth")),
                "inc": prepare(base.for_method("inc", lr=base.lr))}
    for layer in sessions["orth-unfolded"].lora.layers.values():
        layer.merge_frozen = False
    tasks = sessions["orth"].tasks
    config = dataclasses.replace(base, lr=sessions["orth"].config.lr)
    rows = []
    for k in range(args.tasks):
        task = tasks[k % len(tasks)]
        batch = task.train[:args.batch_size]
        fns = {name: clora_step_fn(s, k, task, batch, dense_cayley=name == "orth-dense-cayley")
               for name, s in sessions.items()}
        fns["peft"] = peft_step_fn(config, sessions["orth"].targets, task, batch)
        times = interleaved(fns, args.repeats, args.warmup)
        med = {name: median_ms(t) for name, t in times.items()}
        rows.append({"position": k + 1, "frozen_adapters": k, "median_ms": med,
                     "ratio_to_peft": {n: med[n] / med["peft"] for n in med if n != "peft"}})
        print(f"position {k + 1}: " + ", ".join(f"{n} {v:.1f} ms" for n, v in med.items()), file=sys.stderr)
        for s in sessions.values():
            end_task(s, k, task)
    result = {"benchmark": "train_step", "model": args.model, "stream": args.stream, "rank": args.rank,
              "batch_size": args.batch_size, "targets": list(sessions["orth"].targets), "repeats": args.repeats,
              "machine": machine(), "positions": rows,
              "max_ratio_to_peft": {n: max(r["ratio_to_peft"][n] for r in rows) for n in rows[0]["ratio_to_peft"]}}
    print_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
