"""A training example's step against a test example's forward pass (docs/report-format.md, evaluation cost).

Usage: python eval_vs_train_step.py [TASK ...]   (needs ../shared/data/CL_Benchmark and MiniLM)

Trains orth's first adapter on 320 amazon examples (1 epoch, batch 16) and times it per
example, then times sum-mode evaluation of 640 test examples of each task (best of two
passes), the way ``clora run`` evaluates.
"""
import sys, time, statistics, torch
from clora.config import RunConfig
from clora.workflows.run import prepare
from clora.adapters import use_adapters, no_adapters
from clora.evaluation.evaluate import example_scores
from clora.training.loop import train_task

cfg = RunConfig(stream="cl-benchmark-4", data_dir="../shared/data/CL_Benchmark", max_train=320, max_test=640,
                epochs=1, progress=False)
s = prepare(cfg)
task = s.tasks[1]  # amazon
params = s.method.begin_task(s.lora, 0)
with use_adapters(s.method.snapshot(1)):
    s.method.initialise(s.lora, 0, task.kind, run_loss=lambda: None)
    t = time.perf_counter(); st = train_task(s.family, task, params, s.config); tt = time.perf_counter() - t
print(f"train: {tt/len(task.train)*1000:.1f} ms/example", flush=True)
for name in sys.argv[1:] or ["agnews", "amazon", "dbpedia", "yelp"]:
    tk = next(x for x in s.tasks if x.name == name)
    with use_adapters(s.method.snapshot(1)):
        ts = []
        for _ in range(2):
            t = time.perf_counter(); f = example_scores(s.family, tk, s.config); ts.append(time.perf_counter() - t)
    print(f"eval {name}: {min(ts)/len(tk.test)*1000:.1f} ms/example acc {sum(f)/len(f):.3f}", flush=True)
