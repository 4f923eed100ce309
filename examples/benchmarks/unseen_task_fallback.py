"""How often the router falls back on inputs of a task the library does not have.

For each task of a library: copy the library, ``clora library remove`` the task, send
its test inputs (from the library's data reference) through ``clora predict`` and count
the answers whose source is ``fallback``. Prints JSON.

    python examples/benchmarks/unseen_task_fallback.py runs/cl4-orth/library
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from clora.data.loaders import load_referenced_task
from clora.library import read_manifest


def clora(*args) -> str:
    return subprocess.run([sys.executable, "-m", "clora.cli.main", *map(str, args)], check=True,
                          capture_output=True, text=True).stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library")
    parser.add_argument("--threshold", type=float, default=None)
    args = parser.parse_args(argv)
    manifest = read_manifest(Path(args.library))
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for entry in manifest["tasks"]:
            copy = Path(tmp) / entry["name"]
            shutil.copytree(args.library, copy)
            clora("library", "remove", copy, entry["name"])
            inputs = Path(tmp) / f"{entry['name']}.jsonl"
            task = load_referenced_task(entry["data"])
            inputs.write_text("".join(json.dumps({"input": ex.text}) + "\n" for ex in task.test))
            extra = ["--threshold", args.threshold] if args.threshold is not None else []
            rows = [json.loads(line) for line in clora("predict", copy, "--input", inputs, *extra).splitlines()]
            fallback = sum(r["source"] == "fallback" for r in rows) / len(rows)
            routed_to = {}
            for r in rows:
                if r["source"] != "fallback":
                    routed_to[r["task"]] = routed_to.get(r["task"], 0) + 1
            result[entry["name"]] = {"inputs": len(rows), "fallback": fallback, "routed_to": routed_to}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
