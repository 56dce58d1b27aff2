"""Building the impact map (harness/records/impact.py): every model of a zoo run once on the CPU at a tiny size,
through the same path as `harness run` (build, strict weight load, eval, postprocess), under coverage.py.

Why this way: a model's result can only change if a file it executes, a config it reads, the stack or the data
changed, and the one honest record of "the files it executes" is a tracer's. The weights are random (built from
each real config by the worker, BatchNorm calibrated) and the data a synthetic set of the model's own dataset's
layout, both served on 127.0.0.1: the rehearsal's machinery (harness/nightly/rehearsal.py), as the family matrix
(scripts/families.py) uses it. One worker process per model, each under `coverage run` tracing only the
PaddleDetection tree (harness/model/launcher.py, TRACE_ENV), so paddle's own Python runs untraced.

A file counts as executed by the model (`files`) when one of its functions ran, or, having no functions, it ran
at all; a file whose module level alone ran is `imported` (ppdet imports every head and backbone at start-up, and
a map that lists them all for every model would select every model on any change).
"""

from __future__ import annotations

import ast
import datetime as dt
import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.core.errors import HarnessError, UsageError
from harness.core.files import read_json
from harness.fetch import source
from harness.model import protocol
from harness.model.launcher import TRACE_ENV, TRACE_FILE
from harness.records.impact import VERSION, ImpactMap, ModelImpact, Pin
from harness.zoo.manifest import Zoo, parse_zoo

EVAL_SIZE = 160  # the short side the eval is scaled to: what runs is the same code at any size
# a model whose eval fails at EVAL_SIZE is traced again at this size (a DETR with 900 queries has fewer tokens at
# 160 px); the model's spec.json in the build's run directory keeps the size it was traced at
RETRY_SIZE = 320
BATCH = 8  # models per `harness run` (one progress step each; a killed build keeps the batches done)
# models whose random weights exist at once: a whole zoo's are ~40 GB, and as much again in the download cache
CHUNK = 24


@dataclass(frozen=True)
class Plan:
    """What to build: the zoo file, its stack, the models (empty: all), where to work, a local tree or None."""

    zoo: Path
    stack: str | None = None
    only: tuple[str, ...] = ()
    work: Path = Path("/tmp/harness-impact")
    ppdet_root: Path | None = None
    images: int = 2  # one image leaves some BatchNorm statistics undefined (SSD's weights come out NaN)
    eval_size: int = EVAL_SIZE
    batch: int = BATCH


def _subzoo(raw: dict, names: Iterable[str]) -> dict:
    """The zoo file's data with only `names` (in the zoo's order) and the tables they are in."""
    keep = set(names)
    models = [m for m in raw["models"] if m["name"] in keep]
    return {**raw, "models": models, "tables": {m["table"]: raw["tables"][m["table"]] for m in models}}


def _selected(zoo: Zoo, only: tuple[str, ...]) -> list[str]:
    if not only:
        return [m.name for m in zoo.models]
    zoo.select(list(only))  # an unknown name is a usage error naming it
    return [m.name for m in zoo.models if m.name in only]


@functools.lru_cache(maxsize=4096)
def _function_lines(path: Path) -> frozenset[int] | None:
    """The lines inside the bodies of the file's functions (not their `def` lines, which run at import); None
    when the file defines no function (a module of data and imports: running it at all counts)."""
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return frozenset()
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            start = node.body[0].lineno
            lines.update(n for n in range(start, (node.end_lineno or start) + 1) if n != node.lineno)
    return frozenset(lines) if lines else None


def called(path: Path, executed: Iterable[int]) -> bool:
    """Whether the file's code ran for the model beyond its import (see the module's docstring)."""
    body = _function_lines(path)
    return body is None or not body.isdisjoint(executed)


