"""The folder tree is the architecture: checked from the code itself.

The import graph is read from every module's source (module-level and in-function
imports alike, ``TYPE_CHECKING`` blocks left out), so a cycle hidden in a function body
counts as a cycle.
"""

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "clora"

#: what each part of clora may import (besides itself); the layers of docs/architecture.md
ALLOWED = {
    "errors": set(),
    "settings": {"errors"},
    "config": {"errors", "settings"},
    "routing": {"errors", "config", "settings"},
    "data": {"errors", "config", "settings", "routing"},
    "adapters": {"errors", "config", "settings"},
    "families": {"errors", "config", "settings", "data", "adapters"},
    "methods": {"errors", "config", "settings", "adapters", "data"},
    "training": {"errors", "config", "settings", "data", "adapters", "families"},
    "evaluation": {"errors", "config", "settings", "data", "routing", "adapters", "families", "training"},
    "library": {"errors", "config", "settings", "data", "routing", "adapters"},
    "workflows": {"errors", "config", "settings", "data", "routing", "adapters", "families", "methods", "training",
                  "evaluation", "library"},
    "serving": {"errors", "config", "settings", "data", "routing", "adapters", "families", "methods", "training",
                "evaluation", "library", "workflows"},
    "inbox": {"errors", "config", "settings", "data", "routing", "library", "workflows", "serving"},
    "api": {"errors", "config", "settings", "data", "routing", "families", "library", "workflows", "serving", "inbox"},
    "cli": {"errors", "config", "settings", "data", "routing", "library", "workflows", "serving", "api", "evaluation",
            "inbox"},
    "testing": {"data"},
    "streams": set(),
    "__init__": {"errors", "settings", "config", "data", "methods"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_lines(tree) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The clora modules ``path`` imports (a ``from pkg import sub`` of a submodule counts as the submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "clora")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "clora":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return {m for m in found if m in modules}


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    return {name: imports_of(path, set(modules)) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    tree = {"clora.x": {"clora.y"}, "clora.y": set()}
    assert find_cycle({**tree, "clora.y": {"clora.x"}}) is not None


def test_no_import_cycle_inside_clora():
    graph = import_graph()
    assert len(graph) > 60  # the walk really saw the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_each_part_imports_only_the_layers_below_it():
    broken = []
    for module, targets in import_graph().items():
        part = part_of(module)
        assert part in ALLOWED, f"{module}: a new part of clora must be placed in the layers (ALLOWED)"
        for target in targets:
            other = part_of(target)
            if other != part and other not in ALLOWED[part]:
                broken.append(f"{module} imports {target}")
    assert not broken, "\n".join(broken)


def test_only_the_cli_imports_click():
    users = [name for name, path in source_modules().items() if part_of(name) != "cli"
             and any(line.strip().startswith(("import click", "from click")) for line in path.read_text().splitlines())]
    assert users == []


def test_importing_clora_changes_no_global_state():
    """Logging, warnings, torch threads, the environment and matplotlib are as they were after
    ``import clora`` and every one of its modules."""
    script = r"""
import json, logging, os, sys, warnings, importlib, pkgutil
# clora's dependencies first: what their own imports change is theirs, not clora's
import torch, transformers, geoopt, safetensors.torch, datasets, yaml, click, tqdm.auto, scipy.linalg
import matplotlib.figure, matplotlib.backends.backend_agg, accelerate, peft
def state():
    import torch
    clora_log = logging.getLogger("clora")
    return {"root": [logging.getLogger().level, len(logging.getLogger().handlers)],
            "clora": [clora_log.level, len(clora_log.handlers), clora_log.propagate],
            "transformers": logging.getLogger("transformers").level,
            "warnings": len(warnings.filters), "threads": torch.get_num_threads(),
            "env": sorted(os.environ.items()), "pyplot": "matplotlib.pyplot" in sys.modules,
            "backend": str(dict.__getitem__(sys.modules["matplotlib"].rcParams, "backend"))}  # get_backend() loads pyplot
before = state()
import clora
for m in pkgutil.walk_packages(clora.__path__, "clora."):
    importlib.import_module(m.name)
after = state()
print(json.dumps({"same": before == after, "before": before, "after": after}, default=str))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["same"], {k: (result["before"][k], result["after"][k]) for k in result["before"]
                            if result["before"][k] != result["after"][k]}


def test_the_wheel_holds_every_module_and_stream_of_the_source_tree(tmp_path):
    """Build the wheel from the tracked files alone (as a clean checkout would) and compare file lists."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    tree = tmp_path / "src"
    for rel in tracked:
        if (ROOT / rel).is_file():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_bytes((ROOT / rel).read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(tree)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("clora-*.whl"))
    in_wheel = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("clora/")}
    in_source = {rel for rel in tracked if rel.startswith("clora/") and rel.endswith((".py", ".yaml"))}
    assert in_source - in_wheel == set(), "left out of the wheel"
    assert {n for n in in_wheel if n.endswith(".py")} == {r for r in in_source if r.endswith(".py")}
    assert "clora/streams/demo.yaml" in in_wheel and "clora/cli/main.py" in in_wheel


def test_every_folder_of_python_files_is_a_package():
    """A folder without ``__init__.py`` is a namespace package: pkgutil never walks into it."""
    folders = {p.parent for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file()) == []
