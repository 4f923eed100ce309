"""A second read for the inputs the router falls back on: how many would get their task's label set
(docs/results.md, "What the router reads, against the routed gap").

Usage: python router_two_stage.py SEED LAYERS:TOKENS [...]   e.g. 0 1:2:3:4:5:6:128 2:4:128 3:128
(needs ../shared/data/CL_Benchmark and MiniLM; no training: the router reads the bare base model).

Stage 1 is the router as `clora run` builds it after the last task of `cl-benchmark-4` (1000 train /
500 test per task, sampled with SEED; default read, held-out calibration, default threshold and
margin). Stage 2 re-guesses only the inputs stage 1 falls back on, by the LDA argmax over a richer
read (the unit-norm mean of each listed layer's hidden states over the first TOKENS tokens,
concatenated). Counted: wrong guesses, and those in another label set (their answer cannot be
right; amazon and yelp share theirs).
"""
import sys

import torch

from clora.config import RunConfig
from clora.routing.calibration import calibrate_all
from clora.routing.lda import TaskStats, shared_precision, squared_distances
from clora.routing.router import Router, RouterConfig
from clora.workflows.run import prepare
from layer_read import layer_read  # this folder's helper


def main(seed, reads):
    cfg = RunConfig(stream="cl-benchmark-4", data_dir="../shared/data/CL_Benchmark", max_train=1000, max_test=500,
                    seed=seed, progress=False)
    s = prepare(cfg)
    family, tasks = s.family, s.tasks
    with torch.no_grad():
        train = [family.router_features([e.text for e in t.train]) for t in tasks]
        test = torch.cat([family.router_features([e.text for e in t.test]) for t in tasks])
    router = Router([t.name for t in tasks], calibrate_all(train, 0.1), [t.triggers for t in tasks], RouterConfig())
    names, label_set = [t.name for t in tasks], {t.name: tuple(t.labels) for t in tasks}
    truth = [t.name for t in tasks for _ in t.test]
    routes = router.learned(test)
    fallback = [k for k, r in enumerate(routes) if r.task is None]
    misrouted = [k for k, r in enumerate(routes) if r.task is not None and r.task != truth[k]]

    def count(guesses, inputs):
        wrong = [k for k in inputs if guesses[k] != truth[k]]
        return len(wrong), sum(label_set[guesses[k]] != label_set[truth[k]] for k in wrong)

    print(f"seed {seed}: falls back {len(fallback)}, misrouted {len(misrouted)} (another label set "
          f"{count([r.task for r in routes], misrouted)[1]}); fallback guesses wrong / another label set "
          f"{count([r.guess for r in routes], fallback)}", flush=True)
    for spec in reads:
        layers, tokens = spec[:-1], spec[-1]
        features = layer_read(family, layers, tokens, batch=64)
        stats = [TaskStats.of(features([e.text for e in t.train])) for t in tasks]
        x = torch.cat([features([e.text for e in t.test]) for t in tasks])
        best = squared_distances(x, torch.stack([q.mean for q in stats]), shared_precision(stats, 0.1)).argmin(1)
        guesses = [names[b] for b in best.tolist()]
        print(f"  layers {layers}, {tokens} tokens: on the fallbacks wrong / another label set "
              f"{count(guesses, fallback)}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), [tuple(int(x) for x in v.split(":")) for v in sys.argv[2:]])
