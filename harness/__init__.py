"""A benchmark and reproduction harness for PaddleDetection model zoos: fetch, evaluate with PaddleDetection,
score, judge against the documented AP, report. The bundled zoo is the models of PaddleDetection's Res2Net
README; `harness import` reads other READMEs into zoo files.

The library API, the functions the commands themselves call:

    import harness

    zoo = harness.load_zoo()  # or a path; a Zoo (manifest.py) with .models, .model(name), ...
    record = harness.verify(zoo.models[0].name, options=harness.Options(device="cpu", subset=8), out="runs/q")
    print(record.status, record.measured("box_ap"), harness.report(["runs/q"]))

They are imported when first used: `import harness` is instant and never imports paddle (only the worker, a
subprocess, does), so `harness list` and `harness report` stay fast.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Options", "__version__", "load_zoo", "report", "verify"]

# name -> (module, attribute) of the API's members, imported on first use
_LAZY = {
    "verify": ("harness.commands.verify", "verify"),
    "load_zoo": ("harness.commands.options", "load_zoo"),
    "Options": ("harness.inputs", "Options"),
    "report": ("harness.report", None),  # the module, made callable below
}

if TYPE_CHECKING:
    from harness.commands.options import load_zoo
    from harness.commands.verify import verify
    from harness.inputs import Options


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    module, attr = _LAZY[name]
    found = importlib.import_module(module)
    return getattr(found, attr) if attr else getattr(sys.modules[__name__], name)


class _CallableReport(types.ModuleType):
    """harness/report.py's module, callable: `harness.report(runs, ...)` is `commands.report.report` (the
    markdown of those run directories, as `harness report` prints it). Why a module that can be called: the
    import system sets `harness.report` to that submodule whenever anything imports it, so an API function of
    the same name would be replaced by the module; the module's own names (`markdown`, `junit`, ...) stay."""

    def __call__(self, *args: Any, **kw: Any) -> str:
        from harness.commands.report import report

        return report(*args, **kw)


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name == "report" and type(value) is types.ModuleType:
            value.__class__ = _CallableReport
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
