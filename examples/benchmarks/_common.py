"""Helpers shared by the speed benchmarks: interleaved timing, medians, a tiny Llama."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each function, the functions taking turns call by call.

    Taking turns (and rotating who goes first) spreads the machine's noise evenly over
    the contenders, so their ratio is honest even when the absolute times drift.
    """
    names = list(fns)
    times = {n: [] for n in names}
    for r in range(warmup + repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            started = time.perf_counter()
            fns[n]()
            elapsed = time.perf_counter() - started
            if r >= warmup:
                times[n].append(elapsed)
    return times


def timing_args(ap, repeats: int = 20) -> None:
    """The options every benchmark shares: --repeats, --warmup, --threads, --json."""
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")


def parse_timing_args(ap, argv):
    """Parse ``argv`` and apply ``--threads``."""
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def median_ms(seconds: list[float]) -> float:
    return 1000 * statistics.median(seconds)


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def print_json(result: dict, out: Path | None = None) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if out is not None:
        out.write_text(text + "\n")


def tiny_model(kind: str, folder: Path, hidden: int = 256, layers: int = 4) -> Path:
    """A small random ``bert`` or ``llama`` (seed 0) with a word-level tokenizer, saved to ``folder`` once."""
    from clora.testing import save_tiny

    return folder if (folder / "config.json").is_file() else save_tiny(kind, folder, hidden=hidden, layers=layers)


def tiny_llama(folder: Path) -> Path:
    return tiny_model("llama", folder)
