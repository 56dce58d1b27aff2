"""A benchmark and reproduction harness for PaddleDetection model zoos: fetch, evaluate with PaddleDetection,
score, judge against the documented AP, report. The bundled zoo is the models of PaddleDetection's Res2Net
README; `harness import` reads other READMEs into zoo files.

The library API, the functions the commands themselves call:

    import harness

    zoo = harness.load_zoo()  # or a path; a Zoo (zoo/manifest.py) with .models, .model(name), ...
    record = harness.verify(zoo.models[0].name, options=harness.Options(device="cpu", subset=8), out="runs/q")
    print(record.status, record.measured("box_ap"), harness.report(["runs/q"]))

They are imported when first used: `import harness` is instant and never imports paddle (only the worker, a
subprocess, does), so `harness list` and `harness report` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Options", "__version__", "load_zoo", "report", "verify"]

# name -> (module, attribute) of the API's members, imported on first use
_LAZY = {
    "verify": ("harness.commands.verify", "verify"),
    "load_zoo": ("harness.commands.options", "load_zoo"),
    "Options": ("harness.model.inputs", "Options"),
    "report": ("harness.commands.report", "report"),
}

if TYPE_CHECKING:
    from harness.commands.options import load_zoo
    from harness.commands.report import report
    from harness.commands.verify import verify
    from harness.model.inputs import Options


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
