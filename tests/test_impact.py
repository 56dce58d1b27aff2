"""The impact map (harness/records/impact.py, harness/nightly/impact.py): its record round-trips and refuses
another version; its blob ids are git's; a model's config chain is read from the real pinned tree; and a real
model traced under coverage.py lists its own architecture and head, not another head's module."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest
from conftest import CURRENT, REPO, harness

from harness.core.errors import HarnessError
from harness.fetch import source
from harness.nightly.impact import called, config_chain
from harness.records import impact as record
from harness.zoo.manifest import load_zoo

BLOB = "0" * 39 + "1"


def _map(**model) -> record.ImpactMap:
    entry = {"configs": {"configs/a.yml": BLOB}, "files": {"ppdet/x.py": BLOB}, "status": "traced", **model}
    return record.ImpactMap.model_validate(
        {
            "version": 2,
            "stack": "current",
            "paddle": "3.3.1",
            "ppdet": {"commit": CURRENT, "tree": "a" * 40},
            "built": "2026-11-30T12:00:00+00:00",
            "seconds": 12.5,
            "models": {"m": entry},
        }
    )


def test_the_map_round_trips_and_keeps_the_agreed_field_names(tmp_path):
    path = tmp_path / "map.json"
    made = _map(imported={"ppdet/y.py": BLOB}, seconds=3.0)
    record.write(path, made)
    assert record.read(path) == made
    raw = json.loads(path.read_text())
    assert list(raw) == ["version", "stack", "paddle", "ppdet", "built", "seconds", "paths", "models"]
    assert raw["ppdet"] == {"commit": CURRENT, "tree": "a" * 40}
    assert {"configs", "files", "status"} <= set(raw["models"]["m"])
    # each path and its blob once; a model's files as indices into that table
    assert raw["paths"] == [["configs/a.yml", BLOB], ["ppdet/x.py", BLOB], ["ppdet/y.py", BLOB]]
    assert (raw["models"]["m"]["files"], raw["models"]["m"]["imported"]) == ([1], [2])


def test_a_version_1_map_is_read_as_it_was_written(tmp_path):
    path = tmp_path / "v1.json"
    made = _map(imported={"ppdet/y.py": BLOB})
    v1 = {**made.model_dump(), "version": 1}
    v1["ppdet"].pop("traced_tree")
    path.write_text(json.dumps(v1))
    assert record.read(path) == made
    assert record.default_path("current", "0123456789abcdef").name == "current-0123456789ab.json"


def test_another_version_or_shape_is_refused_naming_the_file_and_the_fix(tmp_path):
    path = tmp_path / "map.json"
    record.write(path, _map())
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "version": 3}))
    with pytest.raises(HarnessError, match=r"version 3; this harness reads versions 1 and 2") as exc:
        record.read(path)
    assert str(path) in exc.value.message and "impact build" in (exc.value.hint or "")
    path.write_text(json.dumps({**raw, "models": {"m": {**raw["models"]["m"], "status": "ok"}}}))
    with pytest.raises(HarnessError, match=r"not an impact map: models\.m\.status"):
        record.read(path)
    path.write_text(json.dumps({**raw, "paths": [[p, "xyz"] for p, _ in raw["paths"]]}))
    with pytest.raises(HarnessError, match="not a git blob id"):
        record.read(path)
    path.write_text(json.dumps({**raw, "models": {"m": {**raw["models"]["m"], "files": [7]}}}))
    with pytest.raises(HarnessError, match=r"models\.m\.files: expected indices into paths"):
        record.read(path)
    with pytest.raises(HarnessError, match="no impact map"):
        record.read(tmp_path / "absent.json")
    with pytest.raises(HarnessError, match="not in this impact map"):
        _map().model("other")


def test_blob_ids_are_what_git_hash_object_prints(tmp_path):
    files = {
        "empty": b"",
        "text.py": b"def f():\n    return 1\n",
        "crlf.yml": b"a: 1\r\nb: 2\r\n",
        "binary": bytes(range(256)) * 50,
        "big": os.urandom(3 << 20),  # past the 1 MiB read chunk
    }
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    out = subprocess.run(
        ["git", "-C", str(tmp_path), "hash-object", *files], check=True, capture_output=True, text=True
    ).stdout.split()
    assert [source.blob_id(tmp_path / n) for n in files] == out


def test_a_file_counts_as_executed_when_a_function_of_it_ran(tmp_path):
    code = tmp_path / "mod.py"
    code.write_text(
        "import os\n\n\nclass A:\n    x = 1\n\n    def f(self):\n        return 2\n\n\ndef g():\n    pass\n"
    )
    assert not called(code, {1, 4, 5, 7, 11})  # its import: the class body and the `def` lines
    assert called(code, {1, 4, 5, 7, 8, 11})  # A.f ran
    assert called(code, {12})
    data = tmp_path / "data.py"
    data.write_text("from os import path\nNAMES = ['a']\n")
    assert called(data, {1, 2})  # no functions: running it at all counts


@pytest.fixture(scope="module")
def pinned(ppdet_archive, tmp_path_factory):
    """The current pin's tree, extracted from its fixture archive, as a SourceTree."""
    out = tmp_path_factory.mktemp("pinned")
    with tarfile.open(ppdet_archive(CURRENT)) as tar:
        tar.extractall(out, filter="data")
    return source.SourceTree(source.top(out), CURRENT, "archive")


