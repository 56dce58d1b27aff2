"""PaddleDetection source: pinned by content (git tree id), fetched over loopback HTTP, extracted once."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile

import pytest
from conftest import CURRENT, FAST, PREVIOUS, ppdet_tree

from harness.core.errors import ArchiveError, UsageError
from harness.fetch import source
from harness.fetch.cache import entry_path
from harness.zoo.manifest import Source, load_zoo

MODEL = load_zoo()[0].models[0]


def _pin(server, commit: str, tree: str | None = None) -> Source:
    return Source(
        repository=server.url("/PaddlePaddle/PaddleDetection"),
        commit=commit,
        tree=tree or ppdet_tree(commit),
        paddle="3.3.1",
    )


def _git_tree(root) -> str:
    """What git itself says: `git add -A && git write-tree` in a scratch repository over `root`."""
    env = {
        **os.environ,
        "GIT_DIR": str(root) + ".git",
        "GIT_WORK_TREE": str(root),
        "GIT_INDEX_FILE": str(root) + ".index",
    }
    subprocess.run(["git", "init", "-q"], env=env, check=True)
    subprocess.run(["git", "add", "-A"], env=env, check=True)
    return subprocess.run(["git", "write-tree"], env=env, check=True, capture_output=True, text=True).stdout.strip()


def test_tree_id_is_gits_own(tmp_path):
    """Names that git sorts specially (a directory sorts as `name/`), an executable bit, a symlink, nested and
    empty directories (git ignores the latter), non-ASCII names: the id equals `git write-tree`'s."""
    root = tmp_path / "t"
    for rel, data in [("a.b", b"1"), ("a/x", b"2"), ("a-b/y", b""), ("ab", b"3"), ("z/ü.txt", b"\x00" * 70000)]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "link").symlink_to("a/x")
    (root / "empty" / "deeper").mkdir(parents=True)
    assert source.tree_id(root) == _git_tree(root)
    (root / "run.sh").chmod(0o644)  # a mode change is a content change
    assert source.tree_id(root) == _git_tree(root)


def test_the_fixture_archives_have_the_tree_ids_their_readme_records(tmp_path, ppdet_archive):
    for commit in (CURRENT, PREVIOUS):
        subprocess.run(["tar", "-xzf", ppdet_archive(commit), "-C", tmp_path], check=True)
        assert source.tree_id(tmp_path / f"PaddleDetection-{commit}") == ppdet_tree(commit)


@pytest.mark.parametrize("commit", [CURRENT, PREVIOUS])
def test_pinned_archive_is_fetched_verified_by_content_and_extracted_once(server, cache, ppdet_archive, commit):
    path = f"/PaddlePaddle/PaddleDetection/archive/{commit}.tar.gz"
    server.add(path, ppdet_archive(commit))
    tree = source.prepare(_pin(server, commit), policy=FAST)
    assert tree.commit == commit and tree.origin == "archive" and tree.tree == ppdet_tree(commit)
    assert tree.root.parent.name == ppdet_tree(commit)  # extractions are keyed by content, not a claimed commit
    assert (tree.root / "ppdet" / "__init__.py").is_file()
    assert tree.config(MODEL).name == f"{MODEL.name}.yml"
    assert source.tree_id(tree.root) == ppdet_tree(commit)  # extracted by the harness's own member policy
    again = source.prepare(_pin(server, commit), policy=FAST)
    assert again == tree and len(server.gets(path)) == 1


def _forged(tmp_path, commit: str) -> bytes:
    """A hand-made tar.gz whose pax comment claims `commit` (as `git archive` writes it) over other content:
    a minimal PaddleDetection whose ppdet/__init__.py would run on import."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": commit}) as tf:
        for name, data in (
            (f"PaddleDetection-{commit}/ppdet/__init__.py", b"open('/tmp/pwned', 'w')\n"),
            (f"PaddleDetection-{commit}/configs/x.yml", b"\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_forged_pax_header_is_refused_before_anything_is_imported(server, cache, tmp_path):
    path = f"/PaddlePaddle/PaddleDetection/archive/{CURRENT}.tar.gz"
    server.add(path, _forged(tmp_path, CURRENT))
    with pytest.raises(ArchiveError) as err:
        source.prepare(_pin(server, CURRENT), policy=FAST)
    msg = str(err.value)
    assert f"zoo.yaml pins tree {ppdet_tree(CURRENT)} (commit {CURRENT})" in msg and "nothing was extracted" in msg
    assert "the cache entry was removed" in msg
    assert not entry_path(server.url(path), cache).exists()  # the bytes are gone: a re-fetch gets new ones
    assert [p.name for p in (cache / "src" / "PaddleDetection").iterdir() if not p.name.startswith(".")] == []


def test_a_replaced_archive_never_reuses_the_old_extraction(server, cache, tmp_path, ppdet_archive):
    """The good archive is extracted; then the server (and the cache) get a forged one under the same URL.
    The extraction is keyed by the archive's bytes and the content pin: the forged bytes are checked anew."""
    path = f"/PaddlePaddle/PaddleDetection/archive/{CURRENT}.tar.gz"
    server.add(path, ppdet_archive(CURRENT))
    good = source.prepare(_pin(server, CURRENT), policy=FAST)
    shutil.rmtree(entry_path(server.url(path), cache).parent)  # the cache forgets the archive...
    server.files[path] = _forged(tmp_path, CURRENT)  # ...and the server now serves another one
    with pytest.raises(ArchiveError, match="nothing was extracted or imported"):
        source.prepare(_pin(server, CURRENT), policy=FAST)
    assert source.tree_id(good.root) == ppdet_tree(CURRENT)  # the verified extraction is untouched


