"""Mixed-adapter greedy generation against the same batch under one merged adapter.

A tiny Llama (hidden 256, 4 layers, random; ``_common.tiny_llama``) with a library of
``--tasks`` generation tasks (the ``demo-gen`` phrases, trained briefly with ``orth``)
answers a batch of ``--batch`` inputs, the same number from each task, shuffled.
Contenders, taking turns call by call, each generating ``--new-tokens`` tokens per input
greedily (EOS disabled, so that every contender does the same number of steps):

- ``mixed``: one ``generate`` call in which each input keeps its own task's snapshot at
  every step (``Family.generate_mixed`` with a per-input adapter mask);
- ``one_snapshot``: the same batch with every input in one task's snapshot (the
  adapters unmerged; a batch whose rows agree runs as that snapshot);
- ``merged``: one snapshot merged into the weights (``W + s B A``), the model then run
  with no adapter: the cost of a plain model, the floor for any adapter scheme.

Prints JSON: median ms per batch, tokens per second and the ratio of mixed throughput to
merged (the acceptance asks for at least 0.7).

    python examples/benchmarks/mixed_generation.py
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, machine, median_ms, parse_timing_args, print_json, timing_args, tiny_llama  # noqa: E402

from clora.adapters import no_adapters, use_adapters  # noqa: E402
from clora.adapters.lora import LoRALinear  # noqa: E402
from clora.data.synthetic import DOMAINS, synthetic_examples  # noqa: E402
from clora.serving.prediction import task_of  # noqa: E402
from clora.workflows.library_model import open_library_model  # noqa: E402
from mixed_inference import build_library  # noqa: E402


def merge_into_weights(lm, snapshot: list[int]) -> None:
    """Fold the snapshot's adapters into every LoRA layer's base weight (this model copy only)."""
    with torch.no_grad():
        for module in lm.base_model.model.modules():
            if isinstance(module, LoRALinear):
                merged = module.merged_weight(snapshot)
                module.base.weight.copy_(merged.T if module.transposed else merged)


def table(result: dict) -> str:
    """docs/benchmarks.md's table: median ms per batch and tokens per second of each contender."""
    ms, rate = result["median_ms"], result["tokens_per_s"]
    rows = (("mixed", f"mixed ({result['tasks']} adapter sets in one batch)"), ("one_snapshot", "one snapshot, unmerged"),
            ("merged", "merged into the weights"))
    return "\n".join(["| contender | ms per batch | tokens/s |", "|---|---|---|"]
                     + [f"| {label} | {ms[key]:.1f} | {rate[key]:.0f} |" for key, label in rows])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the model and library here and reuse them")
    timing_args(ap, repeats=10)
    args = parse_timing_args(ap, argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="clora-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    model = tiny_llama(root / "tiny-llama")
    library = root / "run" / "library"
    if not library.is_dir():
        library = build_library(root, str(model), args.tasks, generation=True)
    lm, plain = open_library_model(library, progress=False), open_library_model(library, progress=False)
    tasks = [dataclasses.replace(task_of(t), max_new_tokens=args.new_tokens) for t in lm.manifest.tasks]
    ids = [i % len(tasks) for i in range(args.batch)]
    random.Random(0).shuffle(ids)
    texts = [synthetic_examples("x", {"domain": list(DOMAINS)[i % 6], "n_train": 1, "n_test": 1})[1][0].text
             for i in ids]
    batch_tasks = [tasks[i] for i in ids]
    masks = torch.zeros(len(ids), len(lm.lora))
    for b, i in enumerate(ids):
        masks[b, lm.snapshot(tasks[i].name)] = 1.0
    snapshot = lm.snapshot(tasks[-1].name)
    merge_into_weights(plain, snapshot)
    prompts = [t.format_prompt(x) for t, x in zip(batch_tasks, texts)]
    for family in (lm.family, plain.family):  # no EOS: every contender generates exactly --new-tokens tokens
        family.tokenizer.eos_token = None
        family.model.generation_config.eos_token_id = None

    def one_snapshot():
        with use_adapters(snapshot):
            return lm.family.generate_tokens(prompts, args.new_tokens)

    def merged():
        with no_adapters():
            return plain.family.generate_tokens(prompts, args.new_tokens)

    fns = {"mixed": lambda: lm.family.generate_mixed([t for t in batch_tasks], texts, masks),
           "one_snapshot": one_snapshot, "merged": merged}
    with torch.no_grad():
        reference = one_snapshot()
        same = reference == merged()  # the merged copy answers as the snapshot does
        full = all(len(row) == args.new_tokens for row in reference)
        times = interleaved(fns, args.repeats, args.warmup)
    med = {n: median_ms(t) for n, t in times.items()}
    tokens = args.batch * args.new_tokens
    result = {"benchmark": "mixed_generation", "model": "tiny llama (hidden 256, 4 layers)", "tasks": len(tasks),
              "batch": args.batch, "new_tokens": args.new_tokens, "repeats": args.repeats, "machine": machine(),
              "median_ms": med, "tokens_per_s": {n: 1000 * tokens / m for n, m in med.items()},
              "mixed_throughput_over_merged": med["merged"] / med["mixed"],
              "mixed_throughput_over_one_snapshot": med["one_snapshot"] / med["mixed"],
              "merged_matches_snapshot": same, "every_answer_has_new_tokens": full}
    print_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