def _git_blobs(root, paths):
    out = subprocess.run(["git", "hash-object", *paths], cwd=root, check=True, capture_output=True, text=True)
    return dict(zip(paths, out.stdout.split(), strict=True))


def test_the_config_chain_of_a_real_config_is_the_config_and_its_bases(pinned):
    zoo, _ = load_zoo(REPO / "zoos" / "paddledetection.yaml")
    chain = config_chain(pinned, zoo.model("yolov3_mobilenet_v1_270e_coco"))
    expected = [  # configs/yolov3/yolov3_mobilenet_v1_270e_coco.yml's `_BASE_`, read by hand
        "configs/yolov3/yolov3_mobilenet_v1_270e_coco.yml",
        "configs/datasets/coco_detection.yml",
        "configs/runtime.yml",
        "configs/yolov3/_base_/optimizer_270e.yml",
        "configs/yolov3/_base_/yolov3_mobilenet_v1.yml",
        "configs/yolov3/_base_/yolov3_reader.yml",
    ]
    assert sorted(chain) == sorted(expected)
    assert chain == _git_blobs(pinned.root, list(chain))
    quant = config_chain(pinned, zoo.model("picodet_s_416_coco_lcnet_quant"))  # a compressed model: its slim too
    assert sorted(quant) == sorted(
        [
            "configs/picodet/picodet_s_416_coco_lcnet.yml",
            "configs/datasets/coco_detection.yml",
            "configs/runtime.yml",
            "configs/picodet/_base_/picodet_v2.yml",
            "configs/picodet/_base_/optimizer_300e.yml",
            "configs/picodet/_base_/picodet_416_reader.yml",
            "configs/slim/quant/picodet_s_416_lcnet_quant.yml",  # no `_BASE_` of its own
        ]
    )


