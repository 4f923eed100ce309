"""Run the built-in demo stream through the Python API and print the key numbers.

    python examples/run_demo.py [--method orth] [--out clora-runs/demo-api]
"""

import argparse

from clora import RunConfig, run_stream


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="orth", choices=["seq", "inc", "orth"])
    parser.add_argument("--out", default="clora-runs/demo-api")
    parser.add_argument("--max-train", type=int, default=None)
    args = parser.parse_args(argv)
    report = run_stream(RunConfig(stream="demo", method=args.method, out=args.out, max_train=args.max_train))
    for mode, block in report.modes.items():
        print(f"{mode}: AA={block.average_accuracy:.3f} BWT={block.bwt:+.3f}")
    print(f"overlap={report.overlap}")
    return report


if __name__ == "__main__":
    main()
