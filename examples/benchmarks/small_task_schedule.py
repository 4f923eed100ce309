"""How long a small task should train: 3 epochs, the ``min_steps`` floor, and 10 epochs, side by side.

Each stream is run with every setting at each seed (method orth, MiniLM by default) and the
routed, oracle and sum average accuracies are kept. Two streams are meant:

- ``shared``: three of the shared CL-benchmark tasks cut to ``--max-train`` examples (the
  floor is chosen on these, docs/results.md "Small tasks");
- ``examples/data/my-stream.yaml``: three tasks written by hand for the README (checked on
  these after the choice, never tuned on them).

    python examples/benchmarks/small_task_schedule.py examples/data/my-stream.yaml \\
        --json docs/benchmarks-data/small_tasks_own.json --keep runs/small
    python examples/benchmarks/small_task_schedule.py shared --data-dir ../shared/data/CL_Benchmark \\
        --max-train 48 --max-test 300 --json docs/benchmarks-data/small_tasks_shared.json
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from clora.config import RunConfig
from clora.data.stream import Stream, TaskSpec
from clora.workflows.run import run_stream

#: name -> (epochs, min_steps): epochs given are trained exactly; the default raises 3 to ``min_steps`` steps
SETTINGS = {"3 epochs": (3, None), "default": (None, None), "10 epochs": (10, None)}
SHARED = (("agnews", "TC/agnews"), ("yelp", "SC/yelp"), ("dbpedia", "TC/dbpedia"))


def shared_stream() -> Stream:
    """Three shared tasks in the cl_benchmark layout (read under ``--data-dir``)."""
    return Stream(name="small-shared", tasks=[TaskSpec(name=n, format="cl_benchmark", path=p) for n, p in SHARED])


def run_one(stream, args, seed: int, epochs: int, min_steps: int | None, out: Path) -> dict:
    config = RunConfig(stream=stream, out=out, data_dir=args.data_dir, model=args.model, method=args.method,
                       epochs=epochs, min_steps=min_steps, max_train=args.max_train, max_test=args.max_test,
                       seed=seed, progress=False)
    report = run_stream(config)
    modes = {mode: round(100 * block.average_accuracy, 2) for mode, block in report.modes.items()}
    return {"seed": seed, "steps": [t["steps"] for t in report.training],
            "epochs": [t["epochs"] for t in report.training], "train_s": round(report.timing["train_s"], 1), **modes}


def table(result: dict) -> str:
    """The markdown table docs/results.md shows: per setting, steps per task (first seed) and the mean AA of
    each mode over the seeds, then the spread of routed AA over the seeds."""
    rows = ["| setting | steps per task | routed AA | oracle AA | sum AA | routed AA over the seeds |",
            "|---|---|---|---|---|---|"]
    for name, runs in result["runs"].items():
        mean = result["mean"][name]
        routed = [r["routed"] for r in runs]
        rows.append(f"| {name} | {', '.join(map(str, runs[0]['steps']))} | {mean['routed']:.1f} | "
                    f"{mean['oracle']:.1f} | {mean['sum']:.1f} | {min(routed):.1f}-{max(routed):.1f} |")
    return "\n".join(rows)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stream", help="'shared' or a stream file")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--method", default="orth")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--max-test", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None,
                        help="Write the run folders here (<setting>-<seed>) instead of a temporary folder.")
    args = parser.parse_args(argv)
    stream = shared_stream() if args.stream == "shared" else args.stream
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = {}
    with tempfile.TemporaryDirectory() as work:
        where = args.keep or Path(work)
        for name, (epochs, min_steps) in SETTINGS.items():
            rows[name] = [run_one(stream, args, seed, epochs, min_steps, where / f"{name.replace(' ', '-')}-{seed}")
                          for seed in seeds]
            means = {m: round(statistics.mean(r[m] for r in rows[name]), 2) for m in ("routed", "oracle", "sum")}
            print(f"{name:>10}: steps {rows[name][0]['steps']}  " +
                  "  ".join(f"{m} {v:5.1f}" for m, v in means.items()), flush=True)
    result = {"stream": args.stream, "method": args.method, "model": args.model, "max_train": args.max_train,
              "max_test": args.max_test, "seeds": seeds, "runs": rows,
              "mean": {name: {m: round(statistics.mean(r[m] for r in runs), 2) for m in ("routed", "oracle", "sum")}
                       for name, runs in rows.items()}}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    return result


if __name__ == "__main__":
    main()
