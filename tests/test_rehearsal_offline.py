"""`harness rehearse` on a machine that has neither the PaddleDetection fixture nor a way to GitHub: it stops
before building anything, with one message that names what it looked for, where, and how to provide it, and
an exit code of its own. No paddle needed (it stops before any model), and no real network: the zoo's source
points at a closed port on 127.0.0.1 (a connection there is refused, as GitHub's would be offline)."""

from __future__ import annotations

import socket

import yaml
from conftest import REPO, harness

from harness.core.errors import ExitCode
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
