"""The impact map: per model, the PaddleDetection files it executed and the configs it read, with their git blob
ids, on one source tree of one stack (`harness impact build` writes it, `harness impact show` and the nightly's
selection read it).

Why a record of its own: the selection (`--changed-since`) decides which models to skip from it, so a map of
another shape or version must be refused, never half-read. Paths are relative to the PaddleDetection root; blob
ids are git's (`git hash-object`), so a map compares directly against any commit of PaddleDetection's history.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationError

from harness.core.errors import HarnessError
from harness.core.files import atomic_write_json, read_json
from harness.core.schema import Strict, fields

# Version 2 stores each path and its blob id once (`paths`), and a model's files as indices into that table: a
# whole zoo's map lists ~300 paths per model, mostly the same ones (ppdet imports every module at start-up), and
# written out per model it is ~10 MB. Version 1 (one {path: blob} mapping per model and kind) is read as well.
VERSION = 2
KINDS = ("configs", "files", "imported")
_BLOB = re.compile(r"^[0-9a-f]{40}$")
_STATUS = re.compile(r"^(traced|error: .+)$")


def _blob(value: str) -> str:
    if not _BLOB.match(value):
        raise ValueError(f"not a git blob id: {value!r}")
    return value


def _status(value: str) -> str:
    if not _STATUS.match(value) or "\n" in value:
        raise ValueError(f"status must be 'traced' or 'error: <one line>', not {value!r}")
    return value


Blobs = dict[str, Annotated[str, AfterValidator(_blob)]]


class Pin(Strict):
    """The PaddleDetection source the map was built on: its commit (None for a tree without one) and tree id.
    `traced_tree`: the tree actually traced when it was a subset of `tree`'s files (a trimmed archive of the
    pinned commit: the same blob ids for every file it has), so the map is found under the pin's tree id."""

    commit: str | None
    tree: str
    traced_tree: str | None = None


class ModelImpact(Strict):
    """One model's inputs. `files`: the tree's Python files whose code ran for it at run time (a function of theirs
    was called, or a module without functions ran); `imported`: the files only imported (their module level ran,
    none of their functions): ppdet imports every module at start-up, so a change there reaches the model only
    through module-level code."""

    configs: Blobs = Field(default_factory=dict)  # the config, its `_BASE_` chain, a slim config and its chain
    files: Blobs = Field(default_factory=dict)
    imported: Blobs = Field(default_factory=dict)
    status: Annotated[str, AfterValidator(_status)]
    seconds: float | None = None  # the traced worker (import, build, weights, eval), as its result records it


class ImpactMap(Strict):
    version: int
    stack: str
    paddle: str | None
    ppdet: Pin
    built: str  # ISO time, UTC
    seconds: float  # the whole build: random weights, synthetic sets, the traced runs
    models: dict[str, ModelImpact]

    def model(self, name: str) -> ModelImpact:
        if name not in self.models:
            near = ", ".join(sorted(n for n in self.models if name.split("_")[0] in n)[:5])
            raise HarnessError(
                f"{name}: not in this impact map ({len(self.models)} models, tree {self.ppdet.tree[:12]})",
                hint=f"similar names: {near}" if near else "build the map with this model: harness impact build",
            )
        return self.models[name]


def default_path(stack: str, tree: str, root: Path = Path("reports") / "impact") -> Path:
    """`reports/impact/<stack>-<tree id, 12>.json`: one map per stack, keyed by the tree it was built on."""
    return root / f"{stack}-{tree[:12]}.json"


def read(path: Path) -> ImpactMap:
    """The map at `path`; another version or shape is refused with the file and the fix named."""
    raw = read_json(path)
    if raw is None:
        raise HarnessError(f"{path}: no impact map there (or not JSON)", hint="harness impact build --out PATH")
    version = raw.get("version") if isinstance(raw, dict) else None
    if version not in (1, VERSION):
        raise HarnessError(
            f"{path}: impact map version {version!r}; this harness reads versions 1 and {VERSION}",
            hint="rebuild it with this harness: harness impact build",
        )
    try:
        data = _from_v1(raw) if version == 1 else _expanded(raw)
        return ImpactMap.model_validate(data)
    except (ValidationError, _Shape) as exc:
        why = fields(exc) if isinstance(exc, ValidationError) else str(exc)
        raise HarnessError(f"{path}: not an impact map: {why}", hint="harness impact build") from None


def write(path: Path, the_map: ImpactMap) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, _compact(the_map), sort_keys=False)


class _Shape(ValueError):
    """The version 2 path table or an index into it is malformed."""


def _from_v1(raw: dict) -> dict:
    """Version 1 kept the in-memory shape on disk: only the version changes."""
    return {**raw, "version": VERSION}


def _expanded(raw: dict) -> dict:
    """Version 2 on disk -> the in-memory shape: each model's indices replaced by {path: blob id}."""
    table = raw.get("paths")
    if not isinstance(table, list) or not all(
        isinstance(row, list) and len(row) == 2 and all(isinstance(x, str) for x in row) for row in table
    ):
        raise _Shape("paths: expected a list of [path, blob id] pairs")
    models = raw.get("models")
    if not isinstance(models, dict):
        raise _Shape("models: expected a mapping")
    out = {}
    for name, entry in models.items():
        if not isinstance(entry, dict):
            raise _Shape(f"models.{name}: expected a mapping")
        expanded = dict(entry)
        for kind in KINDS:
            indices = entry.get(kind, [])
            if not isinstance(indices, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(table) for i in indices
            ):
                raise _Shape(f"models.{name}.{kind}: expected indices into paths (0 to {len(table) - 1})")
            expanded[kind] = {table[i][0]: table[i][1] for i in indices}
        out[name] = expanded
    return {k: v for k, v in raw.items() if k != "paths"} | {"models": out}


def _compact(the_map: ImpactMap) -> dict:
    """The in-memory map as version 2 writes it: every (path, blob id) once, sorted; models as indices."""
    blobs: dict[str, str] = {}
    for name, entry in the_map.models.items():
        for kind in KINDS:
            for path, blob in getattr(entry, kind).items():
                if blobs.setdefault(path, blob) != blob:  # one tree has one blob per path
                    raise HarnessError(f"{name}: {path} has blob {blob} here and {blobs[path]} in another model")
    order = sorted(blobs)
    index = {p: i for i, p in enumerate(order)}
    raw = the_map.model_dump(exclude_none=False)
    models = {}
    for name, entry in raw["models"].items():
        models[name] = {**entry, **{kind: sorted(index[p] for p in entry[kind]) for kind in KINDS}}
    raw["ppdet"] = {k: v for k, v in raw["ppdet"].items() if v is not None or k != "traced_tree"}
    head = {k: raw[k] for k in ("stack", "paddle", "ppdet", "built", "seconds")}
    return {"version": VERSION, **head, "paths": [[p, blobs[p]] for p in order], "models": models}
