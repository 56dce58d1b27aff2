"""The history of runs: one JSON line per (run, model), and regressions against the last passing run.

Why a file of lines: the nightly appends a handful of records a day, people diff it, CI caches or commits
it; no database to run. Runs are comparable only under the same conditions (stack, device kind, subset,
eval size): a 50-image CPU smoke run never flags a regression against a full-val GPU run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.errors import UsageError
from harness.files import atomic_write_bytes
from harness.schedule import seconds_of

HISTORY_ENV = "HARNESS_HISTORY"
HINT = "repair or remove that line (each line is one model of one run, as `harness run` writes it)"
FPS_DROP = 0.10  # an fps below 90 % of the last passing run's is a regression


def default_path() -> Path:
    return Path(os.environ.get(HISTORY_ENV, "reports/history.jsonl"))


def conditions(rec: dict) -> dict:
    ds = rec.get("dataset") or {}
    subset = ds.get("subset") or {}
    timing = rec.get("timing") or {}
    return {
        "stack": rec.get("stack"),
        "device": rec.get("device"),
        "subset": [subset.get("n"), subset.get("seed")] if subset else None,
        "eval_size": ds.get("eval_size"),
        "backend": timing.get("backend"),
    }


def entry(rec: dict) -> dict:
    """What the history keeps of a result."""
    timing = rec.get("timing") or {}
    return {
        "run_id": rec.get("run_id"),
        "finished": rec.get("finished"),
        "model": rec["model"],
        "status": rec["status"],
        "conditions": conditions(rec),
        "metrics": {
            k: {f: v.get(f) for f in ("measured", "documented", "tolerance", "status")}
            for k, v in (rec.get("metrics") or {}).items()
        },
        "fps": timing.get("fps"),
        "ppdet_commit": (rec.get("ppdet") or {}).get("commit"),
        "paddle": rec.get("paddle"),
        "seconds": seconds_of(rec),
    }


def load(path: Path) -> list[dict]:
    """The history's entries; a line that is not one (a hand edit, a file cut short) is a usage error naming
    the line, never a traceback, and nothing is rewritten."""
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise UsageError(f"{path}:{n}: not a history entry: {exc}", hint=HINT) from None
        if not (isinstance(e, dict) and {"run_id", "model", "status", "conditions", "metrics"} <= set(e)):
            raise UsageError(f"{path}:{n}: not a history entry (run_id, model, status, conditions, metrics)", hint=HINT)
        out.append(e)
    return out


def append(path: Path, records: list[dict]) -> list[dict]:
    """Add these results (replacing any earlier line of the same run and model); returns the history."""
    new = [entry(r) for r in records]
    keys = {(e["run_id"], e["model"]) for e in new}
    kept = [e for e in load(path) if (e["run_id"], e["model"]) not in keys]
    history = sorted(kept + new, key=lambda e: (e.get("finished") or "", e["model"]))
    atomic_write_bytes(path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in history).encode())
    return history


def regressions(history: list[dict], records: list[dict], fps_drop: float = FPS_DROP) -> list[str]:
    """Each current result against the last earlier *passing* run of the same model under the same
    conditions: an AP that moved beyond the metric's tolerance, or fps below (1 - fps_drop) of it."""
    out = []
    for rec in records:
        cur = entry(rec)
        earlier = [
            e
            for e in history
            if e["model"] == cur["model"]
            and e["conditions"] == cur["conditions"]
            and e["status"] == "pass"
            and e["run_id"] != cur["run_id"]
            and (e.get("finished") or "") <= (cur.get("finished") or "")
        ]
        if not earlier:
            continue
        base = earlier[-1]
        for name, m in cur["metrics"].items():
            was = (base["metrics"].get(name) or {}).get("measured")
            if was is None or m.get("measured") is None or m.get("tolerance") is None:
                continue
            if abs(m["measured"] - was) > m["tolerance"] + 1e-9:
                out.append(
                    f"{cur['model']}: {name} {m['measured']:.2f} vs {was:.2f} in run {base['run_id']} "
                    f"(last pass; tolerance {m['tolerance']:g})"
                )
        if cur["fps"] and base.get("fps") and cur["fps"] < base["fps"] * (1 - fps_drop):
            out.append(
                f"{cur['model']}: fps {cur['fps']:.2f} vs {base['fps']:.2f} in run {base['run_id']} "
                f"(last pass; more than {fps_drop:.0%} slower)"
            )
    return out


def recent(history: list[dict], model: str, last: int = 5) -> list[dict]:
    return [e for e in history if e["model"] == model][-last:]
