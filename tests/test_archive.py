"""Safe extraction: hostile members refuse the whole archive, and nothing is left behind."""

from __future__ import annotations

import io
import stat
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from harness.core.errors import ArchiveError
from harness.fetch.archive import Limits, extract, intact


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


@pytest.mark.parametrize(
    "member, why",
    [
        (("file", "../evil.txt", b"x"), "absolute path or '..'"),
        (("file", "top/../../evil.txt", b"x"), "absolute path or '..'"),
        (("file", "/etc/evil.txt", b"x"), "absolute path or '..'"),
        (("sym", "top/escape", "../../etc/passwd"), "symlink leaving the tree"),
        (("sym", "top/abs", "/etc/passwd"), "symlink leaving the tree"),
        (("hard", "top/hard", "../outside"), "is a hard link"),
        (("hard", "top/hard2", "a.txt"), "is a hard link"),
    ],
)
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


# ---- decompression bombs ---------------------------------------------------------------------------------


def _zeros_zip(path: Path, size: int, name: str = "annotations/instances_val2017.json") -> Path:
    """One deflated member of `size` zero bytes (a whole number of MiB): ~1000:1, the shape of a zip bomb.

    Made as a bomb maker makes one, not by deflating a GiB: one MiB of zeros deflated and ended with a full
    flush (so the piece stands alone) is repeated, then a final empty block; the zip around it is written by
    hand (PKWARE APPNOTE 4.3: local header, data, central directory, end record). zipfile reads it back."""
    mib = b"\0" * (1 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = comp.compress(mib) + comp.flush(zlib.Z_FULL_FLUSH)
    data = piece * (size >> 20) + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    crc = 0
    for _ in range(size >> 20):
        crc = zlib.crc32(mib, crc)
    raw = name.encode()
    common = struct.pack("<HHHHHIII", 20, 0, 8, 0, 0, crc, len(data), size)  # version, flags, deflate, time, ...
    local = b"PK\x03\x04" + common + struct.pack("<HH", len(raw), 0) + raw
    central = b"PK\x01\x02" + struct.pack("<H", 20) + common + struct.pack("<HHHHHII", len(raw), 0, 0, 0, 0, 0, 0) + raw
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)
    with zipfile.ZipFile(path) as zf:  # what the harness will read: one member of `size` bytes
        assert [(i.filename, i.file_size) for i in zf.infolist()] == [(name, size)]
    return path


def _written(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_a_zip_bomb_is_refused_before_a_byte_is_written(tmp_path):
    bomb = _zeros_zip(tmp_path / "bomb.zip", 64 << 20)
    dest = tmp_path / "out" / "x"
    with pytest.raises(ArchiveError, match=r"expands \d+ bytes to 67108864 \(more than 200:1\)") as err:
        extract(bomb, dest)
    assert "$HARNESS_EXTRACT_MAX_RATIO" in str(err.value)
    assert _nothing_left(dest) and _written(tmp_path / "out") == 0


def _overlapping(path: Path, copies: int, member: int = 512 << 10) -> Path:
    """One deflated member listed `copies` times in the central directory, every entry pointing at the same
    data (the overlapping-entry bomb: Python 3.11's zipfile does not refuse it). Each entry is under 1 MiB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("00000", b"\0" * member)
    data = buf.getvalue()
    eocd = data.rindex(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack("<II", data[eocd + 12 : eocd + 20])
    entry = data[cd_offset : cd_offset + cd_size]
    entries = b"".join(entry[:46] + f"{i:05d}".encode() + entry[51:] for i in range(copies))
    end = data[eocd : eocd + 8] + struct.pack("<HHII", copies, copies, len(entries), cd_offset) + data[eocd + 20 :]
    path.write_bytes(data[:cd_offset] + entries + end)
    return path


def test_overlapping_entries_count_by_what_they_declare_in_all(tmp_path):
    bomb = _overlapping(tmp_path / "overlap.zip", 2048)  # 1 GiB declared from ~100 KB
    assert len(zipfile.ZipFile(bomb).infolist()) == 2048
    with pytest.raises(ArchiveError, match=r"would expand to 1073741824 \(more than 200:1\)"):
        extract(bomb, tmp_path / "out")
    with pytest.raises(ArchiveError, match="more than the limit of 1000000"):
        extract(bomb, tmp_path / "out", limits=Limits(max_bytes=1_000_000, max_ratio=1e9))
    assert _nothing_left(tmp_path / "out")


def test_a_member_that_writes_more_than_it_declares_is_stopped(tmp_path):
    """Sizes in the headers say 10 bytes, the data inflates to 1 MiB: what is written is counted and stops."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.json", b"\0" * (1 << 20))
    data = bytearray(buf.getvalue())
    for sig, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size: local header, directory
        i = data.index(sig)
        data[i + at : i + at + 4] = struct.pack("<I", 10)
    liar = tmp_path / "liar.zip"
    liar.write_bytes(bytes(data))
    with pytest.raises(ArchiveError):
        extract(liar, tmp_path / "out")
    assert _nothing_left(tmp_path / "out")


def test_the_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("HARNESS_EXTRACT_MAX_BYTES", "123")
    monkeypatch.setenv("HARNESS_EXTRACT_MAX_RATIO", "7.5")
    assert Limits.from_env() == Limits(max_bytes=123, max_ratio=7.5)
    for var, value in (("MEMBERS", "10"), ("HEADER_BYTES", "4096"), ("PATH", "64")):
        monkeypatch.setenv(f"HARNESS_EXTRACT_MAX_{var}", value)
    assert Limits.from_env() == Limits(123, 7.5, max_members=10, max_header_bytes=4096, max_path=64)


# ---- repair: a damaged extraction is extracted again ---------------------------------------------------


def test_a_deleted_or_edited_file_makes_the_next_extract_redo_it(tmp_path):
    archive = _tar(tmp_path / "ok.tar.gz", GOOD)
    dest = extract(archive, tmp_path / "out")
    assert intact(dest)
    (dest / "top" / "a.txt").write_bytes(b"edited")
    assert not intact(dest)
    assert (extract(archive, dest) / "top" / "a.txt").read_bytes() == b"a"
    (dest / "top" / "a.txt").unlink()
    assert (extract(archive, dest) / "top" / "a.txt").read_bytes() == b"a" and intact(dest)
    assert not intact(dest, {"archive_sha256": "other"})  # another archive's extraction is not this one
