"""Result records: one `result.json` per model per run, written atomically.

A run directory holds one sub-directory per model (`<run>/<model>/result.json`, plus the worker's log,
spec and predictions). A reader sees either no result or a complete one; `harness report` needs nothing
but these files.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from harness.errors import UsageError
from harness.files import atomic_write_json, is_component

SCHEMA = 1
RESULT = "result.json"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def model_dir(run_dir: Path, model: str) -> Path:
    """`<run>/<model>`; a name that is not one plain path component (`..`, `a/b`, absolute) is refused, so no
    record can make the harness write or delete outside its run directory."""
    if not isinstance(model, str) or not is_component(model):
        raise UsageError(f"model name {model!r} is not a plain file name",
                         hint="model names are single path components: letters, digits, '_', '-', '.'")
    return run_dir / model


def write(run_dir: Path, record: dict) -> Path:
    return write_at(model_dir(run_dir, record["model"]) / RESULT, record)


def write_at(path: Path, record: dict) -> Path:
    """Write a record to exactly `path` (rescore rewrites the file it read, whatever the record's fields say)."""
    atomic_write_json(path, {"schema": SCHEMA, **record}, sort_keys=False)  # keep the stats in COCO's order
    return path


def read(run_dirs: list[Path]) -> list[dict]:
    """Every result under the given run directories (or result files), in zoo order."""
    records = []
    for d in run_dirs:
        if not d.exists():
            raise UsageError(f"{d}: no such run directory", hint="pass a directory written by `harness verify`")
        files = [d] if d.is_file() else sorted(d.glob(f"*/{RESULT}"))
        for f in files:
            try:
                rec = json.loads(f.read_text())
            except (OSError, ValueError) as exc:
                raise UsageError(f"{f}: not a readable result: {exc}") from None
            if not isinstance(rec, dict) or rec.get("schema") != SCHEMA or "model" not in rec:
                raise UsageError(f"{f}: not a result record of schema {SCHEMA}")
            records.append(rec)
    if not records:
        raise UsageError(f"no {RESULT} under {', '.join(map(str, run_dirs))}",
                         hint="run `harness verify MODEL --out DIR` first")
    latest: dict[str, dict] = {}
    for rec in records:  # merging shards: one result per model; a model found twice keeps its newest result
        if rec["model"] not in latest or (rec.get("finished") or "") > (latest[rec["model"]].get("finished") or ""):
            latest[rec["model"]] = rec
    return sorted(latest.values(), key=lambda r: (r.get("zoo_index", 1 << 30), r["model"]))