def test_an_edited_file_in_the_extracted_tree_is_extracted_again(server, cache, ppdet_archive):
    path = f"/PaddlePaddle/PaddleDetection/archive/{CURRENT}.tar.gz"
    server.add(path, ppdet_archive(CURRENT))
    tree = source.prepare(_pin(server, CURRENT), policy=FAST)
    init = tree.root / "ppdet" / "__init__.py"
    init.write_text("raise SystemExit('edited')\n")
    again = source.prepare(_pin(server, CURRENT), policy=FAST)
    assert again.root == tree.root and "edited" not in init.read_text()
    assert source.tree_id(again.root) == ppdet_tree(CURRENT) and len(server.gets(path)) == 1


@pytest.mark.parametrize(
    "add",
    [
        lambda root: (root / "paddle.py").write_text("raise SystemExit('not paddle')\n"),  # first on sys.path
        lambda root: (root / "ppdet" / "evil.py").write_text("x = 1\n"),
        lambda root: (root / "ppdet" / "extra").mkdir(),
        lambda root: (root / "ppdet" / "link.py").symlink_to(root / "ppdet" / "__init__.py"),
    ],
)
def test_an_entry_added_to_the_extracted_tree_is_noticed_and_the_tree_extracted_again(
    server, cache, ppdet_archive, add
):
    """The stamp lists every entry of the tree: one that the archive did not put there (a file, a directory,
    a link) makes the tree not intact, so it is extracted again from the verified archive, never used."""
    path = f"/PaddlePaddle/PaddleDetection/archive/{CURRENT}.tar.gz"
    server.add(path, ppdet_archive(CURRENT))
    tree = source.prepare(_pin(server, CURRENT), policy=FAST)
    add(tree.root)
    again = source.prepare(_pin(server, CURRENT), policy=FAST)
    assert again.root == tree.root and source.tree_id(again.root) == ppdet_tree(CURRENT)
    assert not (again.root / "paddle.py").exists() and not (again.root / "ppdet" / "extra").exists()
    assert len(server.gets(path)) == 1


