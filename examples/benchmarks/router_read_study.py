"""How routing quality depends on what the router reads: which layer, how many tokens.

For each token cap, one pass of the bare base model over every task's training and test
inputs keeps the pooled, unit-norm hidden states after every layer. For each (tokens,
layer) it fits the LDA router on the training features and routes the test inputs with
the default router settings. Prints JSON: the share routed to their own task, to another
task, to the fallback, and whose most likely task is right (``argmax``). The cost of a
read is about ``layer / L * tokens`` of a full pass (docs/benchmarks.md).

    python examples/benchmarks/router_read_study.py cl-benchmark-4 --data-dir ../shared/data/CL_Benchmark
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from clora.data.loaders import load_tasks
from clora.families.loading import load_base_model
from clora.routing.lda import TaskStats
from clora.routing.router import Router, RouterConfig
from clora.data.stream import load_stream


@torch.no_grad()
def pooled_per_layer(model, tokenizer, texts: list[str], tokens: int, batch: int = 64) -> list[torch.Tensor]:
    """``[layer] -> (n, hidden)``: unit-norm masked means of the hidden states after each layer."""
    parts = []
    for start in range(0, len(texts), batch):
        enc = tokenizer(texts[start:start + batch], padding=True, truncation=True, max_length=tokens,
                        return_tensors="pt")
        states = model(**enc, output_hidden_states=True).hidden_states
        mask = enc["attention_mask"].unsqueeze(-1).float()
        parts.append([F.normalize((h * mask).sum(1) / mask.sum(1), dim=-1) for h in states[1:]])
    return [torch.cat([p[k] for p in parts]) for k in range(len(parts[0]))]


def route_shares(train: dict, test: dict, layer: int) -> dict:
    names = list(train)
    router = Router(names, [TaskStats.of(train[n][layer]) for n in names], [None] * len(names), RouterConfig())
    counts = {"own": 0, "other": 0, "fallback": 0, "argmax": 0}
    total = 0
    for name in names:
        for route in router.learned(test[name][layer]):
            total += 1
            counts["fallback" if route.task is None else "own" if route.task == name else "other"] += 1
            counts["argmax"] += route.guess == name
    return {k: v / total for k, v in counts.items()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stream")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--max-test", type=int, default=500)
    ap.add_argument("--tokens", default="16,32,64,128")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    tasks = load_tasks(load_stream(args.stream), args.data_dir, max_train=args.max_train, max_test=args.max_test,
                       seed=args.seed)
    base = load_base_model(args.model)
    result = {}
    for tokens in (int(x) for x in args.tokens.split(",")):
        train = {t.name: pooled_per_layer(base.model, base.tokenizer, [e.text for e in t.train], tokens) for t in tasks}
        test = {t.name: pooled_per_layer(base.model, base.tokenizer, [e.text for e in t.test], tokens) for t in tasks}
        for layer in range(len(next(iter(train.values())))):
            result[f"tokens={tokens},layer={layer + 1}"] = route_shares(train, test, layer)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
