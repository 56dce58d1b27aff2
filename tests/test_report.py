"""The markdown table from result records alone: the seed's columns, then measured, Δ, status."""

from __future__ import annotations

import json
import re

import pytest
from conftest import harness, results

from harness.publish import view
from harness.publish.report import SEED
from harness.publish.report import markdown as render
from harness.records.results import write


def markdown(records) -> str:
    """The report of these records alone (no history): what `harness report RUN` prints."""
    return render(view.of(records))


def _record(model="m_a", status="pass", box=40.5, mask=None, **extra) -> dict:
    metrics = {
        "box_ap": {
            "metric": "box_ap",
            "measured": box,
            "documented": 40.6,
            "delta": round(box - 40.6, 6),
            "tolerance": 0.3,
            "status": status,
            "reason": "r",
        }
    }
    if mask is not None:
        metrics["mask_ap"] = {
            "metric": "mask_ap",
            "measured": mask,
            "documented": 38.1,
            "delta": round(mask - 38.1, 6),
            "tolerance": 0.5,
            "status": status,
            "reason": "r",
        }
    return {
        "model": model,
        "run_id": "r1",
        "started": "2026-11-25T00:00:00+00:00",
        "zoo_index": 0,
        "status": status,
        "documented": {"box_ap": 40.6, **({"mask_ap": 38.1} if mask is not None else {})},
        "metrics": metrics,
        "device": "gpu",
        "device_name": "NVIDIA H100",
        "paddle": "3.3.1",
        "ppdet": {"commit": "666f597f"},
        "dataset": {"subset": None, "eval_size": None},
        "table": {
            "backbone": "Res2Net50-FPN",
            "type": "Mask" if mask is not None else "Faster",
            "images_per_gpu": 2,
            "schedule": "1x",
            "weights_url": "https://x/w.pdparams",
            "config_url": "https://x/c.yml",
        },
        **extra,
    }


def test_table_has_the_seed_columns_then_what_was_measured():
    text = markdown(results(_record(), _record("m_b", "fail", 41.2, 37.0, zoo_index=1)))
    header, _, first, second = text.splitlines()[:4]
    assert [c.strip() for c in header.strip("|").split("|")] == [
        *SEED,
        "measured box AP",
        "measured mask AP",
        "Δ",
        "status",
    ]
    cells = [c.strip() for c in first.strip("|").split("|")]
    assert cells == [
        "Res2Net50-FPN",
        "Faster",
        "2",
        "1x",
        "-",
        "40.6",
        "-",
        "[model](https://x/w.pdparams)",
        "[config](https://x/c.yml)",
        "40.50",
        "-",
        "box -0.1",
        "pass",
    ]
    assert second.split("|")[-3].strip() == "box +0.6 / mask -1.1" and second.split("|")[-2].strip() == "fail"
    assert "measured on gpu (NVIDIA H100), paddle 3.3.1, PaddleDetection 666f597f" in text
    cpu = markdown(
        results(_record(device="cpu", device_name="x86", threads=1, overrides={"EvalReader": {"batch_size": 4}}))
    )
    assert "measured on cpu (x86) with 1 CPU thread, paddle 3.3.1" in cpu
    assert "m_a: modified evaluation (-o EvalReader.batch_size=4): not the config's own settings" in cpu
    dirty = markdown(results(_record(ppdet={"commit": "x", "dirty": True, "untracked": ["paddle.py"]})))
    assert "m_a: PaddleDetection checkout with uncommitted changes and untracked importable files (paddle.py)" in dirty


def test_notes_say_what_makes_numbers_incomparable():
    rec = _record(
        dataset={
            "subset": {"n": 50, "seed": 0, "source": "instances_val2017.json", "image_ids": [1]},
            "eval_size": [320, 533],
        },
        notice="REHEARSAL: random",
        status="error",
        error={"stage": "weights", "message": "weights do not fit the model\n  more"},
        geometry={"config": [800, 1333], "eval": [320, 533], "changed_by": "eval_size"},
    )
    sized = _record("m_c", geometry={"config": [608, 608], "eval": [320, 320], "changed_by": "input_size"})
    text = markdown(results(rec, sized))
    assert "subset of 50 images (seed 0)" in text
    assert "evaluated at 320x533 (the config's: 800x1333): reduced for a smoke test" in text
    assert "m_c: evaluated at the documented input size 320x320 (the config's: 608x608)." in text
    assert "REHEARSAL: random" in text and "error in weights: weights do not fit the model" in text


def test_report_command_reads_results_and_refuses_empty_dirs(tmp_path):
    write(tmp_path / "run", _record())
    write(tmp_path / "run", _record("m_b", zoo_index=1))
    out = harness("report", str(tmp_path / "run"), "--out", str(tmp_path / "r.md"))
    assert out.returncode == 0 and out.stdout == (tmp_path / "r.md").read_text()
    assert out.stdout.count("| Res2Net50-FPN") == 2
    (tmp_path / "empty").mkdir()
    out = harness("report", str(tmp_path / "empty"))
    assert out.returncode == 2 and "no result.json" in out.stderr


@pytest.mark.parametrize("content", ["{not json", json.dumps({"model": "x"})])
def test_a_damaged_result_is_a_clear_error(tmp_path, content):
    (tmp_path / "run" / "m").mkdir(parents=True)
    (tmp_path / "run" / "m" / "result.json").write_text(content)
    out = harness("report", str(tmp_path / "run"))
    assert out.returncode == 2 and "result.json" in out.stderr


