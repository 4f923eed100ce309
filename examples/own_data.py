"""Write a two-task stream over your own JSON-lines files and run it.

Shows the stream file format for user data: each task is a folder with train.jsonl and
test.jsonl of {"sentence": ..., "label": ...} rows (field names are configurable).

    python examples/own_data.py --workdir /tmp/clora-own --model all-MiniLM-L6-v2
"""

import argparse
import json
import random
from pathlib import Path

from clora import RunConfig, run_stream

TASKS = {
    "weather": (["sunny", "rainy"], {"sunny": ["bright sun all day", "clear blue sky"],
                                     "rainy": ["heavy showers tonight", "wet and grey with rain"]}),
    "mood": (["happy", "sad"], {"happy": ["what a lovely gift", "I am so glad today"],
                                "sad": ["I miss my old friend", "a gloomy lonely evening"]}),
}


def write_task(folder: Path, phrases: dict, rng: random.Random) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 40), ("test", 20)):
        rows = []
        for _ in range(n):
            label = rng.choice(sorted(phrases))
            rows.append({"sentence": f"{rng.choice(phrases[label])} {rng.choice(['indeed', 'really', ''])}".strip(),
                         "label": label})
        (folder / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="clora-runs/own-data")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    args = parser.parse_args(argv)
    work, rng = Path(args.workdir), random.Random(0)
    lines = ["name: own-data", "tasks:"]
    for name, (labels, phrases) in TASKS.items():
        write_task(work / "data" / name, phrases, rng)
        lines += [f"  - name: {name}", "    format: jsonl", f"    path: data/{name}",
                  f"    instruction: \"Which one: {' or '.join(labels)}?\"", f"    labels: [{', '.join(labels)}]"]
    stream = work / "own-data.yaml"
    stream.write_text("\n".join(lines) + "\n")
    report = run_stream(RunConfig(stream=str(stream), model=args.model, out=work / "run", epochs=2))
    print(f"sum AA={report.modes['sum'].average_accuracy:.3f}; report in {work / 'run'}")
    return report


if __name__ == "__main__":
    main()
