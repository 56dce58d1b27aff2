"""The package's shape, read from its source: stage packages in pipeline order, every import running from a later
stage to an earlier one (never back), no import cycles between harness modules, exit codes only through
errors.ExitCode."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

# The stages, each a package of harness/, in the order the work flows; a module imports only from its own stage
# and the stages before it. The entry points above them all (the package itself, `python -m harness`, the CLI
# dispatcher and the commands) may import anything.
STAGES = ["core", "zoo", "fetch", "score", "model", "records", "publish", "nightly"]
TOP = {"harness", "harness.__main__", "harness.cli"}


def _name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in (REPO / "harness").rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """harness modules this one imports, at module level or inside functions (a lazy import is still an edge)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # `from harness.fetch import artifacts`
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("harness")}
    # `from harness import __version__`: the package's own module holds the version and the lazy library API;
    # importing it imports nothing else, so it is no edge
    return (out & set(MODULES)) - {"harness"}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return [*stack[stack.index(n) :], n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    return next((c for m in sorted(graph) if m not in state and (c := visit(m))), None)


def test_harness_modules_import_each_other_without_cycles():
    graph = {m: _imports(p) - {m} - {".".join(m.split(".")[:-1])} for m, p in MODULES.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    assert "harness.cli" not in graph["harness.nightly.rehearsal"]
    assert "harness.model.worker" not in graph["harness.model.backends"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check itself finds one


def test_every_module_lives_in_its_stage_and_imports_only_from_earlier_stages():
    flat = [m for m in MODULES if m not in TOP and _stage(m) is None and not m.startswith("harness.commands")]
    assert flat == [], f"modules outside the stage packages: {flat}"
    backwards = [
        f"{m} ({_stage(m)}) imports {d} ({_stage(d)})"
        for m, p in MODULES.items()
        if _stage(m) is not None
        for d in sorted(_imports(p))
        if d.startswith("harness.commands") or d in TOP or STAGES.index(_stage(d) or "core") > STAGES.index(_stage(m))
    ]
    assert backwards == []
    # the check itself: an import from a later stage is found
    assert STAGES.index(_stage("harness.publish.report")) > STAGES.index(_stage("harness.records.results"))


def test_exit_codes_come_only_from_exit_code():
    """No bare numbers handed to sys.exit / os._exit or returned by a command handler: errors.ExitCode is the
    one place that says what a code means."""
    bare = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            exits = isinstance(node, ast.Call) and ast.unparse(node.func) in ("sys.exit", "os._exit", "exit")
            if exits and node.args and isinstance(node.args[0], ast.Constant):
                bare.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.FunctionDef) and node.name.startswith("cmd_"):
                for ret in ast.walk(node):
                    if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Constant):
                        bare.append(f"{name}:{ret.lineno}: return {ast.unparse(ret.value)} in {node.name}")
    assert bare == []
