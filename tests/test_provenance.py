"""What changes a number is in the record: the threads, `-o` overrides, the content `--resume` keys on; and the
source tree the worker imports is never written to. Against the rehearsal's mirror, a real worker."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from conftest import FASTER, harness

pytestmark = pytest.mark.stack

QUICK = ["--device", "cpu", "--eval-size", "320", "--no-timing"]


def test_threads_overrides_and_content_keyed_resume(served, rehearsal, tmp_path):
    make, cache, _ = served
    zoo, root, run = make(tmp_path), tmp_path / "coco", tmp_path / "run"
    mirror = rehearsal.work / "mirror"
    for archive in (mirror / "zips" / "val2017.zip", mirror / "annotations" / "annotations_trainval2017.zip"):
        with zipfile.ZipFile(archive) as zf:  # the test's own files: a COCO root given with --data
            zf.extractall(root)
    ann = root / "annotations" / "instances_val2017.json"
    args = ["run", FASTER, "--zoo", str(zoo), "--out", str(run), "--data", str(root), "--threads", "1"]
    args += ["-o", "EvalReader.batch_size=1", "--history", str(tmp_path / "h.jsonl"), *QUICK]

    first = harness(*args, cache=cache, drop=("PYTHONDONTWRITEBYTECODE",))  # bytecode written, as on a user's machine
    assert first.returncode == 1, first.stderr[-3000:]  # random weights: measured, a fail verdict
    rec = json.loads((run / FASTER / "result.json").read_text())
    assert rec["threads"] == 1 and rec["device"] == "cpu"
    assert rec["overrides"] == {"EvalReader": {"batch_size": 1}}
    assert rec["dataset"]["annotations_sha256"] == hashlib.sha256(ann.read_bytes()).hexdigest()
    report = (run / "report.md").read_text()
    assert "with 1 CPU thread" in report and f"{FASTER}: modified evaluation (-o EvalReader.batch_size=1)" in report
    tree = Path(rec["ppdet"]["root"])
    assert not list(tree.rglob("__pycache__"))  # the worker's bytecode lives in the cache, not in the tree
    assert list((cache / "pycache").rglob("*.pyc"))

    kept = harness(*args, "--resume", cache=cache)
    assert kept.returncode == 1 and "complete result of the same inputs kept" in kept.stderr, kept.stderr[-2000:]
    assert json.loads((run / FASTER / "result.json").read_text())["finished"] == rec["finished"]

    coco = json.loads(ann.read_text())
    coco["annotations"][0]["bbox"] = [1, 1, 5, 5]  # same path, other content: the result is not of these inputs
    ann.write_text(json.dumps(coco))
    again = harness(*args, "--resume", cache=cache)
    assert again.returncode == 1 and "same inputs kept" not in again.stderr, again.stderr[-2000:]
    redone = json.loads((run / FASTER / "result.json").read_text())
    assert redone["dataset"]["annotations_sha256"] == hashlib.sha256(ann.read_bytes()).hexdigest()
    assert redone["inputs_key"] != rec["inputs_key"] and redone["finished"] >= rec["finished"]
