"""Mixed-batch inference: clora against PEFT's ``adapter_names=`` and one merged adapter.

A library of 8 tasks (a synthetic stream trained briefly with ``orth``; the adapters'
values do not change the cost) answers a batch of 64 inputs, 8 of each task, shuffled.
Contenders, each doing the whole job (prompts, tokenizing, forward, pooling, label
scores, argmax), taking turns call by call:

- ``clora_given``: ``load_library(...).predict(texts, mode="oracle", task=ids)``: the
  task of each input is given; each runs in its task's snapshot, in one forward pass;
- ``clora_routed``: ``predict(texts)``: the router picks each input's task (routing included);
- ``peft_adapter_names``: every task's snapshot exported with ``clora library export``,
  loaded into one ``PeftModel`` and called with ``adapter_names=ids``;
- ``merged``: one snapshot merged into the weights (PEFT ``merge_and_unload``): the cost
  of a plain model, the floor for any adapter scheme.

Prints JSON with median ms per batch and the ratios the acceptance asks for.

    python examples/benchmarks/mixed_inference.py
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, machine, median_ms, parse_timing_args, print_json, timing_args  # noqa: E402

from clora.config import RunConfig  # noqa: E402
from clora.data.loaders import load_referenced_task  # noqa: E402
from clora.serving.inference import load_library  # noqa: E402
from clora.library.layout import load_manifest  # noqa: E402
from clora.library.peft_io import export_peft  # noqa: E402
from clora.families.loading import load_base_model  # noqa: E402
from clora.workflows.run import run_stream  # noqa: E402
from clora.data.synthetic import DOMAINS  # noqa: E402


def build_library(root: Path, model: str, n_tasks: int, rank: int = 8, generation: bool = False) -> Path:
    """Train a short ``n_tasks`` synthetic stream with orth; returns its library folder.

    The subspace holds the adapters' own directions only, so that tiny test models
    have room for 8 tasks; the cost of answering does not depend on it. ``generation``:
    the tasks answer in two-word phrases (``answer: phrase``) instead of a colour.
    """
    domains = list(DOMAINS)
    kind, answer = (", kind: generation", ", answer: phrase") if generation else ("", "")
    stream = root / "stream.yaml"
    stream.write_text("name: mixed\ntasks:\n" + "".join(
        f"  - {{name: task{i}, format: synthetic{kind}, instruction: 'Which colour does this note signal?', "
        f"options: {{domain: {domains[i % len(domains)]}, shift: {i}{answer}, n_train: 32, n_test: 16}}}}\n"
        for i in range(n_tasks)))
    run_stream(RunConfig(stream=str(stream), out=root / "run", model=model, epochs=1, rank=rank, settings={"subspace": "adapters"},
                         progress=False, device="cpu"))
    return root / "run" / "library"


class PlainPipeline:
    """clora's encoder scoring (prompt, mean pool, cosine to base-model label anchors) on any HF model."""

    def __init__(self, model, tokenizer, tasks: dict, max_length: int, temperature: float, anchors: dict):
        self.model, self.tokenizer, self.tasks = model, tokenizer, tasks
        self.max_length, self.temperature, self.anchors = max_length, temperature, anchors

    @torch.no_grad()
    def embed(self, texts, **kwargs) -> torch.Tensor:
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        hidden = self.model(**batch, **kwargs).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return F.normalize(((hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)).float(), dim=-1)

    def predict(self, texts, ids, **kwargs) -> list[str]:
        prompts = [self.tasks[t].format_prompt(x) for t, x in zip(ids, texts)]
        embedded = self.embed(prompts, **kwargs)
        return [self.tasks[t].labels[int((e @ self.anchors[t].T).argmax())] for t, e in zip(ids, embedded)]


def peft_models(library: Path, root: Path, tasks: list[str]):
    """``(model with every snapshot as a named adapter, plain model with the last snapshot merged)``."""
    from peft import PeftModel

    manifest = load_manifest(library)
    peft_root = Path(tempfile.mkdtemp(prefix="peft-", dir=root))
    folders = {t: export_peft(library, manifest, t, peft_root / t) for t in tasks}
    multi = PeftModel.from_pretrained(load_base_model(manifest.base_model).model, str(folders[tasks[0]]),
                                      adapter_name=tasks[0])
    for t in tasks[1:]:
        multi.load_adapter(str(folders[t]), adapter_name=t)
    merged = PeftModel.from_pretrained(load_base_model(manifest.base_model).model, str(folders[tasks[-1]]))
    return multi.eval(), merged.merge_and_unload().eval()


