"""`harness bench` on the rehearsal zoo: both backends on the default stack, every field present and positive,
the exported model's predictions scored against the dygraph model's; verify's timing lands in result.json."""

from __future__ import annotations

import json

import pytest
from conftest import FASTER, harness

from harness.model.timing import STAGES, TOTAL

pytestmark = pytest.mark.stack

TINY = ["--warmup", "1", "--iters", "3", "--min-seconds", "1", "--sample", "2"]


def _positive_timing(b: dict) -> None:
    assert b["fps"] > 0 and b["iterations"] >= 3 and b["seconds"] >= 1
    for stage in (*STAGES, TOTAL):
        lat = b["latency_ms"][stage]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"] and lat["mean"] > 0
    assert b["peak_memory"]["mb"] > 0 and b["config"]["precision"] == "fp32"


def test_bench_times_both_backends_and_scores_the_exported_model(served, tmp_path):
    make, cache, _ = served
    out = tmp_path / "run"
    proc = harness(
        "bench",
        FASTER,
        "--zoo",
        str(make(tmp_path)),
        "--out",
        str(out),
        "--eval-size",
        "320",
        "--device",
        "cpu",
        "--threads",
        "2",
        "--json",
        *TINY,
        cache=cache,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    timing = json.loads(proc.stdout)
    assert timing == json.loads((out / FASTER / "timing.json").read_text())
    assert set(timing["backends"]) == {"dygraph", "inference"}
    for b in timing["backends"].values():
        _positive_timing(b)
    assert timing["backends"]["dygraph"]["config"]["threads"] == 2
    inf = timing["backends"]["inference"]["config"]
    assert inf["export_seconds"] > 0 and inf["model_files"][1] == "model.pdiparams" and inf["threads"] == 2
    assert {"mkldnn", "memory_optim", "fallbacks"} <= set(inf)  # what was used, and what failed first
    assert timing["backend"] == "inference" and timing["fps"] == timing["backends"]["inference"]["fps"]
    m = timing["method"]
    assert (m["warmup"], m["min_iters"], m["min_seconds"], m["sample"], m["batch_size"]) == (1, 3, 1.0, 2, 1)
    assert m["clock"] == "time.perf_counter" and len(timing["sample_ids"]) == 2
    assert timing["device"] == "cpu" and timing["device_name"] and timing["eval_size"] == [320, 533]
    fid = timing["fidelity"]
    assert fid["images"] == 2 and fid["inference"]["box_ap"]["delta"] == pytest.approx(0, abs=0.01)
    assert fid["inference"]["box_match_rate"] >= 0.99  # export did not change the model


def test_verify_fills_the_fps_column_with_the_full_timing_record(rehearsal):
    for name in ("faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco", "mask_rcnn_res2net50_vb_26w_4s_fpn_2x_coco"):
        rec = json.loads((rehearsal.run_dir / name / "result.json").read_text())
        timing = rec["timing"]
        assert timing["backend"] == "dygraph" and timing["fps"] > 0
        _positive_timing(timing["backends"]["dygraph"])
        assert timing["method"]["min_iters"] == 3 and timing["method"]["warmup"] == 1
    report = (rehearsal.run_dir / "report.md").read_text()
    fps_cells = [row.split("|")[5].strip() for row in report.splitlines() if row.startswith("| Res2Net")]
    assert len(fps_cells) == 3 and all(float(c) > 0 for c in fps_cells)
    assert "Inf time (fps) = dygraph backend on cpu" in report


def test_trt_on_a_cpu_is_refused_clearly(served, tmp_path):
    make, cache, _ = served
    proc = harness(
        "bench",
        FASTER,
        "--zoo",
        str(make(tmp_path)),
        "--out",
        str(tmp_path / "run"),
        "--eval-size",
        "320",
        "--device",
        "cpu",
        "--backend",
        "trt-fp16",
        *TINY,
        cache=cache,
    )
    assert proc.returncode == 3 and "--backend trt-fp16 needs a GPU" in proc.stderr
