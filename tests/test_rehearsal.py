"""The README's first command, end to end for all three models: loopback HTTP → cache → source extraction →
real ppdet eval on small synthetic images → scoring → verdict → result.json → markdown."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, harness, ppdet_tree

from harness.score.scoring import STATS

pytestmark = pytest.mark.stack

ZOO = yaml.safe_load((REPO / "zoo.yaml").read_text())
NAMES = [m["name"] for m in ZOO["models"]]


def _results(run_dir: Path) -> dict[str, dict]:
    return {name: json.loads((run_dir / name / "result.json").read_text()) for name in NAMES}


def test_rehearsal_runs_the_whole_pipeline(rehearsal):
    out = rehearsal.out
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "REHEARSAL: random-initialised weights" in out.stdout and "AP ≈ 0 is the expected" in out.stdout
    assert out.stdout.rstrip().endswith("OK: exit 0")
    zoo = yaml.safe_load((rehearsal.work / "zoo.yaml").read_text())
    urls = [m["weights"]["url"] for m in zoo["models"]] + [zoo["dataset"]["images"]["url"]]
    assert all(u.startswith("http://127.0.0.1:") for u in urls)
    lock = json.loads((rehearsal.work / "zoo.lock").read_text())["artifacts"]
    assert set(urls) <= set(lock) and len(lock) == 5  # 3 weights, 2 dataset archives
    src = next(iter(zoo["sources"].values()))
    assert src["tree"] == ppdet_tree(src["commit"])  # the source is pinned by the content the mirror serves
    report = (rehearsal.run_dir / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| Res2Net")]
    assert len(rows) == 3 and all(row.rstrip(" |").endswith("fail") for row in rows)
    assert "REHEARSAL" in report and "evaluated at 320x533 (the config's: 800x1333)" in report
    for name in ("junit.xml", "results.csv", "ap_per_run.png", "ap_vs_fps.png"):
        assert (rehearsal.run_dir / name).stat().st_size > 0
    assert len((rehearsal.work / "history.jsonl").read_text().splitlines()) == 3
    first = json.loads((rehearsal.run_dir / NAMES[0] / "result.json").read_text())
    assert "harness verify" in out.stdout and "harness run" in out.stdout and "--resume" in out.stdout
    assert first["run_id"] == rehearsal.run_dir.name  # verified once, kept by `run --resume`


def test_every_result_record_is_complete(rehearsal):
    lock = json.loads((rehearsal.work / "zoo.lock").read_text())["artifacts"]
    zoo = yaml.safe_load((rehearsal.work / "zoo.yaml").read_text())
    stack, pin = next(iter(zoo["sources"].items()))
    for name, rec in _results(rehearsal.run_dir).items():
        mask = name.startswith("mask")
        assert rec["status"] == "fail" and rec["error"] is None
        assert set(rec["metrics"]) == ({"box_ap", "mask_ap"} if mask else {"box_ap"})
        for m in rec["metrics"].values():
            assert m["measured"] == pytest.approx(0, abs=1.0) and m["documented"] > 38
            assert m["delta"] == pytest.approx(m["measured"] - m["documented"]) and m["tolerance"] in (0.3, 0.5)
        assert set(rec["stats"]) == ({"bbox", "segm"} if mask else {"bbox"})
        assert all(list(s) == list(STATS) for s in rec["stats"].values())
        w = rec["artifacts"]["weights"]
        assert lock[w["url"]] == {"sha256": w["sha256"], "size": w["size"]}
        assert rec["artifacts"]["source_archive_sha256"] and len(rec["artifacts"]["dataset"]) == 2
        assert rec["ppdet"]["commit"] == pin["commit"] and rec["stack"] == stack
        assert rec["paddle"] == pin["paddle"] and rec["device"] == "cpu" and rec["device_name"]
        assert rec["dataset"]["num_images"] == 3 and rec["dataset"]["eval_size"] == [320, 533]
        assert rec["weight_check"]["ok"] and rec["weight_check"]["matched"] > 400
        # calibrated random weights emit real boxes (and masks): the prediction path is exercised
        assert rec["detections"]["bbox"] > 0 and (not mask or rec["detections"]["mask"] > 0)
        assert {"fetch", "worker", "score", "total"} <= set(rec["durations"])
        assert {"import", "build", "load_weights", "eval"} <= set(rec["durations"]["worker_stages"])
        assert rec["started"] <= rec["finished"] and "REHEARSAL" in rec["notice"]


def test_report_rerenders_the_same_table_from_the_files(rehearsal):
    out = harness("report", str(rehearsal.run_dir))
    assert out.returncode == 0
    assert out.stdout == (rehearsal.run_dir / "table.md").read_text()
    assert (rehearsal.run_dir / "report.md").read_text().startswith(out.stdout)  # + history, plots


def test_scores_equal_pycocotools_on_the_real_predictions(rehearsal):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    name = NAMES[1]
    rec = _results(rehearsal.run_dir)[name]
    for kind, iou in (("bbox", "bbox"), ("mask", "segm")):
        preds = rehearsal.run_dir / name / rec["predictions"][kind]
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(rec["dataset"]["annotations"])
            ev = COCOeval(gt, gt.loadRes(str(preds)), iou)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert [rec["stats"][iou][s] for s in STATS] == list(ev.stats)


def test_rescore_recomputes_every_stat_from_the_stored_predictions(rehearsal, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(rehearsal.run_dir, copy)
    before = _results(copy)
    assert all(r["scorer"]["name"] == "faster-coco-eval" for r in before.values())
    out = harness("rescore", str(copy), "--scorer", "pycocotools")
    assert out.returncode == 1, out.stderr  # random weights: every verdict is a fail
    after = _results(copy)
    for name in NAMES:
        assert after[name]["scorer"]["name"] == "pycocotools" and after[name]["rescored"]
        for iou, stats in before[name]["stats"].items():
            assert after[name]["stats"][iou] == pytest.approx(stats, abs=1e-12)
        assert after[name]["status"] == before[name]["status"]
    assert out.stdout.count("| Res2Net") == 3
