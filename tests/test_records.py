"""The typed records read what the dict-based harness wrote: a result.json, run.json and history.jsonl written by
harness e0b3784 (the rehearsal of 2026-11-30, before results were typed; tests/data/records-e0b3784) are parsed
and written back with every value they had. The old files are the reference, not the new reader's idea of them."""

from __future__ import annotations

import json

from conftest import REPO

from harness.records import history, results

OLD = REPO / "tests" / "data" / "records-e0b3784"


def _same_or_added_null(old: object, new: object, where: str = "") -> list[str]:
    """Where `new` differs from `old`, other than a key `old` lacked whose new value is null (an unset field)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = [f"{where}.{k}: lost" for k in old if k not in new]
        out += [f"{where}.{k}: added {new[k]!r}" for k in new if k not in old and new[k] is not None]
        return out + [d for k in old if k in new for d in _same_or_added_null(old[k], new[k], f"{where}.{k}")]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in _same_or_added_null(a, b, f"{where}[{i}]")
        ]
    return [] if old == new and type(old) is type(new) else [f"{where}: {old!r} -> {new!r}"]


def test_a_result_written_before_the_typed_record_reads_and_writes_back_unchanged(tmp_path):
    path = next((OLD / "run").glob("*/result.json"))
    old = json.loads(path.read_text())
    rec = results.read([path])[0]
    assert rec.measured("mask_ap") == old["metrics"]["mask_ap"]["measured"] and rec.fps == old["timing"]["fps"]
    assert rec.reduced_eval_size == old["dataset"]["eval_size"] and rec.table.layout is not None
    assert old["schema"] == 1 and rec.as_json()["schema"] == results.SCHEMA == 2  # schema 2 only added a status
    old = {**old, "schema": 2}
    assert _same_or_added_null(old, rec.as_json()) == []
    results.write_at(tmp_path / "result.json", rec)
    assert _same_or_added_null(old, json.loads((tmp_path / "result.json").read_text())) == []
    assert _same_or_added_null({"a": 1}, {"a": 1.0}) and _same_or_added_null({"a": 1}, {"b": 1})  # the check bites


def test_run_json_and_history_lines_written_before_their_schemas_read(tmp_path):
    meta = json.loads((OLD / "run" / results.RUN).read_text())
    run = results.RunRecord.load(OLD / "run" / results.RUN)
    assert run is not None and _same_or_added_null(meta, run.model_dump()) == []
    lines = [json.loads(line) for line in (OLD / "history.jsonl").read_text().splitlines()]
    entries = history.load(OLD / "history.jsonl")
    # version 1 lines (no `version`): paddle and the PaddleDetection commit move into the night's environment,
    # every other key and value as the old writer wrote it
    for line, e in zip(lines, entries, strict=True):
        moved = {k: line.pop(k) for k in ("paddle", "ppdet_commit")}
        assert e.version == 2 and e.env.paddle == moved["paddle"] == "3.3.1"
        assert e.env.ppdet_commit == moved["ppdet_commit"] == "666f597fd00d3157e84dd9fb2dd3f40bf9918ebc"
        assert _same_or_added_null(line, e.model_dump(exclude={"version", "env"})) == []
    history.append(tmp_path / "h.jsonl", [])  # nothing: an empty store
    (tmp_path / "h.jsonl").write_text((OLD / "history.jsonl").read_text())
    history.append(tmp_path / "h.jsonl", [])  # an old store is rewritten in today's version, nothing lost
    assert history.load(tmp_path / "h.jsonl") == entries
    assert all(json.loads(x)["version"] == 2 for x in (tmp_path / "h.jsonl").read_text().splitlines())
