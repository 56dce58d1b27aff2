"""One writer per model directory, and a record that names the bytes it was scored from.

A holder is a real process (`python -c` taking the claim, or a real `harness verify`); the second writer is
the CLI as a user runs it. Paddle-free except the last test (two real verifies into one --out).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import yaml
from conftest import FASTER, REPO, harness, harness_process, wait_until
from test_trust import _scored_run

HOLD = (
    "import sys; from pathlib import Path; from harness.records.claims import claim\n"
    "with claim(Path(sys.argv[1]), sys.argv[2], 'the test holder'):\n"
    "    print('held', flush=True); sys.stdin.read()\n"
)


def _holder(run, name: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run), name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def _tree(run) -> dict:
    """Every file of a run directory and its bytes (the claims' own lock files aside)."""
    return {
        p.relative_to(run).as_posix(): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


@pytest.mark.numerics
def test_a_second_writer_is_refused_naming_the_directory_and_the_holders_pid(tmp_path):
    """rescore while another process holds the model's directory: exit 2 naming it and the holder's pid,
    nothing written; a holder killed by SIGKILL leaves no claim behind (the OS drops the lock)."""
    run = _scored_run(tmp_path, "m")
    holder = _holder(run, "m")
    before = _tree(run)
    out = harness("rescore", str(run), "--scorer", "pycocotools")
    assert out.returncode == 2, out.stderr[-1500:]
    assert f"{run / 'm'}: process {holder.pid} on" in out.stderr and "the test holder" in out.stderr
    assert _tree(run) == before
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    again = harness("rescore", str(run), "--scorer", "pycocotools")
    assert again.returncode == 1, again.stderr[-1500:]  # scored (a fail verdict), not refused
    assert json.loads((run / "m" / "result.json").read_text())["rescored"]


def test_a_run_takes_every_models_claim_before_writing_anything(tmp_path, cache):
    """`harness run` (and `--resume`) into a directory where one of its models is held: exit 2 before run.json,
    before the source or the dataset is touched."""
    raw = yaml.safe_load((REPO / "zoo.yaml").read_text())
    run = tmp_path / "run"
    holder = _holder(run, raw["models"][1]["name"])
    try:
        for extra in ([], ["--resume"]):
            out = harness("run", "--out", str(run), "--device", "cpu", "--no-timing", *extra, cache=cache)
            assert out.returncode == 2 and f"process {holder.pid}" in out.stderr, out.stderr[-1500:]
            assert not (run / "run.json").exists() and not cache.exists()
    finally:
        holder.communicate("")
    assert holder.returncode == 0


def _scored_with_digest(tmp_path):
    from harness.core.files import digests

    run = _scored_run(tmp_path, "m")
    path = run / "m" / "result.json"
    rec = json.loads(path.read_text())
    rec["predictions_sha256"] = digests({"bbox": run / "m" / "predictions" / "bbox.json"})
    path.write_text(json.dumps(rec))
    return run


@pytest.mark.numerics
def test_report_and_rescore_refuse_a_record_whose_predictions_changed(tmp_path):
    run = _scored_with_digest(tmp_path)
    assert harness("report", str(run)).returncode == 0
    preds = run / "m" / "predictions" / "bbox.json"
    preds.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9], "score": 0.5}]))
    before = _tree(run)
    for argv in (["report", str(run)], ["rescore", str(run)], ["report", str(run), "--html", str(tmp_path / "s")]):
        out = harness(*argv)
        assert out.returncode == 2, (argv, out.stderr[-1500:])
        assert f"its bbox predictions {preds} are not the ones it was scored from" in out.stderr
    assert _tree(run) == before and not (tmp_path / "s").exists()
    preds.unlink()
    out = harness("report", str(run))
    assert out.returncode == 2 and "now unreadable" in out.stderr


def test_the_default_run_directory_of_two_commands_in_one_second_is_not_shared(tmp_path, monkeypatch):
    from harness.commands.options import Path, default_run_dir

    monkeypatch.chdir(tmp_path)
    made = {default_run_dir() for _ in range(3)}
    assert len(made) == 3 and all(p.is_dir() and p.parent == Path("runs") for p in made)


@pytest.mark.stack
def test_two_verifies_into_one_directory_the_second_is_refused_and_the_first_is_whole(served, tmp_path):
    """The README's habit (`--out runs/quick`) twice at once: the second gets exit 2 naming the directory and
    the first's pid while the first's worker runs; the first's record, its weights' sha256, its predictions'
    sha256 and its detections all belong together."""
    import hashlib

    make, cache, _ = served
    zoo, run = make(tmp_path), tmp_path / "quick"
    args = ["verify", FASTER, "--zoo", str(zoo), "--out", str(run), "--json"]
    args += ["--device", "cpu", "--eval-size", "320", "--no-timing", "--subset", "2"]
    first = harness_process(*args, cache=cache, stdout=subprocess.PIPE, text=True)
    assert wait_until(lambda: (run / FASTER / "worker.log").exists() or first.poll() is not None)
    second = harness(*args, cache=cache)
    out, _ = first.communicate(timeout=900)
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"{run / FASTER}: process {first.pid} on" in second.stderr
    assert first.returncode == 1, out[-2000:]  # random weights: a fail verdict, measured
    rec = json.loads((run / FASTER / "result.json").read_text())
    preds = run / FASTER / rec["predictions"]["bbox"]
    assert rec["predictions_sha256"]["bbox"] == hashlib.sha256(preds.read_bytes()).hexdigest()
    assert rec["detections"]["bbox"] == len(json.loads(preds.read_text()))
    assert rec["artifacts"]["weights"]["sha256"] == rec["weight_check"]["sha256"]
