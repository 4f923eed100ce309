"""Does an answer's own probability tell right answers from wrong ones? Measured on libraries' test data.

Each library's tasks are re-read from the test data the library references, every test input is
answered in routed mode (as ``predict`` and ``serve`` answer it), and the answers are split into
right and wrong. Prints, per library and over all of them, the mean ``answer_probability`` of the
right and of the wrong answers, the router's mean confidence for both (which the issue found users
read as the answer's), and the area under the ROC curve of each as a detector of right answers.

    python examples/benchmarks/small_task_schedule.py examples/data/my-stream.yaml --keep runs/small ...
    python examples/benchmarks/answer_probability.py runs/small/default-{0,1,2}/library \\
        --json docs/benchmarks-data/answer_probability.json
"""

import argparse
import json
import statistics
from pathlib import Path

from sklearn.metrics import roc_auc_score

from clora.data.loaders import load_referenced_task
from clora.library import read_manifest
from clora.serving.inference import load_library


def answers_of(library: Path) -> list[dict]:
    """One row per test input of every task the library references: right or wrong, and both scores."""
    loaded = load_library(library)
    rows = []
    for entry in read_manifest(library)["tasks"]:
        if not entry.get("data"):
            continue
        task = load_referenced_task(entry["data"])
        for ex, answer in zip(task.test, loaded.predict([ex.text for ex in task.test])):
            rows.append({"task": task.name, "right": answer.prediction == ex.target,
                         "answer_probability": answer.answer_probability, "router_confidence": answer.confidence})
    return rows


def summary(rows: list[dict]) -> dict:
    right = [r for r in rows if r["right"]]
    wrong = [r for r in rows if not r["right"]]
    out = {"answers": len(rows), "right": len(right), "wrong": len(wrong)}
    for key in ("answer_probability", "router_confidence"):
        out[f"{key}_mean_right"] = round(statistics.mean(r[key] for r in right), 4) if right else None
        out[f"{key}_mean_wrong"] = round(statistics.mean(r[key] for r in wrong), 4) if wrong else None
        both = right and wrong and len({r[key] for r in rows}) > 1
        out[f"{key}_auroc"] = round(roc_auc_score([r["right"] for r in rows], [r[key] for r in rows]), 4) \
            if both else None
    return out


def line(total: dict) -> str:
    """The one-line summary docs/results.md quotes."""
    return (f"{total['answers']} answers, {total['wrong']} wrong: answer_probability {total['answer_probability_mean_right']:.3f} "
            f"(right) against {total['answer_probability_mean_wrong']:.3f} (wrong), AUROC "
            f"{total['answer_probability_auroc']:.3f}; router_confidence {total['router_confidence_mean_right']:.3f} "
            f"against {total['router_confidence_mean_wrong']:.3f}, AUROC {total['router_confidence_auroc']:.3f}")


def sentence(result: dict) -> str:
    """``line`` of the whole study (the JSON this script writes), with its full stop: what docs/results.md shows."""
    return line(result["all"]) + "."


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("libraries", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    per_library, everything = {}, []
    for library in args.libraries:
        rows = answers_of(library)
        everything += rows
        per_library[str(library)] = summary(rows)
        print(library, per_library[str(library)], flush=True)
    result = {"libraries": per_library, "all": summary(everything)}
    print(line(result["all"]) if result["all"]["wrong"] and result["all"]["right"] else result["all"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
