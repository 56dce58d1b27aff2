"""`harness audit`: every config of a zoo built on the stack's paddle, offline, no weights.

Runs on each stack against that stack's PaddleDetection archive, with three configs added to a copy of the
tree: one whose architecture does not exist (a build failure), one whose `_BASE_` leaves the tree, and one
that is not there at all. The seed model is built after the broken one in the same process: its parameter
count must equal a build in a fresh process (ppdet's registry is put back between configs). Swin, ConvNeXt and
the CAE ViT download ImageNet weights while being constructed; with every proxy pointing at a closed port (no
download can succeed, online or not) they must still build: the harness never loads bytes a zoo does not name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import CURRENT, FASTER, PREVIOUS, REPO, harness

pytestmark = pytest.mark.stack

STACK = os.environ.get("HARNESS_STACK", "current")
SEED = f"configs/res2net/{FASTER}.yml"
DOWNLOADERS = {
    "swin": "configs/swin/ppyoloe_plus_swin_tiny_36e_coco.yml",  # pretrained: None means a URL
    "convnext": "configs/convnext/ppyoloe_convnext_tiny_36e_coco.yml",  # `is not None` decides
    "cae": "configs/vitdet/cascade_rcnn_vit_base_hrfpn_cae_1x_coco.yml",
}
NO_NETWORK = {k: "http://127.0.0.1:9" for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}


@pytest.fixture(scope="module")
def tree(ppdet_archive, tmp_path_factory):
    commit = {"current": CURRENT, "previous": PREVIOUS}[STACK]
    root = tmp_path_factory.mktemp("ppdet")
    subprocess.run(["tar", "-xzf", ppdet_archive(commit), "-C", root], check=True)
    tree = root / f"PaddleDetection-{commit}"
    extra = tree / "configs" / "audit_test"
    extra.mkdir()
    (extra / "broken.yml").write_text(f"_BASE_: ['../res2net/{FASTER}.yml']\narchitecture: NoSuchArchitecture\n")
    (extra / "escape.yml").write_text("_BASE_: ['../../../outside.yml']\n")
    return tree


def audit_harness(*args: str, tmp_path) -> subprocess.CompletedProcess:
    """The harness with no network at all (the audit must need none) and this stack's tree."""
    return harness(
        *args, cache=tmp_path / "cache", env={"HARNESS_STACK": STACK, **NO_NETWORK, "NO_PROXY": "", "no_proxy": ""}
    )


def _rows(markdown: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in markdown.splitlines()
        if line.startswith("|")
    ]


def _zoo(tmp_path) -> str:
    raw = yaml.safe_load((REPO / "zoo.yaml").read_text())
    seed = next(m for m in raw["models"] if m["name"] == FASTER)
    raw["models"] = [
        {**seed, "name": "broken", "config": "configs/audit_test/broken.yml"},
        seed,
        {**seed, "name": "escape", "config": "configs/audit_test/escape.yml"},
        {**seed, "name": "gone", "config": "configs/audit_test/gone.yml"},
        *({**seed, "name": n, "config": c} for n, c in DOWNLOADERS.items()),
    ]
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return str(path)


def test_audit_builds_each_config_and_names_what_does_not(tree, tmp_path):
    out = audit_harness(
        "audit",
        "--zoo",
        _zoo(tmp_path),
        "--ppdet-root",
        str(tree),
        "--json",
        str(tmp_path / "a.json"),
        "--out",
        str(tmp_path / "a.md"),
        tmp_path=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads((tmp_path / "a.json").read_text())
    found = {f["model"]: f for f in data["findings"]}
    assert data["stack"] == STACK and list(found) == ["broken", FASTER, "escape", "gone", *DOWNLOADERS]
    assert found["broken"]["status"] == "failed" and "NoSuchArchitecture" in found["broken"]["error"]
    seed = found[FASTER]
    assert seed["status"] == "built" and seed["architecture"] == "FasterRCNN" and seed["params"] > 10_000_000
    assert found["escape"]["status"] == "missing" and "outside" in found["escape"]["error"]
    assert found["gone"]["status"] == "missing" and "gone.yml" in found["gone"]["error"]
    assert {found[n]["status"] for n in DOWNLOADERS} == {"built"}, [found[n]["error"] for n in DOWNLOADERS]

    # built after a failed config in the same process, yet the same model as in a process of its own
    alone = subprocess.run(
        [sys.executable, "-m", "harness.model.worker", "build", "--ppdet-root", str(tree), SEED],
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = json.loads(alone.stdout.strip().splitlines()[-1])
    assert (line["params"], line["keys"]) == (seed["params"], seed["keys"])

    rows = _rows((tmp_path / "a.md").read_text())
    assert [rows[2][0], *rows[2][3:]] == [STACK, "4", "1", "2"]  # totals: built, failed, missing
    assert ["broken", STACK, "failed"] in [r[:3] for r in rows] and [FASTER, "FasterRCNN"] in [r[:2] for r in rows]


def test_audit_merge_puts_stacks_side_by_side_and_refuses_what_is_not_an_audit(tmp_path):
    def run(stack: str, status: str) -> str:
        path = tmp_path / f"{stack}.json"
        path.write_text(
            json.dumps(
                {
                    "stack": stack,
                    "paddle": "x",
                    "tree": {"commit": "c", "tree": "t"},
                    "findings": [
                        {"model": "m", "config": "c.yml", "status": status, "architecture": "A", "params": 2_000_000}
                    ],
                }
            )
        )
        return str(path)

    out = audit_harness("audit", "--merge", run("current", "built"), run("previous", "failed"), tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = _rows(out.stdout)
    assert ["m", "A", "2.00", "built", "failed"] in rows and ["m", "previous", "failed"] in [r[:3] for r in rows]
    (tmp_path / "bad.json").write_text("{not json")
    bad = audit_harness("audit", "--merge", str(tmp_path / "bad.json"), tmp_path=tmp_path)
    assert bad.returncode == 2 and "bad.json: not an audit JSON" in bad.stderr, bad.stderr
