"""Routed against oracle AA after the last task, with the router reading other layers or more tokens
(docs/results.md, "What the router reads, against the routed gap").

Usage: python router_read_routed_gap.py RUN/library LAYERS:TOKENS [...]
e.g. 3:64 (the default read), 4:128, or 2:4:128 (the unit-norm mean of layers 2 and 4 each,
concatenated). The library's adapters are used as trained; the router's statistics are made
again from the tasks' training inputs (as `clora run` makes them) for each read, and the
routed row is computed exactly as `clora run` computes its last routed row.
"""
import json, sys, time, torch
from clora.adapters import use_adapters
from clora.data.loaders import load_referenced_task
from clora.evaluation.evaluate import example_scores
from clora.evaluation.routed import RoutedRun
from clora.serving.inference import load_library
from layer_read import layer_read  # this folder's helper

path = sys.argv[1]
variants = [tuple(int(x) for x in v.split(":")) for v in sys.argv[2:]]  # layers...:tokens e.g. 3:64 or 2:4:128
current = load_library(path).current
fam, snaps = current.lm.family, current.snapshots
cfg = fam.config
manifest = json.loads(open(f"{path}/manifest.json").read())
tasks = [load_referenced_task(e["data"]) for e in manifest["tasks"]]
n_ad = len(current.lm.lora)
oracle = []
for t in tasks:
    with use_adapters(snaps[t.name]):
        oracle.append(example_scores(fam, t, cfg))
orig = fam.features
oa = [sum(f) / len(f) for f in oracle]
print(path, "oracle AA", round(100 * sum(oa) / 4, 2), [round(100 * x, 1) for x in oa], flush=True)
for v in variants:
    layers, tokens = v[:-1], v[-1]
    if len(layers) == 1:
        fam.features, fam.router_layer, fam.router_tokens = orig, layers[0], tokens
    else:
        fam.features = layer_read(fam, layers, tokens)
    t0 = time.perf_counter()
    r = RoutedRun(fam, lambda: n_ad, cfg, tasks)
    for j in range(len(tasks)):
        r.learned(j, oracle[j])
    row = r.row(len(tasks) - 1, {t.name: snaps[t.name] for t in tasks})
    s = r.routing_summary()
    print(f"layers {layers} tokens {tokens}: routed AA {100 * sum(row) / 4:.2f} gap {100 * (sum(row) - sum(oa)) / 4:+.2f}"
          f" fallback {s['routing_fallback']:.4f} misrouted {s['routing_misrouted']:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
