"""A MOTChallenge-style dataset as ppdet's `tools/eval_mot.py` reads it: a folder of sequences, each
`<seq>/img1/*.jpg`, `<seq>/gt/gt.txt` and `<seq>/seqinfo.ini`.

What the harness checks before a tracker runs (so that a broken dataset is refused here, naming the file, and
not half-way through ppdet's loop) and what it scores against (harness/core/motmetric.py):
- the sequences are the folder's sub-directories, sorted by name (eval_mot's `os.listdir` + `sort`; a plain
  file there is skipped by ppdet with a warning, and here);
- each has an `img1/` folder holding images (ppdet globs jpg, jpeg, png, bmp in either case; it asserts at
  least one), a `gt/gt.txt` that motmetric.read_gt can read (ppdet's reader would crash on the rows it
  refuses) and a `seqinfo.ini` whose frame rate ppdet's slice `frameRate=...\\nseqLength` parses as an integer.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from harness.core.errors import DatasetError, DatasetRecordError
from harness.core.motmetric import MotError, Truth, read_gt

IMAGE_EXTS = ("jpg", "jpeg", "png", "bmp")  # Tracker.get_infer_images' extensions (and their upper case)


def sequences(folder: Path) -> list[str]:
    """The sequence names ppdet evaluates, in its order."""
    if not folder.is_dir():
        raise DatasetError(
            f"sequence folder not found: {folder}",
            hint="image_dir of a mot dataset is its folder of sequences (e.g. MOT16/images/train)",
        )
    return sorted(name for name in os.listdir(folder) if (folder / name).is_dir())


def images(seq: Path) -> list[Path]:
    """A sequence's frames as Tracker.get_infer_images lists them (img1/, the known extensions, sorted)."""
    img1 = seq / "img1"
    exts = {*IMAGE_EXTS, *(e.upper() for e in IMAGE_EXTS)}
    return sorted(p for p in img1.iterdir() if p.suffix[1:] in exts) if img1.is_dir() else []


def frame_rate(seqinfo: Path) -> int:
    """seqinfo.ini's frame rate, parsed by ppdet's own slice of the text (mot_evaluate)."""
    text = seqinfo.read_text(encoding="utf-8", errors="replace")
    try:
        return int(text[text.find("frameRate") + 10 : text.find("\nseqLength")])
    except ValueError:
        raise DatasetRecordError(
            f"{seqinfo}: no `frameRate=N` line directly followed by a `seqLength=` line, which PaddleDetection's "
            "eval_mot reads the frame rate from",
            hint="use the sequence's MOTChallenge seqinfo.ini",
        ) from None


def check(folder: Path) -> tuple[list[str], int]:
    """(the sequences, their frames in all) of a dataset that eval_mot can read, else a DatasetError naming what
    is missing."""
    names = sequences(folder)
    if not names:
        raise DatasetError(
            f"{folder}: holds no sequence folders: nothing to evaluate",
            hint="image_dir of a mot dataset is its folder of sequences (<seq>/img1, <seq>/gt/gt.txt, "
            "<seq>/seqinfo.ini)",
        )
    frames = 0
    for name in names:
        seq = folder / name
        for need in ("img1", "gt/gt.txt", "seqinfo.ini"):
            if not (seq / need).exists():
                raise DatasetError(
                    f"sequence {name} has no {need} ({seq / need})",
                    hint="a MOTChallenge sequence holds img1/, gt/gt.txt and seqinfo.ini; re-extract the dataset",
                )
        found = images(seq)
        if not found:
            raise DatasetError(f"{seq / 'img1'}: no images ({', '.join(IMAGE_EXTS)})", hint="re-extract the dataset")
        frames += len(found)
        frame_rate(seq / "seqinfo.ini")
    return names, frames


def ground_truth(folder: Path) -> Truth:
    """Every sequence's gt/gt.txt, read as ppdet's MOTEvaluator reads it, under the path ppdet would read it by."""
    try:
        return Truth(tuple(read_gt(n, Path(os.path.join(folder, n, "gt", "gt.txt"))) for n in sequences(folder)))
    except MotError as exc:
        raise DatasetRecordError(str(exc), hint="use the sequence's MOTChallenge gt/gt.txt") from None


def digest(folder: Path, names: list[str]) -> str:
    """sha256 over what an eval of the folder reads: each sequence's name, gt.txt, seqinfo.ini and frame names."""
    h = hashlib.sha256()
    for name in names:
        seq = folder / name
        h.update(f"{name}\0".encode())
        for f in (seq / "gt" / "gt.txt", seq / "seqinfo.ini"):
            h.update(hashlib.sha256(f.read_bytes()).digest())
        h.update("\0".join(p.name for p in images(seq)).encode())
    return h.hexdigest()
