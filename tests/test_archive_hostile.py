"""Hostile archives, made here as an attacker makes them, extracted for real: nothing is ever written outside a
private staging directory, bombs are refused while they are read, and a refusal is the archive's fault.

Each test builds its archive in tmp_path; an archive that escapes (on a Python whose tarfile filter it beats)
is built so that the escape would land inside tmp_path, never outside the test's own directory.
"""

from __future__ import annotations

import bz2
import copy
import io
import os
import stat
import subprocess
import sys
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import CURRENT, PREVIOUS, REPO, coco_zips, harness, namespaced, ppdet_tree

from harness.core.errors import ArchiveError, ExitCode, LocalFault
from harness.fetch import source
from harness.fetch.archive import Limits, extract
from harness.fetch.cache import entry_path
from harness.zoo.lockfile import LockFile

MiB = 1 << 20


def _add(tf: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def cve_chain(path: Path, up: int, name: str = "PWNED", *, staging: int = 80) -> Path:
    """CVE-2025-4517's shape: 16 nested directories of 247 characters, each with a one-letter symlink alias, so the
    aliases `a/b/.../p` spell a short path to the deepest one; there a link of 254 characters points 16 levels up
    (back at the tree's root: the real path is past PATH_MAX, where os.path.realpath stops resolving and the
    `data` filter of Python 3.11.7 sees a path that stays inside); `escape` -> that link + `/..` x `up`, and a
    regular file `escape/NAME`, which then lands `up` levels above the directory extracted into.

    247 characters is the sample's length, for a staging path of up to ~80 characters; for a longer `staging`
    (the length of the staging directory's path) the components are shortened so that the 16 directories still
    fit under PATH_MAX and the last link still resolves past it, as an attacker who knows the cache's layout
    would make them."""
    comp, steps = "d" * min(247, (4096 - staging) // 16 - 2), "abcdefghijklmnop"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        parent = ""
        for step in steps:
            _add(tf, parent + comp, tarfile.DIRTYPE)
            _add(tf, parent + step, tarfile.SYMTYPE, link=comp)
            parent += comp + "/"
        deep = "/".join(steps) + "/" + "l" * 254
        _add(tf, deep, tarfile.SYMTYPE, link="../" * len(steps))
        _add(tf, "escape", tarfile.SYMTYPE, link=deep + "/.." * up)
        _add(tf, f"escape/{name}", data=b"written outside\n")
    return path


def _tar(path: Path, members: list[tuple[str, bytes, str | bytes]], mode: str = "w:gz") -> Path:
    """members: (name, kind, data for a file / target for a link)."""
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tf:
        for name, kind, extra in members:
            if kind == tarfile.REGTYPE:
                _add(tf, name, kind, data=extra if isinstance(extra, bytes) else extra.encode())
            else:
                _add(tf, name, kind, link=str(extra))
    return path


def _found(root: Path, name: str) -> list[str]:
    """Every path named `name` below `root`, links never followed."""
    return [os.path.join(d, name) for d, dirs, files in os.walk(root) if name in dirs + files]


def _leftovers(dest: Path) -> list[str]:
    """What an extraction into `dest` left beside it, besides its lock file."""
    return [p.name for p in dest.parent.iterdir() if p.name != f".{dest.name}.lock"] if dest.parent.exists() else []


# ---- item 1: nothing is written outside the staging directory -------------------------------------------------


@pytest.mark.parametrize("max_path", [None, 1 << 16])
def test_the_cve_2025_4517_chain_writes_nothing_outside(tmp_path, max_path):
    """Refused by the length of its names and, with that limit lifted, by its links: a member inside a link, a
    link through links. The file `escape/PWNED` would land in tmp_path/a, four levels above the staging dir."""
    dest = tmp_path / "a" / "b" / "c" / "d" / "out"
    archive = cve_chain(tmp_path / "chain.tar", up=4, staging=len(str(dest.parent / ".out.partial-12345678")))
    limits = Limits() if max_path is None else Limits(max_path=max_path)
    with pytest.raises(ArchiveError, match=r"name of \d+ bytes" if max_path is None else "symlink") as err:
        extract(archive, dest, limits=limits)
    assert _found(tmp_path, "PWNED") == [] and _leftovers(dest) == []
    assert "refusing to extract" in err.value.message and len(err.value.message) < 600  # names cut to 200 chars


@pytest.mark.parametrize(
    "members, why",
    [
        ([("t", tarfile.SYMTYPE, "."), ("t/x", tarfile.REGTYPE, "x")], "both a symlink and a file or directory"),
        ([("t/x", tarfile.REGTYPE, "x"), ("t", tarfile.SYMTYPE, ".")], "both a symlink and a file or directory"),
        ([("t", tarfile.SYMTYPE, "sub"), ("t/u", tarfile.SYMTYPE, "x")], "inside another symlink"),
        ([("up", tarfile.SYMTYPE, "sub/.."), ("e", tarfile.SYMTYPE, "up/..")], "through another symlink"),
        ([("sub/l", tarfile.SYMTYPE, "../../x")], "symlink leaving the tree"),
        ([("l", tarfile.SYMTYPE, "/etc")], "symlink leaving the tree"),
        ([("h", tarfile.LNKTYPE, "sub/f")], "is a hard link"),
        ([("p", tarfile.FIFOTYPE, "")], "device or FIFO"),
        ([("c", tarfile.CHRTYPE, "")], "device or FIFO"),
    ],
)
def test_links_that_could_be_written_through_are_refused(tmp_path, members, why):
    """Any order of members: a file is never written through a link, and no link points out of the tree."""
    archive = _tar(tmp_path / "links.tar.gz", [("sub/f", tarfile.REGTYPE, "f"), *members])
    with pytest.raises(ArchiveError, match=why):
        extract(archive, tmp_path / "x" / "out")
    assert _leftovers(tmp_path / "x" / "out") == []


def test_links_that_stay_inside_are_made_exactly(tmp_path):
    """What PaddleDetection has (README.md -> README_cn.md), a link to a link, one up to the root: kept as links
    with their targets as written (git hashes the target string)."""
    archive = _tar(
        tmp_path / "ok.tar.gz",
        [
            ("top/README_cn.md", tarfile.REGTYPE, "zh"),
            ("top/README.md", tarfile.SYMTYPE, "README_cn.md"),
            ("top/again", tarfile.SYMTYPE, "./README.md"),
            ("top/d/root", tarfile.SYMTYPE, "../.."),
        ],
    )
    dest = extract(archive, tmp_path / "out")
    assert os.readlink(dest / "top" / "README.md") == "README_cn.md"
    assert (dest / "top" / "again").read_text() == "zh" and os.readlink(dest / "top" / "again") == "./README.md"
    assert (dest / "top" / "d" / "root").resolve() == dest.resolve()


# ---- item 2: bombs are refused while they are read -------------------------------------------------------------


def header_bomb(path: Path, count: int = 1 << 20, kind: bytes = tarfile.DIRTYPE, name: str = "d") -> Path:
    """`count` zero-size tar headers of one name (0 bytes declared) as a .tar.bz2 of ~70 KB: one MiB of headers is
    compressed once and the stream repeated (bzip2 reads concatenated streams as one), then the end blocks."""
    info = tarfile.TarInfo(name)
    info.type, info.mode = kind, 0o755
    piece = bz2.compress(info.tobuf(tarfile.USTAR_FORMAT) * 2048, 9)
    path.write_bytes(piece * (count // 2048) + bz2.compress(b"\0" * 1024, 9))
    return path


def _refused_within(archive: Path, dest: Path, limits: Limits | None, match: str, mb: float = 20) -> str:
    """extract() refuses with `match`, the Python memory it allocated peaking under `mb` MB."""
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveError, match=match) as err:
            extract(archive, dest, limits=limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < mb * 1e6, f"peak {peak / 1e6:.1f} MB"
    assert _leftovers(dest) == []
    return str(err.value)


def test_a_header_bomb_is_refused_while_it_is_read(tmp_path):
    """The issue's bomb: 1,048,576 empty headers, 0 bytes declared. Refused by what the headers expand to, and
    with that limit lifted by the member count or the header bytes, each checked header by header."""
    bomb = header_bomb(tmp_path / "bomb.tar.bz2")
    assert bomb.stat().st_size < 100_000
    msg = _refused_within(bomb, tmp_path / "o1" / "x", None, r"expand to more than \d+ bytes of tar headers")
    assert "(more than 200:1;" in msg and "$HARNESS_EXTRACT_MAX_RATIO" in msg
    lifted = Limits(max_ratio=1e12, max_members=20_000)
    assert "$HARNESS_EXTRACT_MAX_MEMBERS" in _refused_within(bomb, tmp_path / "o2" / "x", lifted, "more than 20000 m")
    lifted = Limits(max_ratio=1e12, max_header_bytes=2 * MiB)
    _refused_within(bomb, tmp_path / "o3" / "x", lifted, "its headers take more than 2097152 bytes")


def test_a_bomb_of_empty_files_is_refused(tmp_path):
    bomb = header_bomb(tmp_path / "files.tar.bz2", kind=tarfile.REGTYPE, name="f")
    _refused_within(bomb, tmp_path / "out" / "x", None, "refusing to extract")


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
def test_a_huge_pax_or_long_name_header_is_refused_before_it_is_read(tmp_path, kind):
    """tarfile reads a pax header or a GNU long name whole, in one call: 256 MiB declared is refused before the
    read, not after the memory is spent."""
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = kind, 256 * MiB
    header, mib = bz2.compress(info.tobuf(tarfile.GNU_FORMAT)), bz2.compress(b"a" * MiB)
    (tmp_path / "long.tar.bz2").write_bytes(header + mib * 256)  # concatenated bzip2 streams read as one
    lifted = Limits(max_ratio=1e12)  # not the ratio: the header's own size
    _refused_within(tmp_path / "long.tar.bz2", tmp_path / "out" / "x", lifted, "more than 65536 bytes of headers")


def test_a_tar_bomb_is_refused_before_its_data_is_written(tmp_path):
    with tarfile.open(tmp_path / "zeros.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("zeros")
        info.size = 64 * MiB
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    _refused_within(tmp_path / "zeros.tar.gz", tmp_path / "out" / "x", None, r"more than 200:1")
    with pytest.raises(ArchiveError, match="more than the limit of 1000000 bytes"):
        extract(tmp_path / "zeros.tar.gz", tmp_path / "out" / "x", limits=Limits(max_bytes=1_000_000, max_ratio=1e9))


# ---- item 3: a name the filesystem will not take is the archive's fault ----------------------------------------


@pytest.mark.parametrize(
    "members, why",
    [
        ([("a/" + "n" * 300, tarfile.REGTYPE, "x")], "path component of 300 bytes"),
        ([("x", tarfile.REGTYPE, "f"), ("x", tarfile.DIRTYPE, "")], "both a file and a directory"),
        ([("x", tarfile.DIRTYPE, ""), ("x", tarfile.REGTYPE, "f")], "both a file and a directory"),
        ([("x", tarfile.REGTYPE, "f"), ("x/y", tarfile.REGTYPE, "f")], "both a file and a directory"),
        ([("x", tarfile.REGTYPE, "f"), ("./x", tarfile.REGTYPE, "g")], "appears more than once"),
        ([("a//b", tarfile.REGTYPE, "f")], "empty path component"),
    ],
)
def test_names_the_filesystem_refuses_are_the_archives_fault(tmp_path, members, why):
    archive = _tar(tmp_path / "names.tar.gz", members)
    with pytest.raises(ArchiveError, match=why):
        extract(archive, tmp_path / "out" / "x")
    assert _leftovers(tmp_path / "out" / "x") == []


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_zip_names_follow_the_same_policy(tmp_path):
    for entries, why in (
        ([("ok/" + "n" * 300, "x")], "path component of 300 bytes"),
        ([("x", "f"), ("x/", "")], "both a file and a directory"),
        ([("x", "f"), ("x", "g")], "appears more than once"),
    ):
        with zipfile.ZipFile(tmp_path / "names.zip", "w") as zf:
            for name, data in entries:
                zf.writestr(name, data)
        with pytest.raises(ArchiveError, match=why):
            extract(tmp_path / "names.zip", tmp_path / "out" / "x")
        assert _leftovers(tmp_path / "out" / "x") == []


@pytest.mark.parametrize("suffix", ["gz", "bz2"])
def test_corrupt_compressed_bytes_are_the_archives_fault(tmp_path, suffix):
    """gzip and bz2 say so with an OSError (BadGzipFile, "Invalid data stream"): still not a disk fault."""
    good = _tar(tmp_path / f"ok.tar.{suffix}", [("f", tarfile.REGTYPE, os.urandom(200_000).hex())], f"w:{suffix}")
    data = bytearray(good.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    (tmp_path / f"bad.tar.{suffix}").write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="cannot extract"):
        extract(tmp_path / f"bad.tar.{suffix}", tmp_path / "out" / "x")


@pytest.mark.parametrize(
    "mount, members, expected",
    [
        ("size=8m,nr_inodes=64", [(f"f{i}", tarfile.REGTYPE, "x") for i in range(200)], "No space left on device"),
        ("size=1m", [("f", tarfile.REGTYPE, os.urandom(3_000_000))], "extracting needs 3000000 bytes"),
        ("ro", [("f", tarfile.REGTYPE, "x")], "Read-only file system"),
    ],
    ids=["no-inodes", "no-room", "read-only"],
)
def test_this_machines_faults_are_local(tmp_path, mount, members, expected):
    """A real ENOSPC (a tmpfs out of inodes while writing 200 honest files), too little room for a tar's declared
    sizes, a read-only cache: this machine's fault (`LocalFault`), so nothing would be evicted or forgotten."""
    cache = tmp_path / "small"
    wrap = namespaced(mount, cache)
    _tar(tmp_path / "honest.tar.gz", members)
    code = (
        "import sys; from pathlib import Path; from harness.fetch.archive import extract\n"
        "from harness.core.errors import *\n"
        "try: extract(Path(sys.argv[1]), Path(sys.argv[2]) / 'out')\n"
        "except HarnessError as e: print(type(e).__name__, e.message)"
    )
    out = subprocess.run(
        [*wrap, sys.executable, "-c", code, str(tmp_path / "honest.tar.gz"), str(cache)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.startswith(LocalFault.__name__) and expected in out.stdout, out


def test_the_links_kept_until_the_end_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr("harness.fetch.members.LINK_BYTES", 1000)
    archive = _tar(tmp_path / "links.tar.gz", [(f"l{i:03}", tarfile.SYMTYPE, "t" * 20) for i in range(100)])
    with pytest.raises(ArchiveError, match="symlinks' names and targets past 1000 bytes"):
        extract(archive, tmp_path / "out" / "x")


def test_messages_quote_at_most_200_characters_of_a_name(tmp_path):
    archive = _tar(tmp_path / "long.tar.gz", [("x/" + "\x1b[2J" + "y" * 900, tarfile.REGTYPE, "f")])
    with pytest.raises(ArchiveError) as err:
        extract(archive, tmp_path / "out" / "x")
    msg = err.value.message
    assert "(906 characters)" in msg and "\x1b" not in msg and "\\x1b[2J" in msg and len(msg) < 500


# ---- the real archives still extract, links and tree ids exactly ------------------------------------------------


@pytest.mark.parametrize("commit", [CURRENT, PREVIOUS])
def test_the_paddledetection_archives_extract_with_their_tree_ids(tmp_path, ppdet_archive, commit):
    dest = extract(ppdet_archive(commit), tmp_path / "out")
    root = source.top(dest)
    links = [p for p in root.rglob("*") if p.is_symlink()]
    assert len(links) >= 10 and all(os.readlink(p) == "README_cn.md" for p in links if p.name == "README.md")
    assert source.tree_id(root) == ppdet_tree(commit)
    assert stat.S_IMODE((root / "ppdet" / "__init__.py").stat().st_mode) & 0o022 == 0


# ---- end to end: `harness fetch` of a zoo that names the hostile archive -----------------------------------------


RAW = yaml.safe_load((REPO / "zoo.yaml").read_text())


def _zoo(tmp_path: Path, server, *, archive: str | None = None, images: str | None = None) -> Path:
    """A one-model zoo.yaml whose source archive and/or dataset images come from the loopback server."""
    raw = copy.deepcopy(RAW)
    raw["models"] = raw["models"][:1]
    raw["models"][0]["weights"] = server.add("/w.pdparams", b"w")
    if archive:
        raw["sources"]["current"]["archive"] = archive
    if images:
        _, ann = coco_zips(tmp_path, 1)
        raw["dataset"] = {"name": "coco", "images": images, "annotations": server.add("/ann.zip", ann)}
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path / "zoo.yaml"


def test_fetch_refuses_the_cve_chain_as_a_source_archive(server, tmp_path):
    """`source.archive` is the chain; the escape would land beside the cache (4 levels above the staging dir)."""
    cache = tmp_path / "cache"
    staging = len(str(cache / "src" / "PaddleDetection" / f".{'0' * 40}.partial-12345678"))
    url = server.add("/PaddleDetection.tar", cve_chain(tmp_path / "chain.tar", up=4, staging=staging).read_bytes())
    zoo = _zoo(tmp_path, server, archive=url)
    out = harness("fetch", RAW["models"][0]["name"], "--zoo", str(zoo), cache=cache, env={"HARNESS_RETRIES": "1"})
    assert out.returncode == ExitCode.ERROR, out.stderr
    assert f"{url}: refusing to extract" in out.stderr and "the cache entry was removed" in out.stderr
    assert "disk space" not in out.stderr
    assert _found(tmp_path, "PWNED") == []
    assert not entry_path(url, cache).exists()
    assert [p.name for p in (cache / "src" / "PaddleDetection").iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param(lambda p, staging: cve_chain(p, up=3, staging=staging), id="cve-chain"),
        pytest.param(lambda p, _: _tar(p, [("val2017/" + "n" * 300, tarfile.REGTYPE, "x")]), id="long-name"),
        pytest.param(
            lambda p, _: _tar(p, [("val2017", tarfile.REGTYPE, "x"), ("val2017/1.jpg", tarfile.REGTYPE, "x")]),
            id="file-and-dir",
        ),
    ],
)
def test_fetch_evicts_a_hostile_dataset_archive_and_forgets_its_first_use_pin(server, tmp_path, hostile):
    """The images archive (extracted whole) is hostile; its pin was learned on first use, so it goes with the
    entry: the next fetch of good bytes works without editing zoo.lock. The escape would land in tmp_path."""
    cache = tmp_path / "cache"
    staging = len(str(cache / "extracted" / f".{'0' * 16}.partial-12345678"))
    url = server.add("/val2017.tar", hostile(tmp_path / "images.tar", staging).read_bytes())
    zoo = _zoo(tmp_path, server, images=url)
    tree = tmp_path / "tree"
    (tree / "ppdet").mkdir(parents=True)
    (tree / "ppdet" / "__init__.py").touch()
    (tree / "configs").mkdir()
    argv = ["fetch", RAW["models"][0]["name"], "--zoo", str(zoo), "--dataset", "--ppdet-root", str(tree)]
    out = harness(*argv, cache=cache, env={"HARNESS_RETRIES": "1"})
    assert out.returncode == ExitCode.ERROR, out.stderr
    assert f"{url}: refusing to extract" in out.stderr and "disk space" not in out.stderr
    assert "the cache entry was removed and its zoo.lock record forgotten" in out.stderr
    lock = LockFile.beside(zoo)
    assert lock.get(url) is None and lock.get(server.url("/w.pdparams")) is not None  # the lock was written
    assert not entry_path(url, cache).exists() and _found(tmp_path, "PWNED") == []
    assert [p.name for p in (cache / "extracted").iterdir() if ".partial-" in p.name] == []
    server.files["/val2017.tar"] = _images_tar()  # the right bytes now
    again = harness(*argv, cache=cache, env={"HARNESS_RETRIES": "1"})
    assert again.returncode == ExitCode.OK, again.stderr


def _images_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        _add(tf, "val2017/0.jpg", data=b"jpeg")
    return buf.getvalue()
