"""The impact map as the selection reads it: per model, the PaddleDetection files it executed and the configs of
its `_BASE_` chain, each with the git blob id it had on the tree the map was built on.

Why a reader of its own: `harness impact build` writes the map (a traced CPU run per model); the selection only
reads it, and must refuse a map it does not understand rather than guess. The map may gain fields (they are
ignored here); a field renamed or a version other than VERSION is an error naming the file and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.core.errors import UsageError
from harness.core.schema import fields

VERSION: Literal[1] = 1
HINT = "rebuild it with `harness impact build` (this harness reads impact maps of version 1)"
TRACED = "traced"


class _Open(BaseModel):
    """A map record: fields added by newer writers are ignored (never renamed: a missing one is an error)."""

    model_config = ConfigDict(extra="ignore")


class MapTree(_Open):
    """The PaddleDetection tree the map was built on (commit None: a tree not from a known commit)."""

    commit: str | None = None
    tree: str


class ModelImpact(_Open):
    """One model's inputs: `configs` (its config and `_BASE_` chain), `files` (what it executed), path -> blob
    id; `status` "traced", or "error: <why>" (a model whose trace failed: its sets are not to be trusted)."""

    configs: dict[str, str] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)
    status: str

    @field_validator("status")
    @classmethod
    def _status(cls, v: str) -> str:
        if v != TRACED and not v.startswith("error"):
            raise ValueError(f"status {v!r} is neither 'traced' nor 'error: ...'")
        return v

    @property
    def traced(self) -> bool:
        return self.status == TRACED

    def inputs(self) -> dict[str, str]:
        """Every path the model depends on (configs and executed files), path -> blob id."""
        return {**self.files, **self.configs}


class ImpactMap(_Open):
    version: Literal[1]
    stack: str
    paddle: str | None = None
    ppdet: MapTree
    built: str | None = None
    seconds: float | None = None
    models: dict[str, ModelImpact]

    def entry(self, model: str) -> ModelImpact | None:
        return self.models.get(model)

    def traced_paths(self) -> set[str]:
        """Every path some traced model depends on: a changed file outside this set is in no model's set."""
        return {p for m in self.models.values() if m.traced for p in m.inputs()}


def load(path: Path) -> ImpactMap:
    """The map at `path`, or a UsageError naming the file (absent, not JSON, another version, a field missing)."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such impact map", hint="build one with `harness impact build`") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable impact map: {exc}", hint=HINT) from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: not an impact map (a JSON object is expected)", hint=HINT)
    if raw.get("version") != VERSION:
        raise UsageError(f"{path}: impact map version {raw.get('version')!r}, expected {VERSION}", hint=HINT)
    try:
        return ImpactMap.model_validate(raw)
    except ValidationError as exc:
        raise UsageError(f"{path}: not an impact map: {fields(exc, 3)}", hint=HINT) from None
