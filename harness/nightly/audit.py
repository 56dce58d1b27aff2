"""The zoo audit: for every model of a zoo file, offline and without weights, does its config hold up?

Three checks, each a finding PaddleDetection's maintainers can act on: the config exists at the pinned
commit, its `_BASE_` chain stays inside the tree and exists, and the model builds on the pinned paddle
(with its parameter count and state-dict size). Builds run in worker subprocesses (`worker build`), many
configs per process with ppdet's registry restored in between; a failure is confirmed in a fresh process
so that it can never be a leftover of another config.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from harness.core.errors import HarnessError, UsageError
from harness.core.schema import Strict
from harness.fetch.source import SourceTree
from harness.model.protocol import SLIM_SEP
from harness.zoo.manifest import Zoo

BATCH = 40  # configs per worker process (import costs ~4 s; a build ~1 s)


class Finding(Strict):
    """One model's audit: `missing` (config absent or its `_BASE_` leaves the tree), `failed`, `built`."""

    model: str
    config: str
    slim: str | None = None  # a compressed model's slim config: built transformed by it, as it is evaluated
    status: Literal["built", "failed", "missing"]
    dataset: str | None = None  # the zoo's dataset the model is evaluated on (its task's)
    architecture: str | None = None
    params: int | None = None
    keys: int | None = None
    error: str | None = None
    seconds: float | None = None


class Audit(Strict):
    """One stack's audit, as `harness audit --json` writes it and `--merge` reads it back."""

    stack: str
    paddle: str | None
    tree: dict
    findings: list[Finding]


def load(path: Path) -> Audit:
    try:
        return Audit.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        first = str(exc).splitlines()
        raise UsageError(
            f"{path}: not an audit JSON ({' '.join(first[:3])})", hint="pass files written by `harness audit --json`"
        ) from None


