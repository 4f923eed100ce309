"""``clora library export LIB --all``: every task's snapshot as a PEFT LoRA folder named by the task.

The layout is the one vLLM reads: ``--lora-modules NAME=DIR/NAME ...`` or its filesystem LoRA
resolver (``VLLM_LORA_RESOLVER_CACHE_DIR=DIR``, which loads ``DIR/<model name>`` when a request
names it and the folder's ``base_model_name_or_path`` equals the model vLLM serves: hence
``base_model``). A README in DIR says how to start vLLM on it and put ``clora serve --upstream``
in front. The folders are written beside DIR and moved into place in one rename: a failure
leaves no half-written export.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from clora.library.layout import LibraryError
from clora.library.manifest import Manifest, on_disk
from clora.library.peft_io import check_export, snapshot_factors, write_peft_folder

README = """# PEFT adapters exported by clora

One folder per task of the library, each the task's snapshot as one LoRA (rank {rank_note}),
for the base model `{base}`. Serve them with vLLM (on a machine with a GPU; not run by clora's
tests), either named at start:

    vllm serve {base} --enable-lora --max-lora-rank {max_rank} --max-loras {count} \\
        --lora-modules {modules}

or found by name when a request asks for them (vLLM's filesystem LoRA resolver):

    VLLM_ALLOW_RUNTIME_LORA_UPDATING=true VLLM_PLUGINS=lora_filesystem_resolver \\
    VLLM_LORA_RESOLVER_CACHE_DIR={folder} vllm serve {base} --enable-lora --max-lora-rank {max_rank}

Then route by content in front of it (clients call clora with `model: auto`; clora forwards each
request with `model` set to the routed task, or to `{base}` when the router is unsure):

    clora serve LIBRARY --upstream http://127.0.0.1:8000 --upstream-fallback {base} --port 8001

Tasks: {tasks}
"""


def export_all(folder: Path, manifest: Manifest | dict, out: Path, base_model: str | None = None) -> list[Path]:
    """Write ``out/<task>/`` for every task with an adapter in its snapshot, and ``out/README.md``."""
    manifest = on_disk(manifest)
    out = check_export(manifest, out)
    tasks = [t["name"] for t in manifest["tasks"] if any(
        o.get("adapter") for o in manifest["tasks"] if o["name"] in t["snapshot"])]
    if not tasks:
        raise LibraryError("the library holds no adapters to export")
    base = base_model or manifest["base_model"]
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        ranks = {}
        for name in tasks:
            factors = snapshot_factors(folder, manifest, name)
            ranks[name] = max(a.shape[0] for a, _ in factors.values())
            write_peft_folder(stage / name, factors, manifest, base)
        (stage / "README.md").write_text(README.format(
            base=base, folder=out.resolve(), count=len(tasks), max_rank=_vllm_rank(max(ranks.values())),
            rank_note="the sum of the ranks of the adapters it holds", tasks=", ".join(tasks),
            modules=" ".join(f"{n}={(out / n).resolve()}" for n in tasks)), encoding="utf-8")
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return [out / name for name in tasks]


def _vllm_rank(rank: int) -> int:
    """The smallest of vLLM's allowed ``--max-lora-rank`` values that holds ``rank``."""
    allowed = (8, 16, 32, 64, 128, 256, 320, 512)
    return next((r for r in allowed if r >= rank), rank)
