"""The pinned stack really works: paddle of the pinned version imports ppdet from the extracted archive
and loads every zoo config. Runs on every stack (tox -e current, tox -e previous)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, ppdet_tree

from harness.fetch import source
from harness.zoo.manifest import Source, load_zoo

pytestmark = pytest.mark.stack

PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import paddle
from ppdet.core.workspace import load_config
archs = [load_config(path).architecture for path in sys.argv[2:]]
print(json.dumps({"paddle": paddle.__version__, "archs": archs}))
"""


def test_pinned_paddle_loads_every_zoo_config_from_the_pinned_source(cache, ppdet_archive):
    zoo, _ = load_zoo(REPO / "zoo.yaml")
    stack, pin = zoo.source()
    local = Source(
        repository="unused",
        commit=pin.commit,
        tree=ppdet_tree(pin.commit),
        paddle=pin.paddle,
        archive={"url": str(ppdet_archive(pin.commit))},
    )
    tree = source.prepare(local)
    assert tree.tree == ppdet_tree(pin.commit)
    configs = [str(tree.config(m)) for m in zoo.models]
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tree.root), *configs], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["paddle"] == pin.paddle, f"stack {stack} expects paddle {pin.paddle}"
    assert probe["archs"] == ["FasterRCNN", "MaskRCNN", "MaskRCNN"]
