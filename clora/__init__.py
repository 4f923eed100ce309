"""clora: continual-learning LoRA adapters for Hugging Face transformers models.

The public Python API, importable from ``clora`` alone (``docs/python-api.md``)::

    import clora
    report = clora.run_stream(clora.RunConfig(stream="demo"))      # clora run
    lib = clora.open_library(report.out / "library")               # clora library ...
    lib.add_task("medicine", "med_train.jsonl")                    # clora add-task
    lib.load().predict(["a recipe with an apple"])                 # clora predict

The heavy parts (torch, transformers) load on first use, so ``import clora`` and the
CLI's ``--help`` stay fast, and importing clora changes no global state.
"""

from clora.config import RunConfig
# every method's settings, registered as they are defined: RunConfig finds them by the method's name
from clora.methods.catalog import OLieSettings, OLoRASettings, OrthSettings, OSFSettings, ReplaySettings
from clora.settings import MethodSettings
from clora.data.stream import Stream, TaskSpec
from clora.errors import CloraError, ConfigError, DataError, ModelError

__version__ = "0.1.0"

# name -> module that defines it, imported on first use
_LAZY = {
    "run_stream": "clora.workflows.run", "compare_methods": "clora.workflows.compare",
    "compare_seeds": "clora.workflows.compare_seeds", "add_task": "clora.workflows.add_task",
    "AddTaskRequest": "clora.workflows.add_task", "AddTaskResult": "clora.workflows.add_task",
    "load_library": "clora.serving.inference", "LoadedLibrary": "clora.serving.inference",
    "Prediction": "clora.serving.inference", "Report": "clora.evaluation.report",
    "ModeResult": "clora.evaluation.report", "read_report": "clora.evaluation.report_files",
    "open_library": "clora.api", "Library": "clora.api", "export_task": "clora.api",
    "LibraryError": "clora.library.layout",
}
__all__ = ["CloraError", "ConfigError", "DataError", "MethodSettings", "ModelError", "OLieSettings",
           "OLoRASettings", "OSFSettings", "OrthSettings", "ReplaySettings", "RunConfig", "Stream", "TaskSpec",
           "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clora' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
