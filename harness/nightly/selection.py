"""Which models tonight must run: those whose inputs changed since the last night each passed (`--changed-since`).

Why: most nights PaddleDetection changes a few files and nothing else moves; re-running the whole zoo to
re-check three models is the nightly's largest cost. A model's result can only change if a file it executes, a
config of its `_BASE_` chain, the module-level code of a file it only imports, the stack (paddle, the harness, the
device and its driver), its dataset or the zoo file changed. The impact map says which files a model executes and
which it only imports: ppdet imports every module at start-up, so a change inside a function a model never calls
does not reach it, while a change of module-level code (a statement, a decorator, a default) may. Where the map
cannot be trusted the choice is conservative: a changed file under `ppdet/` that no model executed (code a CPU
trace never reaches, a new module) selects every model; a model without a traced map entry, one that never
passed, or one whose last passing tree is not at hand runs. `rotate` bounds any model's age in nights. Each
decision carries typed reasons, which the plan prints and the report keeps; a skipped model is carried over,
never counted as tonight's pass.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from harness.records.environment import LABELS, NightEnv
from harness.records.impact import ImpactMap, ModelImpact
from harness.records.results import HistoryEntry

Listing = Mapping[str, str]
Content = Callable[[str, str], bytes | None]  # (path, blob id) -> the file's bytes, None when not at hand
TRACED = "traced"

# Environment fields whose change selects every model, and the reason kind it is (dataset: the model's own).
EVERYTHING = {
    "paddle": "stack",
    "harness_commit": "harness",
    "device_name": "device",
    "driver": "device",
    "cuda": "device",
    "zoo_sha256": "zoo",
}
PER_MODEL = {"dataset_sha256": "dataset"}
SHOW = 3  # changed paths named in one reason


@dataclass(frozen=True)
class Reason:
    """Why a model runs. `kind`: never-passed, no-map-entry, trace-error, tree-unknown, stack, harness, device,
    zoo, dataset, file, config, imported, untraced, rotation; `detail`: the same in words."""

    kind: str
    detail: str

    def text(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass(frozen=True)
class Decision:
    """One model's choice: run it (with its reasons) or carry it over from night `since` (its last pass) whose
    inputs had `digest` (the sha256 of its files' blob ids and the night's environment)."""

    model: str
    run: bool
    reasons: list[Reason] = field(default_factory=list)
    since: str | None = None
    since_finished: str | None = None
    digest: str | None = None

    def line(self) -> str:
        if self.run:
            return f"{self.model}: run ({'; '.join(r.text() for r in self.reasons)})"
        return f"{self.model}: unchanged since {self.since} (inputs {str(self.digest)[:12]})"

    def as_json(self) -> dict:
        return {
            "model": self.model,
            "run": self.run,
            "reasons": [{"kind": r.kind, "detail": r.detail} for r in self.reasons],
            "since": self.since,
            "digest": self.digest,
        }


@dataclass(frozen=True)
class Tonight:
    """What tonight runs on: its environment (paddle, harness commit, device, driver, zoo file; `ppdet_tree`),
    its PaddleDetection files, and each model's dataset digest where known (model -> annotations sha256)."""

    env: NightEnv
    files: Listing
    datasets: Mapping[str, str | None] = field(default_factory=dict)
    stack: str | None = None
    device: str | None = None  # the device kind (gpu, cpu): a pass on another kind is no reference


