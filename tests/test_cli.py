"""The CLI as a user runs it: a subprocess, a zoo whose URLs point at a loopback server, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CURRENT, PREVIOUS, RECORD, REPO, coco_zips, harness, ppdet_tree
from loopback import Status

RAW = yaml.safe_load((REPO / "zoo.yaml").read_text())
NAMES = [m["name"] for m in RAW["models"]]


@pytest.fixture
def loopback_zoo(server, cache, tmp_path, ppdet_archive) -> Path:
    """zoo.yaml with every URL moved to the loopback server, which serves files made here."""
    raw = json.loads(json.dumps(RAW))
    for m in raw["models"]:
        m["weights"] = server.add(f"/models/{m['name']}.pdparams", os.urandom(50_000))
    for src in raw["sources"].values():
        src["repository"] = server.url("/PaddlePaddle/PaddleDetection")
        src["tree"] = ppdet_tree(src["commit"])  # the content of the archive served below
    for commit in (CURRENT, PREVIOUS):  # whichever stack $HARNESS_STACK picks
        server.add(f"/PaddlePaddle/PaddleDetection/archive/{commit}.tar.gz", ppdet_archive(commit))
    images, annotations = coco_zips(tmp_path, 4)
    raw["dataset"]["images"] = server.add("/zips/val2017.zip", images)
    raw["dataset"]["annotations"] = server.add("/annotations/ann.zip", annotations)
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_list_prints_the_zoo_without_importing_paddle(tmp_path, cache):
    out = harness("list", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for name, doc in zip(NAMES, ["40.6 | -", "42.4 | 38.1", "42.6 | 38.1"], strict=True):
        line = next(line for line in out.stdout.splitlines() if name in line)
        assert doc in " ".join(line.split())
    rows = json.loads(harness("list", "--json", cwd=tmp_path).stdout)
    assert [(r["name"], r["box_ap"], r["mask_ap"], r["cached"]) for r in rows] == [
        (NAMES[0], 40.6, None, False),
        (NAMES[1], 42.4, 38.1, False),
        (NAMES[2], 42.6, 38.1, False),
    ]
    heavy = "('paddle', 'ppdet', 'requests', 'pycocotools', 'faster_coco_eval', 'pandas', 'matplotlib')"
    from harness.records.results import write

    write(tmp_path / "run", {**RECORD, "model": NAMES[0], "status": "fail"})
    for argv in (["list"], ["--help"], ["report", str(tmp_path / "run")]):
        code = (
            f"import sys\nfrom harness.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            f"assert not [m for m in sys.modules if m.split('.')[0] in {heavy}], 'heavy import'"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0, (argv, out.stderr[-1000:])


def test_help_has_examples_and_exit_codes():
    out = harness("--help")
    assert out.returncode == 0 and "examples:" in out.stdout and "exit codes:" in out.stdout
    assert "harness fetch --locked" in out.stdout
    assert "--subset N" in harness("fetch", "--help").stdout


def test_fetch_everything_then_again_from_the_cache(loopback_zoo, server, cache):
    first = harness("fetch", "--zoo", str(loopback_zoo), "--dataset", "--subset", "2", "--json")
    assert first.returncode == 0, first.stderr
    rows = json.loads(first.stdout)
    assert [r["kind"] for r in rows] == ["source", "weights", "weights", "weights", "dataset"]
    assert [r["status"] for r in rows] == ["archive", "downloaded", "downloaded", "downloaded", "ok"]
    assert rows[0]["commit"] in (CURRENT, PREVIOUS) and rows[-1]["num_images"] == 2
    lock = json.loads(loopback_zoo.with_suffix(".lock").read_text())
    assert len(lock["artifacts"]) == 5  # 3 weights, 2 dataset archives; the source is pinned by its content
    assert rows[0]["tree"] == ppdet_tree(rows[0]["commit"])
    requests_before = len(server.requests)
    second = harness("fetch", "--zoo", str(loopback_zoo), "--dataset", "--subset", "2", "--locked")
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("cached") == 3 and len(server.requests) == requests_before
    listed = json.loads(harness("list", "--json", "--zoo", str(loopback_zoo)).stdout)
    assert all(r["cached"] for r in listed)


def test_fetch_verify_rehashes_every_entry_and_fetches_what_rotted(loopback_zoo, server, cache):
    """Bytes that rot keep their size and mtime, so the stamp looks fresh: `fetch --verify` hashes every entry
    (weights, source archive, dataset archives) and fetches again only what does not match."""
    from harness.fetch.cache import entry_path

    assert harness("fetch", "--zoo", str(loopback_zoo), "--dataset").returncode == 0
    weights = entry_path(server.url(f"/models/{NAMES[0]}.pdparams"), cache)
    st = weights.stat()
    weights.write_bytes(bytes(b ^ 1 for b in weights.read_bytes()))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    before = len(server.requests)
    plain = json.loads(harness("fetch", "--zoo", str(loopback_zoo), "--json").stdout)
    assert [r["status"] for r in plain if r["kind"] == "weights"] == ["cached"] * 3 and len(server.requests) == before
    out = harness("fetch", "--zoo", str(loopback_zoo), "--dataset", "--verify", "--locked", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["status"] for r in rows if r["kind"] == "weights"] == ["downloaded", "verified", "verified"]
    assert "failed verification" in out.stderr and len(server.requests) == before + 1
    assert server.gets(f"/models/{NAMES[0]}.pdparams")[-1] is server.requests[-1]
    ann = next((cache / "extracted").glob("*/annotations/instances_val2017.json"))  # extracted files rot too
    st, good = ann.stat(), ann.read_bytes()
    ann.write_bytes(good.replace(b'"images"', b'"imagez"', 1))
    os.utime(ann, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert harness("fetch", "--zoo", str(loopback_zoo), "--dataset", "--verify").returncode == 0
    assert ann.read_bytes() == good  # made anew from the re-verified archive


def test_locked_without_records_exits_2_before_any_request(loopback_zoo, server, cache):
    """The lock is checked before the first request: not the weights, not the source archive, not the dataset."""
    out = harness("fetch", NAMES[0], "--zoo", str(loopback_zoo), "--locked")
    assert out.returncode == 2
    assert "--locked: no recorded sha256" in out.stderr and "fix:" in out.stderr
    assert server.requests == [] and not cache.exists()
    out = harness("fetch", "--zoo", str(loopback_zoo), "--dataset", "--locked")
    assert out.returncode == 2 and "no recorded sha256 for 5 artifacts" in out.stderr
    assert server.requests == []


def test_one_failing_download_does_not_stop_the_others(loopback_zoo, server, cache):
    server.files.pop(f"/models/{NAMES[1]}.pdparams")
    out = harness("fetch", "--zoo", str(loopback_zoo), "--json")
    assert out.returncode == 3
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows[NAMES[0]]["status"] == rows[NAMES[2]]["status"] == "downloaded"
    assert rows[NAMES[1]]["status"] == "error" and "HTTP 404" in rows[NAMES[1]]["error"]


def test_server_errors_are_retried_by_the_cli(loopback_zoo, server, cache):
    server.fault(f"/models/{NAMES[0]}.pdparams", Status(502))
    out = harness("fetch", NAMES[0], "--zoo", str(loopback_zoo), env={"HARNESS_BACKOFF_S": "0.01"})
    assert out.returncode == 0, out.stderr
    assert "HTTP 502" in out.stderr and "retrying" in out.stderr


def test_bad_manifest_and_unknown_model_exit_2(tmp_path):
    raw = json.loads(json.dumps(RAW))
    raw["models"][1]["expected"]["box_ap"] = "forty"
    bad = tmp_path / "zoo.yaml"
    bad.write_text(yaml.safe_dump(raw))
    out = harness("list", "--zoo", str(bad))
    assert out.returncode == 2 and "models[1].expected.box_ap: expected a number" in out.stderr
    out = harness("fetch", "mask_rcnn_res2net50_vd")
    assert out.returncode == 2 and f"did you mean: {NAMES[2]}" in out.stderr
    out = harness("fetch", "--nonsense")
    assert out.returncode == 2 and "unrecognized arguments" in out.stderr
