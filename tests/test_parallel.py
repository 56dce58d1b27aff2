"""`--parallel K`: one model evaluated as K slices of the images, one worker each, merged and scored once.
The merged predictions must be the single worker's, detection for detection, and so must the 24 stats; a
failing slice fails the model with that slice's log, and nothing partial is scored."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from conftest import FASTER, MASK, harness

pytestmark = pytest.mark.stack

QUICK = ["--device", "cpu", "--eval-size", "320", "--no-timing", "--threads", "1", "--json"]


def verify(zoo, out, *extra, cache):
    proc = harness("verify", MASK, "--zoo", str(zoo), "--out", str(out), *QUICK, *extra, cache=cache)
    return proc, (json.loads(proc.stdout) if proc.stdout.startswith("{") else None)


def _predictions(run, rec) -> dict[str, list]:
    return {k: json.loads((run / MASK / p).read_text()) for k, p in rec["predictions"].items()}


def test_two_slices_give_one_workers_predictions_and_stats(served, tmp_path):
    make, cache, _ = served
    zoo = make(tmp_path)
    one, rec1 = verify(zoo, tmp_path / "one", cache=cache)
    two, rec2 = verify(zoo, tmp_path / "two", "--parallel", "2", cache=cache)
    assert one.returncode == two.returncode == 1, two.stderr[-3000:]  # random weights: a fail, not an error
    assert rec2["stats"] == rec1["stats"] and set(rec2["stats"]) == {"bbox", "segm"}
    assert rec2["metrics"] == rec1["metrics"] and rec2["detections"] == rec1["detections"]
    assert rec1["detections"]["bbox"] > 0 and rec1["detections"]["mask"] > 0  # there was something to merge
    assert _predictions(tmp_path / "two", rec2) == _predictions(tmp_path / "one", rec1)
    units = rec2["parallel"]["units"]
    assert rec2["parallel"]["slices"] == 2 and [u["slice"] for u in units] == ["1/2", "2/2"]
    assert [u["images"] for u in units] == [2, 1] and all(u["threads"] == 1 for u in units)
    assert "parallel" not in rec1 or rec1["parallel"] is None
    for i in (1, 2):  # each slice evaluated its own images, with its own log
        spec = json.loads((tmp_path / "two" / MASK / "slices" / str(i) / "spec.json").read_text())
        ids = {img["id"] for img in json.loads(Path(spec["annotations"]).read_text())["images"]}
        assert len(ids) == (2 if i == 1 else 1)
        assert (tmp_path / "two" / MASK / "slices" / str(i) / "worker.log").stat().st_size > 0
        assert (spec["timing"] is None) or i == 1  # timing, when asked, only in the first slice


def test_a_failing_slice_fails_the_model_with_its_log_and_nothing_is_scored(served, rehearsal, tmp_path):
    """An image of the second slice that does not decode: ppdet raises in that slice's worker only."""
    make, cache, _ = served
    coco = tmp_path / "coco"
    mirror = rehearsal.work / "mirror"
    for z in (mirror / "zips" / "val2017.zip", mirror / "annotations" / "annotations_trainval2017.zip"):
        with zipfile.ZipFile(z) as zf:
            zf.extractall(coco)
    images = json.loads((coco / "annotations" / "instances_val2017.json").read_text())["images"]
    second = sorted(images, key=lambda i: i["id"])[1]  # slice 2 of 2 holds the ids at odd positions
    (coco / "val2017" / second["file_name"]).write_bytes(b"not an image")
    proc, rec = verify(make(tmp_path), tmp_path / "run", "--parallel", "2", "--data", str(coco), cache=cache)
    assert proc.returncode == 3, proc.stderr[-3000:]
    err = rec["error"]
    assert err["stage"] == "worker" and err["message"].startswith("slice 2/2: PaddleDetection's eval raised")
    assert "Traceback" in err["log_tail"]
    assert rec["stats"] == {} and rec["metrics"] == {} and not rec.get("predictions")
    assert not (tmp_path / "run" / MASK / "predictions").exists()  # nothing merged


def test_more_slices_than_images_is_a_usage_error(served, tmp_path):
    make, cache, _ = served
    proc, _ = verify(make(tmp_path), tmp_path / "run", "--parallel", "4", cache=cache)
    assert proc.returncode == 2 and "--parallel 4: must be between 1 and the 3 images to evaluate" in proc.stderr


@pytest.mark.skipif(
    os.environ.get("HARNESS_STACK", "current") != "current",
    reason="the run's work queue is the harness's own logic: the default stack only (CI time)",
)
def test_the_run_queue_fails_only_the_broken_model_and_resumes_per_unit(served, tmp_path):
    """`harness run --parallel 2`: four units (two models × two slices) over two CPU slots. The Mask model's
    checkpoint is truncated: its slices fail, it is an error, nothing of it is scored; the Faster model is
    scored. Then the state a kill leaves after the Faster model's first slice (its result and second slice
    gone): `--resume` keeps the finished slice as it is and runs only the missing one."""
    make, cache, _ = served
    zoo, run = make(tmp_path, None, "corrupt"), tmp_path / "run"
    cmd = [
        "run",
        "--zoo",
        str(zoo),
        "--out",
        str(run),
        FASTER,
        MASK,
        "--device",
        "cpu",
        "--eval-size",
        "320",
        "--no-timing",
        "--parallel",
        "2",
        "--history",
        str(tmp_path / "h.jsonl"),
    ]
    first = harness(*cmd, cache=cache)
    assert first.returncode == 3, first.stderr[-3000:]
    broken = json.loads((run / MASK / "result.json").read_text())
    assert broken["status"] == "error" and broken["error"]["stage"] == "weights"
    assert broken["error"]["message"].startswith(("slice 1/2: ", "slice 2/2: "))
    assert "not a readable paddle checkpoint" in broken["error"]["message"] and broken["stats"] == {}
    assert not (run / MASK / "predictions").exists()
    good = json.loads((run / FASTER / "result.json").read_text())
    assert good["status"] == "fail" and good["parallel"]["slices"] == 2 and good["stats"]["bbox"]

    kept = run / FASTER / "slices" / "1" / "worker.json"
    before = kept.read_bytes(), kept.stat().st_mtime_ns
    (run / FASTER / "result.json").unlink()
    shutil.rmtree(run / FASTER / "slices" / "2")
    again = harness(*cmd, "--resume", cache=cache)
    assert again.returncode == 3, again.stderr[-3000:]
    assert (kept.read_bytes(), kept.stat().st_mtime_ns) == before  # the finished slice was not run again
    assert f"{FASTER}: unit 1/2 kept (--resume)" in again.stderr
    resumed = json.loads((run / FASTER / "result.json").read_text())
    assert resumed["stats"] == good["stats"] and resumed["detections"] == good["detections"]
    assert [bool(u.get("kept")) for u in resumed["parallel"]["units"]] == [True, False]
