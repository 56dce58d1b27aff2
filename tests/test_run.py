"""`harness run` on the rehearsal's mini-zoo: a broken model never loses the others, a killed run resumes
without re-running what finished, shards merge into the unsharded report, and every output is produced."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from conftest import FASTER, harness, harness_process, wait_until, workers_of

from harness.publish import plots, view
from harness.records.history import load
from harness.records.results import RUN, RunRecord, read

pytestmark = pytest.mark.stack

NAMES = [FASTER, "mask_rcnn_res2net50_vb_26w_4s_fpn_2x_coco", "mask_rcnn_res2net50_vd_26w_4s_fpn_2x_coco"]
QUICK = ["--device", "cpu", "--eval-size", "320", "--subset", "1", "--no-timing", "-q"]


def result(run_dir, name):
    return json.loads((run_dir / name / "result.json").read_text())


@pytest.fixture(scope="module")
def full_run(served, tmp_path_factory):
    """A run SIGKILLed after its first model finished, then resumed: the reference full run of this module."""
    make, cache, _ = served
    tmp = tmp_path_factory.mktemp("killed")
    zoo, run_dir = make(tmp), tmp / "run"
    cmd = ["run", "--zoo", str(zoo), "--out", str(run_dir), "--history", str(tmp / "history.jsonl"), *QUICK]
    proc = harness_process(*cmd, cache=cache, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = run_dir / NAMES[0] / "result.json"
    wait_until(lambda: first.exists() or proc.poll() is not None, 600)
    assert first.exists(), "the first model never finished"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = {n: (run_dir / n / "result.json").exists() for n in NAMES}
    # the orphaned worker notices its parent died and leaves (worker.py: PR_SET_PDEATHSIG)
    wait_until(lambda: not workers_of(run_dir), 30)
    orphans = workers_of(run_dir)
    before = first.read_bytes(), first.stat().st_mtime_ns
    resumed = harness(
        "run",
        "--zoo",
        str(zoo),
        "--out",
        str(run_dir),
        "--resume",
        "--history",
        str(tmp / "history.jsonl"),
        *QUICK,
        cache=cache,
    )
    return {
        "dir": run_dir,
        "tmp": tmp,
        "zoo": zoo,
        "cache": cache,
        "killed_at": killed_at,
        "orphans": orphans,
        "first_before": before,
        "resumed": resumed,
    }


def test_sigkill_then_resume_gives_every_model_exactly_one_complete_result(full_run):
    run_dir, first = full_run["dir"], full_run["dir"] / NAMES[0] / "result.json"
    assert full_run["killed_at"][NAMES[0]] and not full_run["killed_at"][NAMES[2]]
    assert full_run["orphans"] == []  # the killed run's worker died with it
    assert full_run["resumed"].returncode == 1, full_run["resumed"].stderr[-2000:]  # random weights: fail
    assert (first.read_bytes(), first.stat().st_mtime_ns) == full_run["first_before"]  # not re-run
    for name in NAMES:
        rec = result(run_dir, name)
        assert rec["status"] == "fail" and rec["finished"] and rec["run_id"] == run_dir.name
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["counts"] == {"pass": 0, "fail": 3, "error": 0} and len(meta["resumed"]) == 1
    assert meta["zoo_sha256"] and meta["harness"] and meta["environment"]["python"]
    assert [e.model for e in load(full_run["tmp"] / "history.jsonl")] == sorted(NAMES)


def test_the_run_publishes_markdown_junit_csv_history_and_plots(full_run):
    from junitparser import JUnitXml
    from PIL import Image

    run_dir = full_run["dir"]
    report = (run_dir / "report.md").read_text()
    assert report.count("| Res2Net") == 3 and "## Tonight" in report and "- new failures (3):" in report  # first night
    suite = next(iter(JUnitXml.fromfile(str(run_dir / "junit.xml"))))
    assert (suite.tests, suite.failures, suite.errors) == (5, 5, 0)
    csv_lines = (run_dir / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and csv_lines[0].startswith("run_id,model,status")
    for png in ("ap_per_run.png", "ap_vs_fps.png"):
        with Image.open(run_dir / png) as im:
            assert im.format == "PNG" and im.size[0] > 500
    night = view.of(read([run_dir]), load(full_run["tmp"] / "history.jsonl"))
    drawn = plots.ap_per_run(night, full_run["tmp"] / "check.png")
    assert drawn == {NAMES[0]: ["box_ap"], NAMES[1]: ["box_ap", "mask_ap"], NAMES[2]: ["box_ap", "mask_ap"]}
    # each history line keeps the night's environment: the record's part and run.json's part
    meta = RunRecord.load(run_dir / RUN)
    assert meta is not None
    for e in load(full_run["tmp"] / "history.jsonl"):
        env = e.env
        assert (
            e.version == 2 and env.paddle and env.ppdet_commit and env.ppdet_tree and env.zoo_sha256 == meta.zoo_sha256
        )
        assert env.harness_commit == meta.harness_git_sha and env.device_name
        assert result(run_dir, e.model)["architecture"] in ("FasterRCNN", "MaskRCNN")


def test_a_corrupt_checkpoint_is_that_models_error_and_the_others_finish(served, tmp_path):
    make, cache, _ = served
    zoo = make(tmp_path)
    raw = zoo.read_text().replace(f"/models/{NAMES[1]}.pdparams", "/variants/corrupt.pdparams")
    zoo.write_text(raw)  # the second model's weights: a truncated file (made by the `served` fixture)
    summary = tmp_path / "summary.md"
    out = harness(
        "run",
        "--zoo",
        str(zoo),
        "--out",
        str(tmp_path / "run"),
        "--history",
        str(tmp_path / "h.jsonl"),
        *QUICK,
        cache=cache,
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert out.returncode == 3, out.stderr[-2000:]
    broken = result(tmp_path / "run", NAMES[1])
    assert broken["status"] == "error" and "not a readable paddle checkpoint" in broken["error"]["message"]
    assert broken["error"]["log_tail"] is not None and broken["metrics"] == {}
    assert result(tmp_path / "run", NAMES[0])["status"] == "fail"
    assert result(tmp_path / "run", NAMES[2])["status"] == "fail"
    report = (tmp_path / "run" / "report.md").read_text()
    assert report.count("| Res2Net") == 3 and "error in weights: " in report
    assert summary.read_text() == report  # the job summary gets the same markdown


def test_shards_merge_into_the_unsharded_report(full_run):
    zoo, cache, tmp = full_run["zoo"], full_run["cache"], full_run["tmp"]
    for i in (1, 2):
        out = harness(
            "run", "--zoo", str(zoo), "--out", str(tmp / f"shard-{i}"), "--shard", f"{i}/2", *QUICK, cache=cache
        )
        assert out.returncode == 1, out.stderr[-2000:]
    assert sorted(p.name for p in (tmp / "shard-1").iterdir() if p.is_dir()) == [NAMES[0], NAMES[2]]
    assert not (tmp / "shard-1" / "history.jsonl").exists()
    merged = harness("report", str(tmp / "shard-1"), str(tmp / "shard-2"), cache=cache)
    whole = harness("report", str(full_run["dir"]), cache=cache)
    assert merged.returncode == whole.returncode == 0
    assert merged.stdout == whole.stdout


def test_changed_since_runs_the_changed_model_and_carries_the_unchanged_one(rehearsal, served, tmp_path, monkeypatch):
    """Two models of the mini-zoo with real workers: the first passed on night n1 under tonight's stack, tree,
    device and dataset (the map's files unchanged), so it is carried over; the second never passed, so it runs.
    Then the first's dataset as n1 recorded it differs from tonight's: it runs, for that reason."""
    import hashlib

    from conftest import REPO

    from harness.commands.options import load as load_zoo_files
    from harness.fetch import treefiles
    from harness.model.inputs import Options
    from harness.model.timing import device_name
    from harness.nightly import changed, runner
    from harness.records.environment import NightEnv
    from harness.records.results import Conditions, HistoryEntry
    from harness.zoo.manifest import load_zoo

    make, cache, _ = served
    zoo = make(tmp_path)
    stack, pin = load_zoo(zoo)[0].source()
    files = treefiles.find(pin.tree, cache=rehearsal.work / "cache")  # the run finds it in its own cache
    assert files is not None, "the rehearsal's cache holds the pinned tree's extraction"
    traced = {p: files[p] for p in ("ppdet/__init__.py", "ppdet/core/workspace.py")}
    entry = {"configs": {}, "files": traced, "status": "traced"}
    doc = {
        "version": 1,
        "stack": stack,
        "paddle": None,
        "ppdet": {"commit": pin.commit, "tree": pin.tree},
        "built": "2026-11-30T00:00:00+00:00",
        "seconds": 1.0,
        "models": {n: entry for n in NAMES[:2]},
    }
    (tmp_path / "map.json").write_text(json.dumps(doc))
    monkeypatch.setenv("HARNESS_CACHE", str(cache))  # tonight's dataset as the run below prepares it (--subset 1)
    the_zoo, _, lock = load_zoo_files(zoo)
    digest = changed.dataset_digests(the_zoo, lock, Options(subset=1), [NAMES[0]])[NAMES[0]]
    assert len(digest) == 64, digest
    env = NightEnv(
        paddle=(runner.environment()["paddle"] or "").split()[-1],
        device_name=device_name("cpu"),
        dataset_sha256=digest,
        ppdet_tree=pin.tree,
        harness_commit=subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        zoo_sha256=hashlib.sha256(zoo.read_bytes()).hexdigest(),
    )
    line = HistoryEntry(
        run_id="n1",
        finished="2026-11-29T02:00:00+00:00",
        model=NAMES[0],
        status="pass",
        conditions=Conditions(stack=stack, device="cpu"),
        metrics={},
        env=env,
    )
    (tmp_path / "h.jsonl").write_text(line.model_dump_json() + "\n")
    out = harness(
        "run",
        *NAMES[:2],
        "--zoo",
        str(zoo),
        "--out",
        str(tmp_path / "run"),
        "--history",
        str(tmp_path / "h.jsonl"),
        "--changed-since",
        "n1",
        "--impact-map",
        str(tmp_path / "map.json"),
        *QUICK,
        cache=cache,
    )
    assert out.returncode == 1, out.stderr[-2000:]  # the model that ran fails (random weights), none errs
    assert f"{NAMES[0]}: unchanged since n1" in out.stdout and f"{NAMES[1]}: run (never-passed" in out.stdout
    carried, ran = result(tmp_path / "run", NAMES[0]), result(tmp_path / "run", NAMES[1])
    assert carried["status"] == "carried" and carried["carried"]["run_id"] == "n1" and carried["metrics"] == {}
    assert ran["status"] == "fail" and ran["metrics"] and not (tmp_path / "run" / NAMES[0] / "worker.log").exists()
    report = (tmp_path / "run" / "report.md").read_text()
    assert "carried over from n1" in report and "1 models ran tonight, 1 carried over" in report
    assert [(e.run_id, e.model) for e in load(tmp_path / "h.jsonl")][1:] == [(ran["run_id"], NAMES[1])]
    moved = line.model_copy(update={"env": env.model_copy(update={"dataset_sha256": "0" * 64})})
    (tmp_path / "h2.jsonl").write_text(moved.model_dump_json() + "\n")
    again = harness(
        *("plan", "--zoo", str(zoo), "--history", str(tmp_path / "h2.jsonl"), "--device", "cpu"),
        *("--changed-since", "n1", "--impact-map", str(tmp_path / "map.json")),
        cache=cache,
    )
    assert again.returncode == 0 and f"{NAMES[0]}: unchanged since n1" in again.stdout  # a plan compares no dataset
    rerun = harness(
        *("run", NAMES[0], "--zoo", str(zoo), "--out", str(tmp_path / "run2"), "--history", str(tmp_path / "h2.jsonl")),
        *("--changed-since", "n1", "--impact-map", str(tmp_path / "map.json"), *QUICK),
        cache=cache,
    )
    assert f"{NAMES[0]}: run (dataset: annotations 000000000000 → {digest[:12]}" in rerun.stdout, rerun.stdout[-2000:]
    assert result(tmp_path / "run2", NAMES[0])["status"] == "fail"