def traced_files(data_file: Path, root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(files, imported) of one worker's coverage data: paths under `root` with their blob ids."""
    from coverage import CoverageData

    data = CoverageData(basename=str(data_file))
    data.read()
    files: dict[str, str] = {}
    imported: dict[str, str] = {}
    root = root.resolve()
    for name in sorted(data.measured_files()):
        path = Path(name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        into = files if called(path, data.lines(name) or ()) else imported
        into[rel] = source.blob_id(path)
    return files, imported


def config_chain(tree: source.SourceTree, model) -> dict[str, str]:
    """The model's config and its whole `_BASE_` chain, then its slim config and that one's chain, with blob ids."""
    root = tree.root.resolve()
    paths = source.base_chain(tree.config(model), root)
    if (slim := tree.slim_config(model)) is not None:
        paths += source.base_chain(slim, root)
    return {p.relative_to(root).as_posix(): source.blob_id(p) for p in dict.fromkeys(paths)}


def _one_line(text: str) -> str:
    return " ".join((text or "no message").split())[:300]


def _model_entry(tree: source.SourceTree, model, mdir: Path, not_built: str | None) -> ModelImpact:
    """One model's entry from its run directory: the trace, the configs, its status."""
    try:
        configs = config_chain(tree, model)
    except HarnessError:
        configs = {}
    if not_built is not None:
        return ModelImpact(configs=configs, status=f"error: not built: {_one_line(not_built)}")
    rec = read_json(mdir / "result.json") or {}
    files: dict[str, str] = {}
    imported: dict[str, str] = {}
    trace = mdir / TRACE_FILE
    if trace.is_file():
        spec = read_json(mdir / protocol.SPEC) or {}
        files, imported = traced_files(trace, Path(spec.get("ppdet_root") or tree.root))
    seconds = (rec.get("durations") or {}).get("worker")
    if rec.get("status") == "error" or not files:
        err = rec.get("error") or {}
        why = f"{err.get('stage')}: {err.get('message')}" if err else "no trace (the worker did not run)"
        return ModelImpact(configs=configs, files=files, imported=imported, status=f"error: {_one_line(why)}")
    return ModelImpact(configs=configs, files=files, imported=imported, status="traced", seconds=seconds)


def _run_batch(
    plan: Plan, served: Path, names: list[str], run_dir: Path, env: dict[str, str], size: int | None = None
) -> None:
    cmd = [sys.executable, "-m", "harness", "run", "--zoo", str(served), "--out", str(run_dir)]
    cmd += ["--device", "cpu", "--eval-size", str(size or plan.eval_size), "--no-timing", "--threads", "1"]
    cmd += ["--history", str(plan.work / "history.jsonl"), "--resume"]
    cmd += ["--ppdet-root", str(plan.ppdet_root)] if plan.ppdet_root else []
    with (plan.work / "runs.log").open("a") as log:
        subprocess.run([*cmd, *names], env=env, stdout=log, stderr=subprocess.STDOUT, check=False)


def build(plan: Plan, progress: Callable[[int], object] | None = None) -> ImpactMap:
    """The impact map of `plan`'s models; a model that fails is recorded with its error, never fatal."""
    t0 = time.perf_counter()
    raw = yaml.safe_load(plan.zoo.read_text())
    whole = parse_zoo(raw)
    stack, _ = whole.source(plan.stack)
    names = _selected(whole, plan.only)
    zoo = parse_zoo(_subzoo(raw, names))
    plan.work.mkdir(parents=True, exist_ok=True)
    failed: dict[str, str] = {}
    if progress:
        progress(0)
    run_dir = plan.work / "run"
    env = {**os.environ, "HARNESS_CACHE": str(plan.work / "cache"), "HARNESS_STACK": stack, TRACE_ENV: "1"}
    tree = None
    for start in range(0, len(names), CHUNK):
        tree = _chunk(plan, raw, names[start : start + CHUNK], stack, run_dir, env, failed, progress)
    assert tree is not None  # a zoo has a model, and --only names at least one
    models = {m.name: _model_entry(tree, m, run_dir / m.name, failed.get(m.name)) for m in zoo.models}
    return ImpactMap(
        version=VERSION,
        stack=stack,
        paddle=_paddle(run_dir),
        ppdet=_pin(tree, whole.sources[stack]),
        built=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - t0, 1),
        models=models,
    )


def _pin(tree, pin) -> Pin:
    """The tree the map is of. The pinned commit's archive with fewer files than the commit (a trimmed archive,
    as in this project's fixtures) hashes to another tree id, but every file it holds has the pinned commit's
    blob id: the map is then the pin's, found under the pin's tree id, with the tree traced kept beside it."""
    traced = tree.tree or ""
    if pin.tree and tree.commit == pin.commit and traced != pin.tree:
        return Pin(commit=tree.commit, tree=pin.tree, traced_tree=traced)
    return Pin(commit=tree.commit, tree=traced)


def _chunk(
    plan: Plan,
    raw: dict,
    names: list[str],
    stack: str,
    run_dir: Path,
    env: dict[str, str],
    failed: dict[str, str],
    progress: Callable[[int], object] | None,
):
    """Random weights for `names`, served on 127.0.0.1 and traced in batches; then those weights and their
    downloaded copies are deleted (a whole zoo's random weights are ~40 GB, twice over with the cache's copies).
    Returns the source tree the runs used (the served archive, extracted while it is still served)."""
    from harness.nightly.rehearsal import build_mirror, mirror_zoo, serve

    work = plan.work / "chunk"
    zoo = parse_zoo(_subzoo(raw, names))
    mirror = build_mirror(work, zoo, stack, n_images=plan.images, failed=failed)
    ok = [n for n in names if n not in failed]
    with serve(mirror, 0) as base:
        served = work / "served.yaml"
        served_raw = mirror_zoo(parse_zoo(_subzoo(raw, ok)) if ok else zoo, stack, base, mirror)
        served.write_text(yaml.safe_dump(served_raw, allow_unicode=True))
        for i in range(0, len(ok), plan.batch):
            batch = ok[i : i + plan.batch]
            _run_batch(plan, served, batch, run_dir, env)
            if progress:
                progress(len(batch))
        _retry(plan, served, ok, run_dir, env)
        pin = parse_zoo(served_raw).sources[stack]
        tree = (
            source.checkout(plan.ppdet_root, pin) if plan.ppdet_root else source.prepare(pin, root=plan.work / "cache")
        )
    if progress and len(ok) < len(names):
        progress(len(names) - len(ok))
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(plan.work / "cache" / "downloads", ignore_errors=True)
    return tree


def _eval_failed(mdir: Path) -> bool:
    """Whether the model's traced run failed in PaddleDetection's eval (not in fetching or building it)."""
    rec = read_json(mdir / "result.json") or {}
    return rec.get("status") == "error" and (rec.get("error") or {}).get("stage") == "worker"


def _retry(plan: Plan, served: Path, names: list[str], run_dir: Path, env: dict[str, str]) -> None:
    """Trace again, at RETRY_SIZE, the models whose eval failed at the plan's size; a retry that runs replaces the
    failed trace (the spec it leaves records the size), one that fails too leaves the first failure."""
    again = [n for n in names if _eval_failed(run_dir / n)]
    if not again or plan.eval_size >= RETRY_SIZE:
        return
    retry_dir = plan.work / "retry"
    _run_batch(plan, served, again, retry_dir, env, size=RETRY_SIZE)
    for name in again:
        if (retry_dir / name / TRACE_FILE).is_file() and not _eval_failed(retry_dir / name):
            shutil.rmtree(run_dir / name)
            shutil.move(retry_dir / name, run_dir / name)
    shutil.rmtree(retry_dir, ignore_errors=True)


def _paddle(run_dir: Path) -> str | None:
    """The paddle version the traced workers ran with (any result records it)."""
    for path in sorted(run_dir.glob("*/result.json")):
        rec = read_json(path) or {}
        if version := (rec.get("environment") or {}).get("paddle") or rec.get("paddle"):
            return str(version)
    return None


def updated(base: ImpactMap, new: ImpactMap, where: Path) -> ImpactMap:
    """`base` with the entries of `new` (models traced again) in place of its own: the same stack and tree only,
    else a usage error naming both; the cost is the sum of both builds."""
    if (base.stack, base.ppdet.tree) != (new.stack, new.ppdet.tree):
        raise UsageError(
            f"--update {where}: a map of {base.stack} at tree {str(base.ppdet.tree)[:12]}, this build is of "
            f"{new.stack} at tree {str(new.ppdet.tree)[:12]}",
            hint="update a map with models traced on the same stack and PaddleDetection tree",
        )
    models = {**base.models, **new.models}
    return base.model_copy(update={"models": models, "built": new.built, "seconds": base.seconds + new.seconds})


def cost_lines(the_map: ImpactMap) -> list[str]:
    """The build's cost, per model: what the docs state."""
    traced = [m for m in the_map.models.values() if m.status == "traced"]
    worker = [m.seconds for m in traced if m.seconds is not None]
    n = len(the_map.models)
    lines = [
        f"{len(traced)} of {n} models traced in {the_map.seconds:.0f} s ({the_map.seconds / max(n, 1):.0f} s a model)"
    ]
    if worker:
        lines.append(f"traced worker: median {sorted(worker)[len(worker) // 2]:.0f} s, max {max(worker):.0f} s")
    return lines


def as_json(entry: ModelImpact) -> str:
    return json.dumps(entry.model_dump(), indent=1)
