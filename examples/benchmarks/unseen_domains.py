"""Unseen domains on real text: does the router let inputs of tasks it never learnt fall back?

Twelve seeded combinations of 3 known tasks from the ten shared tasks (``clora.testing.real_tasks``:
60 training examples each, 60 fresh test inputs, template prefixes removed or kept); each
combination's unseen domains are the 7 shared tasks not in it, 60 inputs each. Per router and
combination: the share of known inputs routed to their own task, to a wrong task, and the share
of unseen inputs that fall back. Routers, all fitted on the same 60 examples per task:

- ``clora``: the library's learned trigger as a run builds it (LDA statistics of the base model's
  features half way up, each task calibrated on held-out folds: ``clora.routing``), threshold
  0.8 and margin 1.1, the defaults;
- ``centroid``: the nearest task centroid of the base model's sentence embedding (MiniLM's
  mean-pooled, normalised last layer), an input falling back below its task's 5th percentile
  of held-out cosines (5 folds);
- ``knn``: the task of the nearest stored training embedding (it stores every training
  embedding), falling back below its task's 5th percentile of held-out nearest cosines.

PEFT's Arrow needs trained adapters and never falls back (docs/routing.md): not run here.
Writes JSON (``--out``); ``table()`` renders docs/routing.md's table from it.

    python examples/benchmarks/unseen_domains.py --out docs/benchmarks-data/unseen_domains.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, print_json  # noqa: E402

from clora.config import RunConfig  # noqa: E402
from clora.families import FAMILIES  # noqa: E402
from clora.families.loading import load_base_model  # noqa: E402
from clora.routing.calibration import calibrate_all  # noqa: E402
from clora.routing.router import Router  # noqa: E402
from clora.testing.real_tasks import SHARED_TASKS, combinations, probe_tasks  # noqa: E402

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "CL_Benchmark"
FOLDS = 5


def embed(base, tasks: dict, layer: int | None) -> dict:
    """``{(task, split): (n, d)}`` features of the loaded ``base`` model after ``layer`` (``None``: the router's
    default, half way up)."""
    family = FAMILIES[base.kind](base.model, base.tokenizer, RunConfig(stream="x", router_layer=layer))
    return {(name, split): family.router_features([e.text for e in getattr(task, split)]).double()
            for name, task in tasks.items() for split in ("train", "test")}


def clora_router(train: list[torch.Tensor], names: list[str]):
    router = Router(names, calibrate_all(train, 0.1), [None] * len(names))
    return lambda x: [route.task for route in router.learned(x)]


def _cosine_router(train: list[torch.Tensor], names: list[str], score):
    """A router that takes the best ``score(x, task_train)`` and falls back below its task's 5th percentile of
    held-out scores (each fold scored against the task's other folds)."""
    floors = []
    for x in train:
        held = [score(x[k::FOLDS], torch.cat([x[j::FOLDS] for j in range(FOLDS) if j != k])) for k in range(FOLDS)]
        floors.append(torch.quantile(torch.cat(held), 0.05))

    def route(x):
        scores = torch.stack([score(x, t) for t in train], dim=1)  # (n, T)
        best = scores.argmax(1)
        return [names[b] if s >= floors[b] else None for b, s in zip(best.tolist(), scores.max(1).values.tolist())]
    return route


def centroid_score(x: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=1) @ F.normalize(train.mean(0), dim=0)


def knn_score(x: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    return (F.normalize(x, dim=1) @ F.normalize(train, dim=1).T).max(1).values


ROUTERS = {"clora": ("router", clora_router),
           "centroid": ("embedding", lambda t, n: _cosine_router(t, n, centroid_score)),
           "knn": ("embedding", lambda t, n: _cosine_router(t, n, knn_score))}


def measure(features: dict, combo: tuple, names: list[str], make) -> dict:
    """Own / wrong / unseen-fallback shares of one router on one combination."""
    route = make([features[(t, "train")] for t in combo], list(combo))
    own = wrong = total = 0
    for t in combo:
        routed = route(features[(t, "test")])
        own += sum(r == t for r in routed)
        wrong += sum(r not in (None, t) for r in routed)
        total += len(routed)
    unseen = {u: statistics.mean(r is None for r in route(features[(u, "test")])) for u in names if u not in combo}
    return {"own": own / total, "wrong": wrong / total, "unseen_fallback": statistics.mean(unseen.values()),
            "unseen_by_domain": unseen}


def run(model: str, data: Path, n_train: int, n_test: int, count: int, seed: int) -> dict:
    names = list(SHARED_TASKS)
    combos = combinations(names, 3, count, seed)
    result = {"model": model, "n_train": n_train, "n_test": n_test, "seed": seed, "combinations": combos,
              "machine": machine()}
    base = load_base_model(model, device="cpu")
    for prefixes in (False, True):
        tasks = probe_tasks(data, prefixes=prefixes, n_train=n_train, n_test=n_test, seed=seed)
        spaces = {"router": embed(base, tasks, None), "embedding": embed(base, tasks, 6)}
        block = {}
        for router, (space, make) in ROUTERS.items():
            rows = [measure(spaces[space], combo, names, make) for combo in combos]
            block[router] = {"per_combination": rows, **{k: statistics.mean(r[k] for r in rows)
                                                         for k in ("own", "wrong", "unseen_fallback")},
                             "worst_unseen_fallback": min(r["unseen_fallback"] for r in rows)}
        result["prefixes_kept" if prefixes else "prefixes_removed"] = block
    return result


def table(result: dict) -> str:
    """docs/routing.md's table: mean shares over the combinations, per router, prefixes removed and kept."""
    lines = ["| text | router | own task | wrong task | unseen falls back (mean) | worst combination |",
             "|---|---|---|---|---|---|"]
    for key, label in (("prefixes_removed", "prefixes removed"), ("prefixes_kept", "prefixes kept")):
        for router, row in result[key].items():
            lines.append(f"| {label} | {router} | {row['own']:.1%} | {row['wrong']:.1%} | "
                         f"{row['unseen_fallback']:.1%} | {row['worst_unseen_fallback']:.1%} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--data-dir", type=Path, default=DATA)
    ap.add_argument("--n-train", type=int, default=60)
    ap.add_argument("--n-test", type=int, default=60)
    ap.add_argument("--combinations", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.data_dir.is_dir():
        sys.exit(f"the shared tasks are not at {args.data_dir} (--data-dir)")
    result = run(args.model, args.data_dir, args.n_train, args.n_test, args.combinations, args.seed)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print_json({key: {router: {k: round(row[k], 4) for k in ("own", "wrong", "unseen_fallback", "worst_unseen_fallback")}
                      for router, row in result[key].items()} for key in ("prefixes_removed", "prefixes_kept")})
    print(table(result))
    return result


if __name__ == "__main__":
    main()