def select(
    models: list[str],
    impact: ImpactMap | None,
    history: list[HistoryEntry],
    tonight: Tonight,
    listing: Callable[[str], Listing | None],
    *,
    since: str | None = None,
    rotate: int | None = None,
    content: Content | None = None,
) -> list[Decision]:
    """A decision per model, in the given order. `since`: a night (a run id of the history: each model's
    reference is its last pass at or before it) or a PaddleDetection tree id (the files are compared with that
    tree's; the environment with the model's last pass); None: each model's last pass. `listing(tree)`: that
    tree's files, None when not at hand. `rotate`: run a model whose last run is `rotate` nights old or more.
    `content(path, blob)`: a file's bytes, to tell a change of module-level code from one inside functions (None:
    every change of an imported file counts)."""
    past = [e for e in history if _comparable(e, tonight)]
    nights: dict[str, str] = {}
    for e in history:  # a night's time: when its last model finished
        nights[e.run_id] = max(nights.get(e.run_id, ""), e.finished or "")
    tree_ref = since if since is not None and since not in nights else None
    if since is not None and tree_ref is None:
        past = [e for e in past if (e.finished or "") <= nights[since]]
    cache: dict[str, Listing | None] = {}

    def files_of(tree: str | None) -> Listing | None:
        if tree is None:
            return None
        if tree not in cache:
            cache[tree] = listing(tree)
        return cache[tree]

    traced = _executed(impact)
    module_level = _ModuleLevel(content)
    out = []
    for name in models:
        ref = _last_pass(past, name)
        reasons = _reasons(name, ref, impact, tonight, files_of(tree_ref or (ref.env.ppdet_tree if ref else None)))
        before = files_of(tree_ref or ref.env.ppdet_tree) if ref is not None else None
        if ref is not None and not reasons and before is not None and impact is not None:
            reasons = module_level.changed(impact.models[name], before, tonight.files)
        if ref is not None and not reasons:
            reasons = _untraced(tonight.files, before, traced)
        if rotate is not None and not reasons and ref is not None:
            age = _age(history, name, tonight)
            if age >= rotate:
                reasons = [Reason("rotation", f"last ran {age} nights ago (--rotate {rotate})")]
        digest = _digest(name, impact, tonight)
        if reasons or ref is None:
            out.append(Decision(name, True, reasons or [Reason("never-passed", "no passing night")]))
        else:
            out.append(Decision(name, False, [], ref.run_id, ref.finished, digest))
    return out


def _comparable(e: HistoryEntry, tonight: Tonight) -> bool:
    c = e.conditions
    return (tonight.stack is None or c.stack == tonight.stack) and (
        tonight.device is None or c.device == tonight.device
    )


def _last_pass(past: list[HistoryEntry], model: str) -> HistoryEntry | None:
    passes = [e for e in past if e.model == model and e.status == "pass"]
    return max(passes, key=lambda e: e.finished or "") if passes else None


def _reasons(
    model: str, ref: HistoryEntry | None, impact: ImpactMap | None, tonight: Tonight, before: Listing | None
) -> list[Reason]:
    if ref is None:
        return [Reason("never-passed", "no passing night under the same conditions")]
    out = []
    for name, kind in EVERYTHING.items():
        a, b = _norm(getattr(ref.env, name)), _norm(getattr(tonight.env, name))
        if b is not None and a != b:  # unknown tonight (no GPU to ask): not compared; unknown then: changed
            out.append(Reason(kind, f"{LABELS[name]} {a or 'not recorded'} → {b or 'not recorded'}"))
    a, b = ref.env.dataset_sha256, tonight.datasets.get(model)
    if b is not None and a != b:
        out.append(Reason("dataset", f"annotations {str(a)[:12]} → {b[:12]}"))
    entry = impact.models.get(model) if impact is not None else None
    if entry is None:
        out.append(Reason("no-map-entry", "the impact map has no entry for it"))
    elif entry.status != TRACED:
        out.append(Reason("trace-error", entry.status))
    if before is None:
        tree = ref.env.ppdet_tree
        out.append(Reason("tree-unknown", f"the files of tree {str(tree)[:12]} (night {ref.run_id}) are not at hand"))
    if out:
        return out
    assert entry is not None and before is not None
    for kind, paths in (("config", entry.configs), ("file", entry.files)):
        moved = [p for p in paths if before.get(p) != tonight.files.get(p)]
        if moved:
            out.append(Reason(kind, _paths(moved)))
    return out


