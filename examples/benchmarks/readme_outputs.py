"""What the README's commands print, run as a user runs them, kept as data for the README.

Runs, in a fresh folder beside copies of ``examples/data``, the README's ``clora run demo``,
``clora add-task ... medicine``, ``clora library rollback`` and ``clora predict`` (the real MiniLM,
seed 0), in the README's order, and writes
their standard output and the demo's report to ``--json``. ``--readme`` then puts each
output into README.md's ``text`` block that follows its command (blocks holding the
placeholders ``DEMO_OUTPUT``, ``ADD_TASK_OUTPUT`` and ``PREDICT_OUTPUT`` the first time);
``tests/integration/test_readme.py`` checks that README.md quotes this file.

    python examples/benchmarks/readme_outputs.py --json docs/benchmarks-data/readme_outputs.json --readme README.md
"""

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = "clora-runs/demo-orth/library"
COMMANDS = {
    "demo": ["clora", "run", "demo"],
    "add_task": ["clora", "add-task", LIBRARY, "--name", "medicine", "--train", "examples/data/medicine/train.jsonl",
                 "--test", "examples/data/medicine/test.jsonl", "--text-field", "complaint",
                 "--label-field", "clinic"],
    # as in the README: the library is rolled back to the demo's four tasks before predict
    "rollback": ["clora", "library", "rollback", LIBRARY],
    "predict": ["clora", "predict", LIBRARY, "the quiet kitchen bake an apple recipe",
                "the old boat near the harbor lamp again", "a recipe with an apple"],
}
#: the README block each output goes into: the first ```text block after the line that starts so
ANCHORS = {"demo": "The demo writes", "add_task": "`add-task` prints the new task's score",
           "predict": "Each answer says how sure the model is"}


def run_commands(work: Path) -> dict:
    shutil.copytree(ROOT / "examples" / "data", work / "examples" / "data")
    outputs = {}
    for name, command in COMMANDS.items():
        done = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip().splitlines()[-1:]}")
        outputs[name] = done.stdout.rstrip("\n")
        print(f"$ {' '.join(command)}\n{outputs[name]}\n", flush=True)
    report = json.loads((work / "clora-runs" / "demo-orth" / "report.json").read_text())
    return {"commands": {k: " ".join(v) for k, v in COMMANDS.items()}, "outputs": outputs, "demo_report": report}


def fill_readme(readme: Path, outputs: dict) -> None:
    """Put each output into the first ```text block after its anchor."""
    text = readme.read_text(encoding="utf-8")
    for name, anchor in ANCHORS.items():
        at = text.index(anchor)
        block = re.compile(r"```text\n.*?```", re.S).search(text, at)
        text = text[:block.start()] + f"```text\n{outputs[name]}\n```" + text[block.end():]
    readme.write_text(text, encoding="utf-8")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--readme", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        result = run_commands(Path(work))
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.readme:
        fill_readme(args.readme, result["outputs"])
    return result


if __name__ == "__main__":
    main()
