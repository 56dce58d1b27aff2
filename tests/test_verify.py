"""`harness verify` against the rehearsal's mini-zoo: strict weights, zero detections, timeouts, devices."""

from __future__ import annotations

import json

import pytest
from conftest import FASTER, harness

pytestmark = pytest.mark.stack


def verify(zoo_path, out, *extra, cache):
    proc = harness(
        "verify",
        FASTER,
        "--zoo",
        str(zoo_path),
        "--out",
        str(out),
        "--eval-size",
        "320",
        "--device",
        "cpu",
        "--json",
        "--no-timing",
        *extra,
        timeout=600,
        cache=cache,
    )
    rec = json.loads(proc.stdout) if proc.stdout.startswith("{") else None
    return proc, rec


@pytest.mark.parametrize(
    "variant, expected",
    [
        ("prefixed", ["455 missing, 455 unexpected, 0 mis-shaped; 0 match", "prefix 'model.'"]),
        ("missing", ["1 missing, 0 unexpected, 0 mis-shaped"]),
        (
            "reshaped",
            [
                "0 missing, 0 unexpected, 1 mis-shaped",
                "backbone.res1.conv1.conv.weight file [64, 2, 7, 7] vs model [64, 3, 7, 7]",
            ],
        ),
    ],
)
def test_weights_that_do_not_fit_can_never_yield_an_ap(served, tmp_path, variant, expected):
    make, cache, keys = served
    proc, rec = verify(make(tmp_path, variant), tmp_path / "run", cache=cache)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert rec["status"] == "error" and rec["error"]["stage"] == "weights"
    for text in expected:
        assert text in rec["error"]["message"]
    if variant == "missing":
        assert keys[-1] in rec["error"]["message"]
    assert rec["metrics"] == {} and rec["stats"] == {} and rec["weight_check"]["ok"] is False
    assert not list((tmp_path / "run" / FASTER).glob("predictions/*.json"))  # eval never ran
    on_disk = json.loads((tmp_path / "run" / FASTER / "result.json").read_text())
    assert on_disk["status"] == "error"


def test_zero_detections_is_ap_zero_and_a_fail_not_a_crash(served, tmp_path):
    make, cache, _ = served
    proc, rec = verify(make(tmp_path), tmp_path / "run", "-o", "BBoxPostProcess.nms.score_threshold=0.999", cache=cache)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert rec["status"] == "fail" and rec["error"] is None
    # ppdet writes at most a score-0 placeholder per image when NMS keeps nothing
    preds = json.loads((tmp_path / "run" / FASTER / rec["predictions"]["bbox"]).read_text())
    assert len(preds) <= 3 and all(p["score"] == 0 for p in preds)
    assert rec["metrics"]["box_ap"]["measured"] == 0.0
    assert rec["stats"]["bbox"]["AP"] == 0.0


def test_a_worker_past_its_timeout_is_killed_and_recorded(served, tmp_path):
    make, cache, _ = served
    proc, rec = verify(make(tmp_path), tmp_path / "run", "--timeout", "1", cache=cache)
    assert proc.returncode == 3
    assert rec["error"]["stage"] == "worker" and "timed out after 1 s" in rec["error"]["message"]


def test_gpu_asked_of_a_cpu_build_is_a_clear_error(served, tmp_path):
    make, cache, _ = served
    proc, rec = verify(make(tmp_path), tmp_path / "run", "--device", "gpu", cache=cache)
    assert proc.returncode == 3
    assert "--device gpu" in rec["error"]["message"] and "GPU build" in rec["error"]["message"]


def test_unknown_model_and_bad_opt_are_usage_errors(served, tmp_path):
    make, cache, _ = served
    bad = harness("verify", "faster_rcnn", "--zoo", str(make(tmp_path)))
    assert bad.returncode == 2 and f"did you mean: {FASTER}" in bad.stderr
    proc, _ = verify(make(tmp_path), tmp_path / "run", "-o", "nonsense", cache=cache)
    assert proc.returncode == 2 and "expected KEY=VALUE" in proc.stderr