def _norm(value: str | None) -> str | None:
    """A value as compared: paddle is recorded as `3.3.1` by the worker and `paddlepaddle-gpu 3.3.1` by run.json."""
    return value.split()[-1] if value else None


def _executed(impact: ImpactMap | None) -> set[str]:
    """Every path some traced model executed or read as a config: a changed file outside it is in no model's set
    (a file only imported by every model counts as in none: its functions may run on a GPU only)."""
    if impact is None:
        return set()
    return {p for m in impact.models.values() if m.status == TRACED for p in _inputs(m)}


def _inputs(entry: ModelImpact) -> dict[str, str]:
    return {**entry.files, **entry.configs}


class _ModuleLevel:
    """Whether an imported-only file's module-level code changed: its syntax tree with every function's body
    dropped (decorators, defaults, class bodies and module statements kept), compared between the two blobs."""

    def __init__(self, content: Content | None) -> None:
        self.content = content
        self.seen: dict[tuple[str, str | None, str | None], bool] = {}

    def changed(self, entry: ModelImpact, before: Listing, after: Listing) -> list[Reason]:
        moved = [p for p in entry.imported if before.get(p) != after.get(p) and self._differs(p, before, after)]
        return [Reason("imported", _paths(moved) + " (module-level code of a file it imports)")] if moved else []

    def _differs(self, path: str, before: Listing, after: Listing) -> bool:
        key = (path, before.get(path), after.get(path))
        if key not in self.seen:
            a, b = key[1], key[2]
            if self.content is None or a is None or b is None:
                self.seen[key] = True  # added, removed, or nothing to read: counted
            else:
                sa, sb = _skeleton(self.content(path, a)), _skeleton(self.content(path, b))
                self.seen[key] = sa is None or sb is None or sa != sb
        return self.seen[key]


def _skeleton(data: bytes | None) -> str | None:
    """A module's syntax tree without its functions' bodies (None: not at hand or not Python)."""
    import ast

    if data is None:
        return None
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.body = [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def _untraced(after: Listing, before: Listing | None, traced: set[str]) -> list[Reason]:
    """A file under ppdet/ changed, added or removed that no model's trace holds: every model may execute it."""
    if before is None:
        return []
    moved = [
        p
        for p in sorted(set(before) | set(after))
        if p.startswith("ppdet/") and p not in traced and before.get(p) != after.get(p)
    ]
    return [Reason("untraced", _paths(moved) + " (in no model's trace)")] if moved else []


def _age(history: list[HistoryEntry], model: str, tonight: Tonight) -> int:
    """Nights (of the history under tonight's conditions, tonight included) since the model last ran."""
    past = [e for e in history if _comparable(e, tonight)]
    last = max((e.finished or "" for e in past if e.model == model), default="")
    return 1 + len({e.run_id for e in past if (e.finished or "") > last})


def _digest(model: str, impact: ImpactMap | None, tonight: Tonight) -> str:
    """The sha256 of what the model's result depends on tonight: its files' blob ids, its dataset, the stack."""
    entry = impact.models.get(model) if impact is not None else None
    paths = sorted({**_inputs(entry), **entry.imported}) if entry is not None else []
    doc = {
        "files": {p: tonight.files.get(p) for p in paths},
        "dataset": tonight.datasets.get(model),
        "env": {k: _norm(getattr(tonight.env, k)) for k in EVERYTHING},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _paths(paths: list[str]) -> str:
    more = f" and {len(paths) - SHOW} more" if len(paths) > SHOW else ""
    return ", ".join(paths[:SHOW]) + more


def counts(decisions: list[Decision]) -> dict[str, int]:
    """Selected and carried models, and the selected ones per reason kind (the plan's summary)."""
    out = {"run": sum(d.run for d in decisions), "carried": sum(not d.run for d in decisions)}
    for d in decisions:
        for kind in {r.kind for r in d.reasons}:
            out[kind] = out.get(kind, 0) + 1
    return out