def test_a_rotted_source_archive_is_evicted_and_fetch_verify_rehashes_the_tree(server, cache, ppdet_archive):
    """The cached archive rots keeping its size and mtime, and its extraction is gone: the refusal is not the
    published archive's fault (the bytes are not the verified ones), so it is evicted and fetched anew; and
    `verify` re-extracts and re-hashes a tree whose file was edited keeping its size and mtime."""
    url_path = f"/PaddlePaddle/PaddleDetection/archive/{CURRENT}.tar.gz"
    server.add(url_path, ppdet_archive(CURRENT))
    tree = source.prepare(_pin(server, CURRENT), policy=FAST)
    entry = entry_path(server.url(url_path), cache)
    st = entry.stat()
    with entry.open("r+b") as f:
        f.seek(st.st_size // 2)
        f.write(b"\0" * 64)
    os.utime(entry, ns=(st.st_atime_ns, st.st_mtime_ns))
    shutil.rmtree(tree.root.parent)
    with pytest.raises(ArchiveError, match="the cached archive is not the bytes verified") as err:
        source.prepare(_pin(server, CURRENT), policy=FAST)
    assert "its pin is kept" in str(err.value) and not entry.exists()
    fresh = source.prepare(_pin(server, CURRENT), policy=FAST)
    assert source.tree_id(fresh.root) == ppdet_tree(CURRENT) and len(server.gets(url_path)) == 2
    init = fresh.root / "ppdet" / "__init__.py"
    st = init.stat()
    init.write_bytes(init.read_bytes().replace(b"import", b"imp0rt", 1))
    os.utime(init, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert source.prepare(_pin(server, CURRENT), policy=FAST) and b"imp0rt" in init.read_bytes()  # stamp trusted
    source.prepare(_pin(server, CURRENT), policy=FAST, verify=True)
    assert b"imp0rt" not in init.read_bytes() and source.tree_id(fresh.root) == ppdet_tree(CURRENT)


def test_checkout_is_used_in_place_with_its_own_tree_id(tmp_path, ppdet_archive, caplog):
    subprocess.run(["tar", "-xzf", ppdet_archive(CURRENT), "-C", tmp_path], check=True)
    root = tmp_path / f"PaddleDetection-{CURRENT}"
    pin = Source(repository="https://example.invalid/x", commit=CURRENT, tree=ppdet_tree(CURRENT), paddle="3.3.1")
    tree = source.checkout(root, pin)
    assert tree.root == root and tree.origin == "checkout" and tree.commit is None  # not a git checkout
    assert tree.tree == ppdet_tree(CURRENT) and "results record the former" not in caplog.text
    (root / "ppdet" / "extra.py").write_text("x = 1\n")
    assert source.checkout(root, pin).tree != ppdet_tree(CURRENT)
    assert "results record the former" in caplog.text
    with pytest.raises(UsageError, match="not a PaddleDetection tree"):
        source.checkout(tmp_path, pin)


def _git_checkout(tmp_path, ppdet_archive) -> tuple:
    """The current fixture extracted and committed as a git checkout: (its root, a git command prefix)."""
    subprocess.run(["tar", "-xzf", ppdet_archive(CURRENT), "-C", tmp_path], check=True)
    root = tmp_path / f"PaddleDetection-{CURRENT}"
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    return root, git


def test_git_checkout_records_its_head_commit_tree_and_dirt(tmp_path, ppdet_archive, caplog):
    root, git = _git_checkout(tmp_path, ppdet_archive)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    pin = Source(repository="https://example.invalid/x", commit=CURRENT, tree=ppdet_tree(CURRENT), paddle="3.3.1")
    tree = source.checkout(root, pin)
    assert (tree.commit, tree.tree, tree.dirty) == (head, ppdet_tree(CURRENT), False)
    assert f"is commit {head}" not in caplog.text  # same content as the pin: no warning for another commit id
    (root / "ppdet" / "__init__.py").write_text("# changed\n")
    assert source.checkout(root, pin).dirty is True
    assert (
        f"is commit {head} (tree {ppdet_tree(CURRENT)}, with uncommitted changes), the zoo pins {CURRENT}"
        in caplog.text
    )


def test_untracked_importable_files_of_a_checkout_count_as_dirty_and_are_named(tmp_path, ppdet_archive, caplog):
    """The worker puts a checkout first on sys.path: an untracked `paddle.py` at its root runs instead of paddle,
    even when .gitignore hides it. The record said "the pinned tree, clean"; now it names the file as dirt."""
    root, git = _git_checkout(tmp_path, ppdet_archive)
    pin = Source(repository="https://example.invalid/x", commit=CURRENT, tree=ppdet_tree(CURRENT), paddle="3.3.1")
    (root / "notes.txt").write_text("not importable: not dirt\n")
    (root / "output").mkdir()
    (root / "output" / "bbox.json").write_text("[]")
    (root / "ppdet" / "__pycache__").mkdir(exist_ok=True)
    (root / "ppdet" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    assert source.checkout(root, pin).dirty is False
    (root / "paddle.py").write_text("raise SystemExit('not paddle')\n")
    (root / ".gitignore").write_text("cv2/\n")  # ignored, and still imported before the real cv2
    subprocess.run([*git, "add", ".gitignore"], check=True)
    subprocess.run([*git, "commit", "-qm", "ignore"], check=True)
    (root / "cv2").mkdir()
    (root / "cv2" / "__init__.py").write_text("")
    tree = source.checkout(root, pin)
    assert tree.dirty is True and set(tree.untracked) == {"paddle.py", "cv2/"}
    assert tree.as_json()["untracked"] == sorted(tree.untracked)
    assert "untracked files Python can import" in caplog.text and "paddle.py" in caplog.text


def test_a_missing_slim_config_is_refused_like_a_missing_config(tmp_path):
    """A compressed model whose slim config is not in the tree must never be evaluated as its plain self."""
    (tmp_path / "configs" / "slim").mkdir(parents=True)
    (tmp_path / "configs" / "m.yml").write_text("architecture: YOLOv3\n")
    tree = source.SourceTree(root=tmp_path, commit=None, origin="checkout")
    plain = MODEL.model_copy(update={"config": "configs/m.yml", "slim": None})
    assert tree.slim_config(plain) is None
    slim = plain.model_copy(update={"slim": "configs/slim/quant/m_qat.yml"})
    with pytest.raises(UsageError) as missing:
        tree.slim_config(slim)
    assert "slim config configs/slim/quant/m_qat.yml not found" in missing.value.message
    assert "`slim:`" in missing.value.hint
    with pytest.raises(UsageError) as config:  # the same class (and exit code) as a missing config
        tree.config(slim.model_copy(update={"config": "configs/absent.yml"}))
    assert type(config.value) is type(missing.value)
    (tmp_path / "configs" / "slim" / "quant").mkdir()
    (tmp_path / "configs" / "slim" / "quant" / "m_qat.yml").write_text("slim: QAT\n")
    assert tree.slim_config(slim) == tmp_path / "configs/slim/quant/m_qat.yml"