def _laid_out(model: str, table: str, layout: dict, labels: dict, documented: dict, metrics: dict) -> dict:
    return {
        "model": model,
        "status": "fail",
        "documented": documented,
        "metrics": metrics,
        "table": {
            "name": table,
            "layout": layout,
            "labels": labels,
            "weights_url": "https://x/w.pdparams",
            "config_url": "https://x/c.yml",
        },
    }


def test_each_table_is_rendered_in_its_own_layout():
    from harness.zoo.manifest import load_zoo

    seed = load_zoo()[0].tables["res2net"].model_dump()
    rtdetr = {
        "columns": [
            "Model",
            "Input shape",
            "AP val",
            "AP val 50",
            "T4 TensorRT FP16(FPS)",
            "Pretrained Model",
            "config",
        ],
        "metrics": {"AP val": "box_ap", "AP val 50": "box_ap50"},
        "weights": "Pretrained Model",
        "config": "config",
        "fps": ["T4 TensorRT FP16(FPS)"],
    }
    m = {"measured": 0.5, "documented": 46.5, "delta": -46.0, "tolerance": 0.3, "status": "fail"}
    recs = [
        _laid_out(
            "faster",
            "res2net",
            seed,
            {"Backbone": "Res2Net50-FPN", "Type": "Faster", "Image/gpu": "2", "Lr schd": "1x"},
            {"box_ap": 40.6},
            {"box_ap": m},
        ),
        _laid_out(
            "rtdetr_r18vd_6x_coco",
            "rtdetr",
            rtdetr,
            {"Model": "RT-DETR-R18", "Input shape": "640", "T4 TensorRT FP16(FPS)": "217"},
            {"box_ap": 46.5, "box_ap50": 63.8},
            {"box_ap": m},
        ),
    ]
    text = markdown(results(*recs))
    assert "### res2net" in text and "### rtdetr" in text
    seed_table, rtdetr_table = text.split("### rtdetr")
    header = [c.strip() for c in seed_table.split("\n")[2].strip("|").split("|")]
    assert header == [*SEED, "measured box AP", "measured mask AP", "Δ", "status"]
    lines = [line for line in rtdetr_table.splitlines() if line.startswith("|")]
    assert [c.strip() for c in lines[0].strip("|").split("|")] == [
        *rtdetr["columns"],
        "measured AP val",
        "measured AP val 50",
        "Δ",
        "status",
    ]
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:7] == [
        "RT-DETR-R18",
        "640",
        "46.5",
        "63.8",
        "217",
        "[model](https://x/w.pdparams)",
        "[config](https://x/c.yml)",
    ]  # a documented speed stays the README's
    assert cells[-4:] == ["0.50", "-", "box -46.0", "fail"]  # AP50 documented but not measured here


def test_a_record_that_does_not_fit_the_schema_is_refused_by_readers_and_writers(tmp_path):
    """One schema (results.Result) for every writer and reader: a record missing a field, or carrying one
    nobody defined, is named at the boundary instead of being half-read."""
    from harness.core.errors import HarnessError

    bad = tmp_path / "run" / "m_a"
    bad.mkdir(parents=True)
    (bad / "result.json").write_text(json.dumps({"schema": 1, "model": "m_a", "status": "pass"}))
    out = harness("report", str(tmp_path / "run"))
    assert out.returncode == 2 and "not a result record of schema 2" in out.stderr and "run_id" in out.stderr
    with pytest.raises(HarnessError, match=r"internal error, result not written: .*surprise"):
        write(tmp_path / "run2", _record(surprise=1))
    assert not (tmp_path / "run2" / "m_a" / "result.json").exists()


def test_hostile_record_text_is_escaped_in_every_output(tmp_path):
    """Record text is input: a control character in a message, a message that starts a spreadsheet formula,
    a `|` or newline in a label. Every output escapes it for its own syntax, and the files get the umask's
    mode (not mkstemp's private 0600)."""
    import csv
    import os
    import xml.etree.ElementTree as ET

    hostile = _record(
        "m_x",
        status="error",
        error={"stage": "worker", "message": '=HYPERLINK("http://evil")\x01\x1b[31m\nsecond line'},
    )
    hostile["table"]["backbone"] = "R50 | evil\nrow"
    hostile["table"]["config_url"] = "javascript:alert(1)"
    write(tmp_path / "run", _record())
    write(tmp_path / "run", hostile | {"zoo_index": 1})
    out, site = tmp_path / "out", str(tmp_path / "site")
    done = harness(
        "report",
        str(tmp_path / "run"),
        "--outputs",
        str(out),
        "--html",
        site,
        preexec_fn=lambda: os.umask(0o027),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for where in (out, tmp_path / "site"):
        suite = ET.parse(where / "junit.xml").getroot()  # parses: no raw control character in it
        error = suite.find(".//testcase[@classname='m_x']/error")
        assert error is not None and error.get("message").startswith('=HYPERLINK("http://evil")\\x01\\x1b[31m')
        with (where / "results.csv").open(newline="") as f:
            cells = {r["model"]: r for r in csv.DictReader(f)}
        assert cells["m_x"]["error"].startswith("'=HYPERLINK")  # shown as text, never run as a formula
        table = [line for line in (where / "report.md").read_text().splitlines() if line.startswith("|")]
        cells_per_row = [len(re.findall(r"(?<!\\)\|", line)) for line in table]
        assert len(table) == 4 and len(set(cells_per_row)) == 1, table
        assert "R50 \\| evil row" in table[3] and "javascript:" not in table[3]
        for name in ("junit.xml", "results.csv", "report.md"):
            assert oct((where / name).stat().st_mode & 0o777) == oct(0o640), name
