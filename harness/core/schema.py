"""The one base of every record that crosses a boundary (the worker protocol, result records, run.json, history
lines, audits): a field nobody defined is an error, never silently kept or dropped; and validation errors as
one line for messages."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class Strict(BaseModel):
    """A record that crosses a boundary: a field nobody defined is an error, never silently kept or dropped."""

    model_config = ConfigDict(extra="forbid")


def fields(exc: ValidationError, limit: int = 5) -> str:
    """A validation error as `field.path: message; ...` for one-line error messages."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:limit])
