"""long-10 built one task at a time: yelp by `clora run` (planned for 10 tasks), the other nine by `clora add-task`.

Run: python docs/benchmarks-data/grow_long10.py OUT [DATA_DIR]   (DATA_DIR: ../shared/data/CL_Benchmark)
Then compare `clora library show OUT/run/library` with `clora run long-10 ... --max-train 500 --max-test 200`.
"""
import json, subprocess, sys
from pathlib import Path
from clora.data.loaders import load_tasks
from clora.data.stream import load_stream

out = Path(sys.argv[1])
data = sys.argv[2] if len(sys.argv) > 2 else "../shared/data/CL_Benchmark"
out.mkdir(parents=True, exist_ok=True)
stream = load_stream("long-10")
tasks = load_tasks(stream, Path(data), max_train=500, max_test=200, seed=0)
first = out / "yelp.yaml"
first.write_text("name: long-10\ntasks:\n  - name: yelp\n    format: cl_benchmark\n    path: SC/yelp\n"
                 "    instruction: '" + tasks[0].instruction + "'\n")
common = ["--quiet"]
subprocess.run(["clora", "run", str(first), "--data-dir", data, "--max-train", "500", "--max-test", "200",
                "--method", "orth", "--capacity-tasks", "10", "--out", str(out / "run"), *common], check=True)
lib = out / "run" / "library"
for t in tasks[1:]:
    for split, ex in (("train", t.train), ("test", t.test)):
        (out / f"{t.name}-{split}.jsonl").write_text("".join(json.dumps({"sentence": e.text, "label": e.target}) + "\n" for e in ex))
    r = subprocess.run(["clora", "add-task", str(lib), "--name", t.name, "--train", str(out / f"{t.name}-train.jsonl"),
                        "--test", str(out / f"{t.name}-test.jsonl"), "--labels", ",".join(t.labels),
                        "--instruction", t.instruction, *common], capture_output=True, text=True)
    print(t.name, r.returncode, r.stdout[-600:], r.stderr[-300:], flush=True)
subprocess.run(["clora", "library", "show", str(lib)])