def mixed_inputs(manifest, batch: int) -> tuple[list[str], list[str]]:
    """``batch // tasks`` test inputs of each task (a typed ``Manifest``), shuffled (seed 0), and their task names."""
    texts, ids = [], []
    per_task = batch // len(manifest.tasks)
    for entry in manifest.tasks:
        test = load_referenced_task(dict(entry.data)).test[:per_task]
        texts += [e.text for e in test]
        ids += [entry.name] * len(test)
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    return [texts[i] for i in order], [ids[i] for i in order]


def table(result: dict) -> str:
    """The markdown table and ratios docs/benchmarks.md shows."""
    med = result["median_ms"]
    rows = [("clora, task ids given (`predict(texts, mode=\"oracle\", task=ids)`)", "clora_given"),
            ("clora, the router decides (`predict(texts)`, routing included)", "clora_routed"),
            ("PEFT, the exported snapshots as named adapters, `adapter_names=ids`", "peft_adapter_names"),
            ("one snapshot merged into the weights (PEFT `merge_and_unload`)", "merged")]
    lines = ["| contender | median ms per batch |", "|---|---|"]
    lines += [f"| {label} | {med[key]:.0f} |" for label, key in rows]
    agree = result["clora_peft_prediction_agreement"]
    lines += ["", f"- given ids / PEFT `adapter_names=`: **{result['given_over_peft']:.3f}**;",
              f"- given ids / one merged adapter: **{result['given_over_merged']:.3f}**;",
              f"- router deciding / given ids: **{result['routed_over_given']:.3f}**;",
              f"- PEFT's `adapter_names=` / merged: {result['peft_over_merged']:.3f};",
              f"- clora and PEFT give the same answer for {agree:.0%} of the {result['batch']} inputs "
              f"({result['tasks']} tasks, {result['repeats']} calls per contender, "
              f"{result['machine']['threads']} thread)."]
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--library", type=Path, default=None, help="an existing library (default: train 8 tasks)")
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the trained library here and reuse it")
    timing_args(ap)
    args = parse_timing_args(ap, argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="clora-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    built = root / "run" / "library"
    library = args.library or (built if built.is_dir() else build_library(root, args.model, args.tasks, args.rank))
    lib = load_library(library)
    version = lib.current
    names = list(version.tasks)
    texts, ids = mixed_inputs(version.lm.manifest, args.batch)
    family, config = version.lm.family, version.lm.config
    anchors = {t: family.label_anchors(version.tasks[t]) for t in names}
    multi, merged = peft_models(library, root, names)
    plain = {m: PlainPipeline(model, family.tokenizer, version.tasks, config.max_length, config.temperature, anchors)
             for m, model in (("multi", multi), ("merged", merged))}
    fns = {"clora_given": lambda: lib.predict(texts, mode="oracle", task=ids),
           "clora_routed": lambda: lib.predict(texts),
           "peft_adapter_names": lambda: plain["multi"].predict(texts, ids, adapter_names=ids),
           "merged": lambda: plain["merged"].predict(texts, ids)}
    given = [r["prediction"] for r in fns["clora_given"]()]
    agree = sum(a == b for a, b in zip(given, fns["peft_adapter_names"]())) / len(given)
    times = interleaved(fns, args.repeats, args.warmup)
    med = {n: median_ms(t) for n, t in times.items()}
    result = {"benchmark": "mixed_inference", "model": args.model, "tasks": len(names), "batch": len(texts),
              "repeats": args.repeats, "machine": machine(), "median_ms": med,
              "given_over_peft": med["clora_given"] / med["peft_adapter_names"],
              "given_over_merged": med["clora_given"] / med["merged"],
              "routed_over_given": med["clora_routed"] / med["clora_given"],
              "peft_over_merged": med["peft_adapter_names"] / med["merged"],
              "clora_peft_prediction_agreement": agree}
    print_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
