"""How well the learned trigger routes a stream's tasks, and how often it falls back on an unseen task.

Routing depends only on the frozen base model's features, so this needs no training:
it fits the LDA statistics on each task's training inputs and routes the test inputs.
For each held-out task it also fits on the other tasks and counts how often the held-out
task's inputs fall back, over a grid of thresholds and margins. Prints JSON.

    python examples/benchmarks/routing_study.py cl-benchmark-4 --data-dir ../shared/data/CL_Benchmark \
        --max-train 1000 --max-test 500
"""

import argparse
import json
from pathlib import Path

import torch

from clora.config import RunConfig
from clora.families import FAMILIES
from clora.data.loaders import load_tasks
from clora.families.loading import load_base_model
from clora.routing.lda import TaskStats
from clora.routing.router import Router, RouterConfig
from clora.data.stream import load_stream


def features(args):
    config = RunConfig(stream=args.stream, model=args.model, data_dir=args.data_dir, max_train=args.max_train,
                       max_test=args.max_test, seed=args.seed, progress=False)
    tasks = load_tasks(load_stream(args.stream), args.data_dir, max_train=args.max_train, max_test=args.max_test,
                       seed=args.seed)
    base = load_base_model(args.model)
    family = FAMILIES[base.kind](base.model, base.tokenizer, config)  # features read the bare base model
    return tasks, {t.name: (family.router_features([e.text for e in t.train]),
                            family.router_features([e.text for e in t.test])) for t in tasks}


def route_counts(names, stats, test, config):
    router = Router(names, stats, [None] * len(names), config)
    return [r.task or "fallback" for r in router.learned(test)]


def study(tasks, feats, thresholds, margins):
    names = [t.name for t in tasks]
    stats = [TaskStats.of(feats[n][0]) for n in names]
    out = {"known": {}, "held_out": {}}
    for threshold in thresholds:
        for margin in margins:
            config = RouterConfig(threshold=threshold, margin=margin)
            key = f"threshold={threshold},margin={margin}"
            confusion = {n: {m: 0 for m in names + ["fallback"]} for n in names}
            for n in names:
                for routed in route_counts(names, stats, feats[n][1], config):
                    confusion[n][routed] += 1
            total = sum(sum(r.values()) for r in confusion.values())
            hits = sum(confusion[n][n] for n in names)
            out["known"][key] = {"routing_accuracy": hits / total, "confusion": confusion}
            held = {}
            for k, n in enumerate(names):
                others = [m for m in names if m != n]
                routed = route_counts(others, [s for j, s in enumerate(stats) if j != k], feats[n][1], config)
                held[n] = routed.count("fallback") / len(routed)
            out["held_out"][key] = held
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stream")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--max-train", type=int, default=1000)
    parser.add_argument("--max-test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thresholds", default="0.5")
    parser.add_argument("--margins", default="1.0,1.05,1.1,1.2,1.3")
    parser.add_argument("--cache", default=None, help="Save / reuse the features in this .pt file.")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    if args.cache and Path(args.cache).is_file():
        tasks, feats = torch.load(args.cache, weights_only=False)
    else:
        tasks, feats = features(args)
        if args.cache:
            torch.save((tasks, feats), args.cache)
    result = study(tasks, feats, [float(x) for x in args.thresholds.split(",")],
                   [float(x) for x in args.margins.split(",")])
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
