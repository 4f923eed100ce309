"""A stream's last task read before its training, with each subset of the earlier adapters summed
(docs/results.md, "What seed 1's FWT measures").

Usage: python fwt_parts.py RUN/library [...]   (a library of `cl-benchmark-4`: agnews is its 4th task)

GEM's FWT entry for the last task is its score with every earlier adapter summed, minus the
base model's; the subsets split that entry into what each earlier adapter brings alone and
together.
"""
import itertools
import json
import sys

from clora.adapters import use_adapters
from clora.data.loaders import load_referenced_task
from clora.evaluation.evaluate import example_scores
from clora.serving.inference import load_library

for path in sys.argv[1:]:
    current = load_library(path).current
    family = current.lm.family
    manifest = json.loads(open(f"{path}/manifest.json").read())
    tasks = [load_referenced_task(e["data"]) for e in manifest["tasks"]]
    last, earlier = tasks[-1], range(len(tasks) - 1)
    print(path, flush=True)
    for k in range(len(tasks)):
        for subset in itertools.combinations(earlier, k):
            with use_adapters(list(subset)):
                scores = example_scores(family, last, family.config)
            named = ", ".join(tasks[i].name for i in subset) or "none (the base model)"
            print(f"  {last.name} with {named}: {100 * sum(scores) / len(scores):.1f}", flush=True)