def _build(root: Path, configs: list[str], timeout_s: float, bar=None) -> dict[str, dict]:
    """Build `configs` in one worker process; its JSON lines are read as they come (progress)."""
    import tempfile
    import threading

    lines: dict[str, dict] = {}
    # stderr to a file, not a pipe: paddle's warnings can never fill a pipe and block the build
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.model.worker", "build", "--ppdet-root", str(root), *configs],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                if line.startswith("{"):
                    rec = json.loads(line)
                    lines[rec["config"]] = rec
                    if bar is not None:
                        bar.update(1)
            rc = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        errors.seek(0)
        last = (errors.read().strip().splitlines() or ["no output"])[-1][:300]
    for config in configs:  # a process that died mid-batch: the rest are reported as such
        lines.setdefault(
            config, {"config": config, "ok": False, "error": f"the build process exited with {rc}: {last}"}
        )
    return lines


def run(zoo: Zoo, tree: SourceTree, names: list[str] | None = None, *, timeout_s: float = 1800) -> list[Finding]:
    models = zoo.select(names)
    findings: dict[str, Finding] = {}
    to_build: list[tuple[str, str]] = []  # (model, the worker's unit: CONFIG or CONFIG::SLIM)
    for m in models:
        try:
            tree.config(m)  # exists, and its _BASE_ chain stays inside the tree
            tree.slim_config(m)  # the same for a compressed model's slim config
        except HarnessError as exc:
            findings[m.name] = Finding(
                model=m.name,
                config=m.config,
                slim=m.slim,
                status="missing",
                dataset=zoo.dataset_of(m).name,
                error=_short(exc.message, tree.root),
            )
            continue
        to_build.append((m.name, m.config if m.slim is None else f"{m.config}{SLIM_SEP}{m.slim}"))
    from tqdm import tqdm

    configs = list(dict.fromkeys(c for _, c in to_build))
    # A compressed model is built in a process of its own: after a plain build of the same config, a QAT build
    # in that process came out with 130 more state-dict keys than in a fresh one (the registry restore does not
    # cover it), and the audit's numbers must be those the eval's fresh worker builds.
    plain = [c for c in configs if SLIM_SEP not in c]
    batches = [plain[i : i + BATCH] for i in range(0, len(plain), BATCH)] + [[c] for c in configs if SLIM_SEP in c]
    built: dict[str, dict] = {}
    with tqdm(total=len(configs), desc="audit: building", unit="config", file=sys.stderr, leave=False) as bar:
        for batch in batches:
            built.update(_build(tree.root, batch, timeout_s, bar))
    for config, rec in list(built.items()):
        if not rec["ok"]:  # confirm alone, in a fresh process
            built[config] = _build(tree.root, [config], timeout_s)[config]
    for name, unit in to_build:
        rec = built[unit]
        config, _, slim = unit.partition(SLIM_SEP)
        findings[name] = Finding(
            model=name,
            config=config,
            slim=slim or None,
            status="built" if rec["ok"] else "failed",
            dataset=zoo.dataset_of(zoo.model(name)).name,
            **{k: rec.get(k) for k in ("architecture", "params", "keys", "error", "seconds")},
        )
    return [findings[m.name] for m in models]


def _short(message: str, root: Path | str) -> str:
    """The first line of a message, the tree's local path left out (it means nothing in a report)."""
    first = (message.splitlines() or [""])[0]
    return first.replace(f" in {root}", " at this pin").replace(str(root), "<tree>") if root else first


def markdown(runs: list[Audit]) -> str:
    """The audit of one or more stacks as one document: totals per stack, what did not build, every model."""
    stacks = [a.stack for a in runs]
    by_model: dict[str, dict[str, Finding]] = {}
    for a in runs:
        for f in a.findings:
            by_model.setdefault(f.model, {})[a.stack] = f
    lines = [
        "# Zoo audit: does every imported config build?",
        "",
        "Offline and without weights: the config exists at the pin, its `_BASE_` chain stays inside the tree, "
        "and the model builds on the stack's paddle (`harness audit`), with no network: backbones that download "
        "ImageNet weights while being built are answered with an empty state dict (a checkpoint replaces every "
        "parameter anyway). `missing`: the config is not in that stack's tree (added to PaddleDetection "
        "after it), or its `_BASE_` chain leaves the tree.",
        "",
    ]
    totals = []
    for a in runs:
        counts = [sum(f.status == s for f in a.findings) for s in ("built", "failed", "missing")]
        tree = f"{a.tree.get('commit') or 'checkout'} (tree {(a.tree.get('tree') or '?')[:12]})"
        totals.append([a.stack, a.paddle or "?", tree, *counts])
    lines += [
        _table(totals, ["stack", "paddle", "PaddleDetection", "built", "failed", "missing"]),
        "",
        "## Models that did not build",
        "",
    ]
    roots = {a.stack: a.tree.get("root") or "" for a in runs}
    bad = [
        [name, stack, f.status, _short(f.error or "", roots[stack])]
        for name, fs in by_model.items()
        for stack, f in fs.items()
        if f.status != "built"
    ]
    lines.append(_table(bad, ["model", "stack", "status", "why"]) if bad else "none")
    lines += ["", *_counts(runs, "dataset", "By dataset (the task it is judged on)")]
    lines += ["", *_counts(runs, "architecture", "By architecture (the family)")]
    rows = []
    for name, fs in by_model.items():
        params = next((f.params for f in fs.values() if f.params), None)
        arch = next((f.architecture for f in fs.values() if f.architecture), None)
        rows.append(
            [
                name,
                arch or "-",
                f"{params / 1e6:.2f}" if params else "-",
                *(fs[s].status if s in fs else "-" for s in stacks),
            ]
        )
    lines += ["", "## Every model", "", _table(rows, ["model", "architecture", "params (M)", *stacks])]
    return "\n".join(lines) + "\n"


def _counts(runs: list[Audit], field: str, title: str) -> list[str]:
    """Built / models per value of `field` (dataset, architecture), one column per stack."""
    keys = sorted(
        {getattr(f, field) or "-" for a in runs for f in a.findings if f.status == "built" or field == "dataset"}
    )
    rows = []
    for key in keys:
        row: list = [key]
        for a in runs:
            mine = [f for f in a.findings if (getattr(f, field) or "-") == key]
            row.append(f"{sum(f.status == 'built' for f in mine)}/{len(mine)}" if mine else "-")
        rows.append(row)
    return [f"## {title}", "", _table(rows, [field, *(f"{a.stack} built/models" for a in runs)])]


def _table(rows: list[list], headers: list[str]) -> str:
    from tabulate import tabulate

    cells = [[str(c).replace("|", "/").replace("\n", " ") for c in row] for row in rows]
    return tabulate(cells, headers=headers, tablefmt="github", disable_numparse=True)