def test_show_lists_a_models_configs_and_files(tmp_path, capsys):
    path = tmp_path / "map.json"
    record.write(path, _map())
    from harness.cli import build_parser

    args = build_parser(["impact"]).parse_args(["impact", "show", "m", "--map", str(path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("m: traced") and "configs/a.yml" in out and "ppdet/x.py" in out
    args = build_parser(["impact"]).parse_args(["impact", "show", "m", "--map", str(path), "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["files"] == {"ppdet/x.py": BLOB}


MODEL = "yolov3_mobilenet_v1_270e_coco"


@pytest.mark.stack
def test_a_real_models_map_lists_its_architecture_and_head_not_another_head(tmp_path, pinned):
    out = tmp_path / "map.json"
    env = {"HARNESS_STACK": os.environ.get("HARNESS_STACK", "current")}
    zoo = str(REPO / "zoos" / "paddledetection.yaml")
    args = ["impact", "build", "--zoo", zoo, "--only", MODEL, "--out", str(out), "--work", str(tmp_path / "w")]
    proc = harness(*args, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    the_map = record.read(out)
    entry = the_map.model(MODEL)
    assert entry.status == "traced", entry.status
    assert the_map.paddle and the_map.ppdet.tree and the_map.stack == env["HARNESS_STACK"]
    assert "ppdet/modeling/architectures/yolo.py" in entry.files
    assert "ppdet/modeling/heads/yolo_head.py" in entry.files
    assert "ppdet/modeling/backbones/mobilenet_v1.py" in entry.files
    # imported at start-up like every head, but none of its code runs for a YOLOv3
    assert "ppdet/modeling/heads/fcos_head.py" not in entry.files
    assert "ppdet/modeling/heads/fcos_head.py" in entry.imported
    assert "ppdet/modeling/architectures/faster_rcnn.py" not in entry.files
    assert "configs/yolov3/_base_/yolov3_mobilenet_v1.yml" in entry.configs
    if the_map.ppdet.commit == CURRENT:  # the blob ids are the pinned tree's files, as git hashes them
        some = ["ppdet/modeling/architectures/yolo.py", "ppdet/core/workspace.py"]
        assert {p: entry.files[p] for p in some} == _git_blobs(pinned.root, some)


def test_a_trimmed_archive_of_the_pinned_commit_maps_under_the_pins_tree():
    from types import SimpleNamespace

    from harness.nightly.impact import _pin

    pin = SimpleNamespace(commit=CURRENT, tree="f" * 40)
    trimmed = SimpleNamespace(commit=CURRENT, tree="0" * 40)  # fewer files, the same blob ids
    assert _pin(trimmed, pin) == record.Pin(commit=CURRENT, tree="f" * 40, traced_tree="0" * 40)
    assert _pin(SimpleNamespace(commit=CURRENT, tree="f" * 40), pin) == record.Pin(commit=CURRENT, tree="f" * 40)
    other = SimpleNamespace(commit="1" * 40, tree="2" * 40)  # another commit (--ppdet-root): its own tree
    assert _pin(other, pin) == record.Pin(commit="1" * 40, tree="2" * 40)


def test_a_model_whose_eval_failed_is_traced_again_at_the_retry_size(tmp_path, monkeypatch):
    """The retry's run replaces a failed trace only when it ran; a second failure leaves the first in place."""
    from harness.nightly import impact as build

    run_dir, sizes = tmp_path / "run", []

    def fake_batch(plan, served, names, out, env, size=None):
        sizes.append((tuple(names), size))
        for n in names:
            (out / n).mkdir(parents=True)
            (out / n / build.TRACE_FILE).write_text("retried")
            ok = {"status": "fail"} if n == "dino" else {"status": "error", "error": {"stage": "worker"}}
            (out / n / "result.json").write_text(json.dumps(ok))

    for name, rec in {
        "dino": {"status": "error", "error": {"stage": "worker", "message": "900 top values"}},
        "rtdetr": {"status": "error", "error": {"stage": "worker", "message": "still fails"}},
        "unbuilt": {"status": "error", "error": {"stage": "fetch", "message": "404"}},
        "yolo": {"status": "fail"},
    }.items():
        (run_dir / name).mkdir(parents=True)
        (run_dir / name / "result.json").write_text(json.dumps(rec))
        (run_dir / name / build.TRACE_FILE).write_text("first")
    monkeypatch.setattr(build, "_run_batch", fake_batch)
    plan = build.Plan(zoo=tmp_path / "zoo.yaml", work=tmp_path)
    build._retry(plan, tmp_path / "served.yaml", ["dino", "rtdetr", "unbuilt", "yolo"], run_dir, {})
    assert sizes == [(("dino", "rtdetr"), build.RETRY_SIZE)]  # eval failures only, at the retry's size
    assert (run_dir / "dino" / build.TRACE_FILE).read_text() == "retried"
    assert (run_dir / "rtdetr" / build.TRACE_FILE).read_text() == "first"
    assert not (tmp_path / "retry").exists()


def test_update_replaces_the_models_traced_again_and_refuses_another_tree(tmp_path):
    from harness.core.errors import UsageError
    from harness.nightly.impact import updated

    base = _map(status="error: eval: 900 top values")
    base = base.model_copy(update={"models": {**base.models, "n": base.models["m"].model_copy()}})
    again = _map(seconds=4.0)
    got = updated(base, again, tmp_path / "map.json")
    assert list(got.models) == ["m", "n"] and got.models["m"].status == "traced"
    assert got.models["n"].status.startswith("error") and got.seconds == 25.0
    other = again.model_copy(update={"ppdet": again.ppdet.model_copy(update={"tree": "b" * 40})})
    with pytest.raises(UsageError, match="same stack and PaddleDetection tree"):
        updated(base, other, tmp_path / "map.json")


def test_the_committed_maps_are_of_the_pinned_trees_and_cover_the_zoo():
    """reports/impact/ holds a map per pinned stack, found where `--changed-since` looks for it by default, with an
    entry for every model of the whole zoo (a model added to the zoo: `harness impact build --only NAME --update`)."""
    zoo, _ = load_zoo(REPO / "zoos" / "paddledetection.yaml")
    for stack, pin in zoo.sources.items():
        path = REPO / record.default_path(stack, pin.tree)
        assert path.is_file(), f"no impact map of {stack} at {path}"
        the_map = record.read(path)
        assert (the_map.stack, the_map.ppdet.commit, the_map.ppdet.tree) == (stack, pin.commit, pin.tree)
        assert list(the_map.models) == [m.name for m in zoo.models]
        traced = [e for e in the_map.models.values() if e.status == "traced"]
        assert traced and all(e.files and e.configs for e in traced)
