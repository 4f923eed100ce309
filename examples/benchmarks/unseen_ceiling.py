"""How well could any test on the router's features tell an unseen domain apart? A supervised ceiling.

The router must decide that an input belongs to none of its tasks having seen only those tasks
(a one-class decision). This study asks the easier question first: given examples of the unseen
domain too, how much of it can a linear classifier on the same features reject while it accepts
90% of the known tasks' fresh inputs? If even that is low, the features cannot tell the domains
apart and no unseen-input test on them can; if it is high, the gap is in the one-class modelling.

Same probe as ``unseen_domains.py`` (``clora.testing.real_tasks``: 12 seeded combinations of 3 known
tasks from the ten shared tasks, 60 training and 60 fresh inputs each, template prefixes removed).
Per combination and unseen domain: a logistic regression (standardised features, C=0.1, balanced)
trained on the known tasks' 180 training inputs against the unseen domain's 60 training inputs; its
threshold accepts 90% of the known tasks' fresh inputs; the share of the unseen domain's fresh inputs
it rejects. Features: the router's (layer 3 of MiniLM, 64 tokens) and the last layer's.

    python examples/benchmarks/unseen_ceiling.py --out docs/benchmarks-data/unseen_ceiling.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, print_json  # noqa: E402
from unseen_domains import DATA, embed  # noqa: E402

from clora.families.loading import load_base_model  # noqa: E402
from clora.testing.real_tasks import SHARED_TASKS, combinations, probe_tasks  # noqa: E402

ACCEPT = 0.90


def rejected(known_train, known_test, unseen_train, unseen_test) -> float:
    """Share of ``unseen_test`` a classifier fitted with the unseen domain's examples rejects, at a threshold
    that accepts ``ACCEPT`` of ``known_test``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([known_train, unseen_train])
    y = np.r_[np.zeros(len(known_train)), np.ones(len(unseen_train))]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced")).fit(x, y)
    threshold = np.quantile(clf.decision_function(known_test), ACCEPT)
    return float((clf.decision_function(unseen_test) > threshold).mean())


def ceiling(features: dict, combos, names) -> dict:
    rows = []
    for combo in combos:
        known = [np.concatenate([features[(t, split)].numpy() for t in combo]) for split in ("train", "test")]
        by_domain = {u: rejected(*known, features[(u, "train")].numpy(), features[(u, "test")].numpy())
                     for u in names if u not in combo}
        rows.append({"known": list(combo), "unseen_rejected": statistics.mean(by_domain.values()),
                     "by_domain": by_domain})
    return {"per_combination": rows, "mean": statistics.mean(r["unseen_rejected"] for r in rows),
            "worst": min(r["unseen_rejected"] for r in rows)}


def run(model: str, data: Path, count: int, seed: int) -> dict:
    names = list(SHARED_TASKS)
    combos = combinations(names, 3, count, seed)
    base = load_base_model(model, device="cpu")
    tasks = probe_tasks(data, prefixes=False, n_train=60, n_test=60, seed=seed)
    return {"model": model, "accept": ACCEPT, "seed": seed, "combinations": combos, "machine": machine(),
            "router_layer": ceiling(embed(base, tasks, None), combos, names),
            "last_layer": ceiling(embed(base, tasks, 6), combos, names)}


def table(result: dict) -> str:
    """docs/routing.md's table: the supervised ceiling beside the one-class router's measured fallback."""
    lines = ["| features | unseen rejected, mean over combinations | worst combination |", "|---|---|---|"]
    for key, label in (("router_layer", "router's (layer 3, 64 tokens)"), ("last_layer", "last layer")):
        lines.append(f"| {label} | {result[key]['mean']:.1%} | {result[key]['worst']:.1%} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--data-dir", type=Path, default=DATA)
    ap.add_argument("--combinations", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    result = run(args.model, args.data_dir, args.combinations, args.seed)
    print(table(result), file=sys.stderr)
    print_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
