"""The package's shape, read from its source: no import cycles between harness modules, exit codes only
through errors.ExitCode."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

MODULES = {p.stem: p for p in (REPO / "harness").glob("*.py")}


def _imports(path: Path) -> set[str]:
    """harness modules this one imports, at module level or inside functions (a lazy import is still an edge)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "harness":
            out |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("harness.")}
    return out & set(MODULES)


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
    graph = {m: _imports(p) - {m} for m, p in MODULES.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    assert "cli" not in graph["rehearsal"] and "worker" not in graph["backends"]  # the two the issue named
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check itself finds one


def test_exit_codes_come_only_from_exit_code():
    """No bare numbers handed to sys.exit / os._exit or returned by a command handler: errors.ExitCode is the
    one place that says what a code means."""
    bare = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            exits = isinstance(node, ast.Call) and ast.unparse(node.func) in ("sys.exit", "os._exit", "exit")
            if exits and node.args and isinstance(node.args[0], ast.Constant):
                bare.append(f"{name}.py:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.FunctionDef) and node.name.startswith("cmd_"):
                for ret in ast.walk(node):
                    if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Constant):
                        bare.append(f"{name}.py:{ret.lineno}: return {ast.unparse(ret.value)} in {node.name}")
    assert bare == []
