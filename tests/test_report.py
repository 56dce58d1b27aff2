"""The markdown table from result records alone: the seed's columns, then measured, Δ, status."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.report import SEED, markdown
from harness.results import write


def _record(model="m_a", status="pass", box=40.5, mask=None, **extra) -> dict:
    metrics = {"box_ap": {"measured": box, "documented": 40.6, "delta": round(box - 40.6, 6), "tolerance": 0.3,
                          "status": status}}
    if mask is not None:
        metrics["mask_ap"] = {"measured": mask, "documented": 38.1, "delta": round(mask - 38.1, 6), "tolerance": 0.5,
                              "status": status}
    return {"model": model, "zoo_index": 0, "status": status, "documented": {"box_ap": 40.6, "mask_ap": 38.1 if mask
                                                                             is not None else None},
            "metrics": metrics, "device": "gpu", "device_name": "NVIDIA H100", "paddle": "3.3.1",
            "ppdet": {"commit": "666f597f"}, "dataset": {"subset": None, "eval_size": None},
            "table": {"backbone": "Res2Net50-FPN", "type": "Mask" if mask is not None else "Faster",
                      "images_per_gpu": 2, "schedule": "1x", "weights_url": "https://x/w.pdparams",
                      "config_url": "https://x/c.yml"}, **extra}


def test_table_has_the_seed_columns_then_what_was_measured():
    text = markdown([_record(), _record("m_b", "fail", 41.2, 37.0, zoo_index=1)])
    header, _, first, second = text.splitlines()[:4]
    assert [c.strip() for c in header.strip("|").split("|")] == [*SEED, "measured box AP", "measured mask AP", "Δ",
                                                                 "status"]
    cells = [c.strip() for c in first.strip("|").split("|")]
    assert cells == ["Res2Net50-FPN", "Faster", "2", "1x", "-", "40.6", "-", "[model](https://x/w.pdparams)",
                     "[config](https://x/c.yml)", "40.50", "-", "box -0.1", "pass"]
    assert second.split("|")[-3].strip() == "box +0.6 / mask -1.1" and second.split("|")[-2].strip() == "fail"
    assert "measured on gpu (NVIDIA H100), paddle 3.3.1, PaddleDetection 666f597f" in text


def test_notes_say_what_makes_numbers_incomparable():
    rec = _record(dataset={"subset": {"n": 50, "seed": 0}, "eval_size": [320, 533]}, notice="REHEARSAL: random",
                  status="error", error={"stage": "weights", "message": "weights do not fit the model\n  more"})
    text = markdown([rec])
    assert "subset of 50 images (seed 0)" in text and "evaluated at 320 px" in text
    assert "REHEARSAL: random" in text and "error in weights: weights do not fit the model" in text


def test_report_command_reads_results_and_refuses_empty_dirs(tmp_path):
    write(tmp_path / "run", _record())
    write(tmp_path / "run", _record("m_b", zoo_index=1))
    out = subprocess.run([sys.executable, "-m", "harness", "report", str(tmp_path / "run"), "--out",
                          str(tmp_path / "r.md")], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == (tmp_path / "r.md").read_text()
    assert out.stdout.count("| Res2Net50-FPN") == 2
    (tmp_path / "empty").mkdir()
    out = subprocess.run([sys.executable, "-m", "harness", "report", str(tmp_path / "empty")], capture_output=True,
                         text=True)
    assert out.returncode == 2 and "no result.json" in out.stderr


@pytest.mark.parametrize("content", ["{not json", json.dumps({"model": "x"})])
def test_a_damaged_result_is_a_clear_error(tmp_path, content):
    (tmp_path / "run" / "m").mkdir(parents=True)
    (tmp_path / "run" / "m" / "result.json").write_text(content)
    out = subprocess.run([sys.executable, "-m", "harness", "report", str(tmp_path / "run")], capture_output=True,
                         text=True)
    assert out.returncode == 2 and "result.json" in out.stderr
