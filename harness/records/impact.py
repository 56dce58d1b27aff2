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

VERSION = 1
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
    """The PaddleDetection source the map was built on: its commit (None for a tree without one) and tree id."""

    commit: str | None
    tree: str


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
    if version != VERSION:
        raise HarnessError(
            f"{path}: impact map version {version!r}; this harness reads version {VERSION}",
            hint="rebuild it with this harness: harness impact build",
        )
    try:
        return ImpactMap.model_validate(raw)
    except ValidationError as exc:
        raise HarnessError(f"{path}: not an impact map: {fields(exc)}", hint="harness impact build") from None


def write(path: Path, the_map: ImpactMap) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, the_map.model_dump(), sort_keys=False)
