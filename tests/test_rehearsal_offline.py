"""`harness rehearse` on a machine that has neither the PaddleDetection fixture nor a way to GitHub: it stops
before building anything, with one message that names what it looked for, where, and how to provide it, and
an exit code of its own. No paddle needed (it stops before any model), and no real network: the zoo's source
points at a closed port on 127.0.0.1 (a connection there is refused, as GitHub's would be offline)."""

from __future__ import annotations

import socket

import pytest
import yaml
from conftest import REPO, harness

from harness.core.errors import ExitCode, HarnessError
from harness.zoo.manifest import load_zoo


def test_rehearsal_without_the_archive_or_the_network_says_what_to_put_where(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()  # an empty shared directory: no fixtures/ in it
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        repository = f"http://127.0.0.1:{closed.getsockname()[1]}/PaddlePaddle/PaddleDetection"
        raw = yaml.safe_load((REPO / "zoo.yaml").read_text())
        for src in raw["sources"].values():
            src["repository"] = repository
        zoo_file = tmp_path / "zoo.yaml"
        zoo_file.write_text(yaml.safe_dump(raw, allow_unicode=True))
        out = harness(
            "rehearse",
            *("--zoo", str(zoo_file), "--dir", str(tmp_path / "work"), "--port", "0"),
            env={"HARNESS_SHARED": str(shared), "HARNESS_RETRIES": "1"},
            timeout=120,
        )
    _, pin = load_zoo(zoo_file)[0].source(None)
    name = f"PaddleDetection-{pin.commit}.tar.gz"
    assert out.returncode == ExitCode.UNAVAILABLE != ExitCode.ERROR, out.stderr
    message = out.stderr
    local = shared / "fixtures" / name
    assert f"no PaddleDetection archive of commit {pin.commit}" in message
    assert f"looked for {local} (the fixtures of $HARNESS_SHARED): no such file" in message
    assert f"fetched {repository}/archive/{pin.commit}.tar.gz: " in message and "connection refused" in message.lower()
    assert f"fix: put {name} (" in message and f"at {local}, or" in message
    assert f"set HARNESS_SHARED to a directory holding fixtures/{name}" in message
    assert "Traceback" not in message and not (tmp_path / "work" / "mirror" / "models").exists()


def _subzoo(names: list[str]):
    from harness.zoo.manifest import parse_zoo

    whole = yaml.safe_load((REPO / "zoos" / "paddledetection.yaml").read_text())
    models = [m for m in whole["models"] if m["name"] in names]
    return parse_zoo({**whole, "models": models, "tables": {m["table"]: whole["tables"][m["table"]] for m in models}})


def test_the_mirror_serves_each_models_own_dataset_as_its_layout_lays_it_out(tmp_path):
    """One model on each layout (COCO val2017, VisDrone's 10 classes in COCO json, COCO keypoints, Pascal VOC): the
    mirror's synthetic sets, fetched from 127.0.0.1 through the mirror's zoo file, pass the harness's own
    preparation of each dataset (its files where the zoo says, its classes the zoo's). No paddle: the sets only."""
    from harness.core.files import atomic_write_json
    from harness.fetch import dataset
    from harness.nightly import rehearsal
    from harness.zoo.manifest import parse_zoo

    names = ["faster_rcnn_r50_fpn_1x_coco", "ppyoloe_crn_s_80e_visdrone", "tinypose_128x96", "ssd_vgg16_300_240e_voc"]
    zoo = _subzoo(names)
    stack, _ = zoo.source()
    work = tmp_path / "work"
    _, images = rehearsal._serve_datasets(work, zoo, 2)
    used = {ds.name: ds.layout for ds in zoo.datasets_of(zoo.models)}
    assert used == {
        "coco-val2017": "coco",
        "visdrone-det-val": "coco",
        "coco-val2017-keypoints": "coco-keypoints",
        "voc-2007-test": "voc",
    }
    assert {name: len(found) for name, found in images.items()} == dict.fromkeys(used, 2)
    mirror = work / "mirror"
    atomic_write_json(mirror / ".complete.json", {"tree": "0" * 40, "datasets": used})
    with rehearsal.serve(mirror, 0) as base:
        raw = rehearsal.mirror_zoo(zoo, stack, base, mirror)
        served = parse_zoo(raw)
        urls = [a.url for ds in served.datasets_of(served.models) for a in (ds.images, ds.annotations) if a]
        assert urls and all(u.startswith(base) for u in urls)
        assert set(raw["datasets"]) == set(used) - {"coco-val2017"}  # the unused ones (real URLs) are left out
        for ds in served.datasets_of(served.models):
            got = dataset.prepare(ds, None, root=tmp_path / "cache")
            assert (got.name, got.layout, got.num_images) == (ds.name, ds.layout, 2)
    # a mirror built without a model's dataset says so, rather than leaving a real URL in the zoo
    atomic_write_json(mirror / ".complete.json", {"tree": "0" * 40, "datasets": {"coco-val2017": "coco"}})
    with pytest.raises(HarnessError, match="serves no synthetic set of coco-val2017-keypoints, visdrone-det-val, voc"):
        rehearsal.mirror_zoo(zoo, stack, "http://127.0.0.1:1", mirror)
