"""PaddleDetection source: the pinned archive over loopback HTTP, commit-checked, extracted once."""

from __future__ import annotations

import subprocess

import pytest
from conftest import CURRENT, FAST, PREVIOUS

from harness import source
from harness.artifacts import entry_path
from harness.errors import ArchiveError, UsageError
from harness.lockfile import LockFile
from harness.manifest import Source, load_zoo

MODEL = load_zoo()[0].models[0]


def _pin(server, commit: str) -> Source:
    return Source(repository=server.url("/PaddlePaddle/PaddleDetection"), commit=commit, paddle="3.3.1")


@pytest.mark.parametrize("commit", [CURRENT, PREVIOUS])
def test_pinned_archive_is_fetched_checked_and_extracted(server, cache, tmp_path, ppdet_archive, commit):
    path = f"/PaddlePaddle/PaddleDetection/archive/{commit}.tar.gz"
    server.add(path, ppdet_archive(commit))
    lock = LockFile(tmp_path / "zoo.lock")
    tree = source.prepare(_pin(server, commit), lock, policy=FAST)
    assert tree.commit == commit and tree.origin == "archive"
    assert (tree.root / "ppdet" / "__init__.py").is_file()
    assert tree.config(MODEL).name == f"{MODEL.name}.yml"
    assert lock.get(server.url(path)).sha256 == tree.archive_sha256
    again = source.prepare(_pin(server, commit), lock, policy=FAST)
    assert again == tree and len(server.gets(path)) == 1


def test_archive_of_another_commit_is_refused_and_not_cached(server, cache, tmp_path, ppdet_archive):
    path = f"/PaddlePaddle/PaddleDetection/archive/{CURRENT}.tar.gz"
    server.add(path, ppdet_archive(PREVIOUS))  # the wrong commit behind the right URL
    lock = LockFile(tmp_path / "zoo.lock")
    with pytest.raises(ArchiveError, match=f"archive is commit {PREVIOUS}, zoo.yaml pins {CURRENT}"):
        source.prepare(_pin(server, CURRENT), lock, policy=FAST)
    assert not entry_path(server.url(path), cache).exists()
    assert lock.get(server.url(path)) is None
    assert not (cache / "src").exists()


def test_checkout_is_used_in_place_with_its_own_commit(tmp_path, ppdet_archive):
    subprocess.run(["tar", "-xzf", ppdet_archive(CURRENT), "-C", tmp_path], check=True)
    root = tmp_path / f"PaddleDetection-{CURRENT}"
    pin = Source(repository="https://example.invalid/x", commit=CURRENT, paddle="3.3.1")
    tree = source.checkout(root, pin)
    assert tree.root == root and tree.origin == "checkout" and tree.commit is None  # not a git checkout
    with pytest.raises(UsageError, match="not a PaddleDetection tree"):
        source.checkout(tmp_path, pin)


def test_git_checkout_records_its_head_commit(tmp_path, ppdet_archive, caplog):
    subprocess.run(["tar", "-xzf", ppdet_archive(CURRENT), "-C", tmp_path], check=True)
    root = tmp_path / f"PaddleDetection-{CURRENT}"
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "ppdet/__init__.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    pin = Source(repository="https://example.invalid/x", commit=CURRENT, paddle="3.3.1")
    assert source.checkout(root, pin).commit == head
    assert f"is commit {head}, the zoo pins {CURRENT}" in caplog.text
