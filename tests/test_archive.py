"""Safe extraction: hostile members refuse the whole archive, and nothing is left behind."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from harness.archive import extract, tar_commit_id
from harness.errors import ArchiveError


def _tar(path: Path, members: list[tuple[str, str, str | bytes]], commit: str | None = None) -> Path:
    """members: (kind, name, data-or-linkname) with kind file|dir|sym|hard."""
    fmt = dict(format=tarfile.PAX_FORMAT, pax_headers={"comment": commit}) if commit else {}
    with tarfile.open(path, "w:gz", **fmt) as tf:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}[kind]
            if kind == "dir":
                info.mode = 0o755
            else:
                info.linkname = data
            tf.addfile(info)
    return path


def _nothing_left(dest: Path) -> bool:
    return not dest.exists() and not [p for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.partial")]


GOOD = [("dir", "top", ""), ("file", "top/a.txt", b"a"), ("sym", "top/link", "a.txt")]


def test_a_good_tar_extracts_with_inner_symlinks(tmp_path):
    dest = extract(_tar(tmp_path / "ok.tar.gz", GOOD), tmp_path / "out")
    assert (dest / "top" / "a.txt").read_bytes() == b"a"
    assert (dest / "top" / "link").is_symlink() and (dest / "top" / "link").read_bytes() == b"a"


@pytest.mark.parametrize("member, why", [
    (("file", "../evil.txt", b"x"), "absolute path or '..'"),
    (("file", "top/../../evil.txt", b"x"), "absolute path or '..'"),
    (("file", "/etc/evil.txt", b"x"), "absolute path or '..'"),
    (("sym", "top/escape", "../../etc/passwd"), "symlink leaving the tree"),
    (("sym", "top/abs", "/etc/passwd"), "symlink leaving the tree"),
    (("hard", "top/hard", "../outside"), "hard link leaving the tree"),
])
def test_hostile_tar_members_refuse_the_whole_archive(tmp_path, member, why):
    archive = _tar(tmp_path / "bad.tar.gz", [*GOOD, member])
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError, match=why) as err:
        extract(archive, dest)
    assert member[1] in str(err.value)
    assert _nothing_left(dest) and not (tmp_path / "evil.txt").exists()


def test_hostile_zip_members_are_refused(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/a.txt", "a")
        zf.writestr("../evil.txt", "x")
    with pytest.raises(ArchiveError, match=r"'\.\./evil\.txt'"):
        extract(archive, tmp_path / "out")
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("ok/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="symlink"):
        extract(link, tmp_path / "out")
    assert _nothing_left(tmp_path / "out")


def test_zip_member_selection(tmp_path):
    archive = tmp_path / "ann.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("annotations/instances_val2017.json", "{}")
        zf.writestr("annotations/instances_train2017.json", "{}" * 1000)
    dest = extract(archive, tmp_path / "out", want=lambda n: n.endswith("val2017.json"))
    assert [p.name for p in (dest / "annotations").iterdir()] == ["instances_val2017.json"]


def test_corrupt_archive_is_an_error_not_a_partial_tree(tmp_path):
    good = _tar(tmp_path / "ok.tar.gz", GOOD).read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(ArchiveError, match=r"cannot extract|not a readable"):
        extract(cut, tmp_path / "out")
    assert _nothing_left(tmp_path / "out")


def test_commit_id_is_read_from_the_pax_header(tmp_path):
    assert tar_commit_id(_tar(tmp_path / "c.tar.gz", GOOD, commit="ab" * 20)) == "ab" * 20
    assert tar_commit_id(_tar(tmp_path / "n.tar.gz", GOOD)) is None
