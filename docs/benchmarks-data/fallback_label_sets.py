"""Which label set should a fallback input be answered in? (docs/results.md, "Six methods over three seeds").

Usage: python fallback_label_sets.py RUN/library

For each task's test inputs (re-read from the library's data references), the inputs the
router falls back on are answered with every adapter (sum mode) in three ways: in the
label set of the router's best guess (what clora does), over the label sets of its two
likeliest tasks, and over every task's label set, each time taking the highest score.
Prints per task: fallback count, how many of the guesses were right, and how many
answers each way gets right.
"""

import json
import sys

import torch

from clora.data.loaders import load_referenced_task
from clora.routing.lda import squared_distances
from clora.serving.inference import load_library


def best_labels(family, tasks, texts, n_adapters):
    """Per task name: for each text, (highest score, its label) with every adapter on."""
    ones = torch.ones(len(texts), n_adapters)
    out = {}
    with torch.no_grad():
        for name, task in tasks.items():
            scores = family.mixed_option_scores([task] * len(texts), texts, ones)
            out[name] = [(float(s.max()), task.labels[int(s.argmax())]) for s in scores]
    return out


def main(path: str) -> None:
    current = load_library(path).current
    family, router = current.lm.family, current.router
    manifest = json.loads(open(f"{path}/manifest.json", encoding="utf-8").read())
    for entry in manifest["tasks"]:
        task = load_referenced_task(entry["data"])
        texts = [e.text for e in task.test]
        routes = router.route(texts, family.router_features)
        fallback = [i for i, r in enumerate(routes) if r.source == "fallback"]
        if not fallback:
            continue
        inputs, gold = [texts[i] for i in fallback], [task.test[i].target for i in fallback]
        guesses = [routes[i].guess for i in fallback]
        d2 = squared_distances(family.router_features(inputs).double(), router.means.double(),
                               router.precision.double())
        top2 = [[router.learned_names[int(k)] for k in row[:2]] for row in d2.argsort(dim=1)]
        best = best_labels(family, current.tasks, inputs, len(current.lm.lora))
        right = {"guess": sum(best[g][j][1] == gold[j] for j, g in enumerate(guesses)),
                 "top2": sum(max(best[n][j] for n in top2[j])[1] == gold[j] for j in range(len(inputs))),
                 "all": sum(max(best[n][j] for n in best)[1] == gold[j] for j in range(len(inputs)))}
        print(task.name, "fallback", len(inputs), "guess right", sum(g == task.name for g in guesses),
              "answers right:", right, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
