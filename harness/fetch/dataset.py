"""A zoo's datasets (COCO val2017 and others): fetched and extracted into the cache, or an existing root;
plus deterministic subsets.

A subset is written as its own annotation file holding exactly the chosen images, so that everything
downstream (ppdet's reader, scoring) sees those images and nothing else: AP on a subset is then the AP of
those images, not a full-set score diluted by missing predictions.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from harness.core.errors import DatasetError, DatasetRecordError, DatasetUnavailable, UsageError
from harness.core.files import atomic_write_bytes, atomic_write_json, read_json, sha256_file
from harness.fetch import keypoint_records, motdata, vocdata
from harness.fetch.archive import unpack
from harness.fetch.artifacts import fetch_artifact
from harness.fetch.cache import cache_root
from harness.zoo.layouts import LAYOUTS
from harness.zoo.lockfile import LockFile
from harness.zoo.manifest import Dataset


@dataclass(frozen=True)
class CocoData:
    images: Path  # directory of the image files
    annotations: Path  # instances json (the subset's file when a subset is chosen)
    num_images: int
    subset: dict | None = None  # {"n", "seed", "source", "image_ids"} when a subset is in use
    sha256: dict[str, str] = field(default_factory=dict)  # archive url -> sha256 when fetched
    annotations_sha256: str | None = None  # of `annotations` as prepared: what a kept unit must have seen
    name: str = "coco-val2017"  # the zoo's name of the dataset
    layout: str = "coco"  # a row of zoo/layouts.py
    files: dict[str, Path] = field(default_factory=dict)  # further files of the layout, by role

    def layout_fields(self) -> dict:
        """What a record keeps of a dataset not laid out as COCO json (COCO keypoints is: layouts' `coco_json`): its
        ground truth is not one file, and scoring (`rescore` too) reads it from the images' directory and the
        layout's files."""
        if LAYOUTS[self.layout].coco_json:
            return {}
        return {"layout": self.layout, "images": str(self.images), "files": {k: str(p) for k, p in self.files.items()}}

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "layout": self.layout,
            **({"files": {k: str(v) for k, v in self.files.items()}} if self.files else {}),
            "images": str(self.images),
            "annotations": str(self.annotations),
            "num_images": self.num_images,
            "subset": self.subset,
            "archives_sha256": self.sha256,
            "annotations_sha256": self.annotations_sha256,
        }


def _repair_hint(path: Path) -> str:
    """A hint that repairs: a file the harness extracted is extracted again once it is missing or changed
    (archive.intact); a file of the user's COCO root (--data) must be restored by the user."""
    if path.resolve().is_relative_to((cache_root() / "extracted").resolve()):
        return f"delete {path} and run `harness fetch --dataset` (a missing or changed file is extracted again)"
    return f"restore {path} from COCO's annotations_trainval2017.zip"


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise DatasetError(
            f"annotations not found: {path}", hint="pass --data with a COCO root, or run `harness fetch --dataset`"
        ) from None
    except (OSError, ValueError, RecursionError) as exc:
        raise DatasetError(f"{path}: not readable COCO json: {exc}", hint=_repair_hint(path)) from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise DatasetError(
            f"{path}: not COCO instances json (needs 'images' and 'categories' lists)",
            hint="point annotation_file in zoo.yaml at instances_val2017.json",
        )
    _check_records(path, data)
    return data


def _shown(value: object, limit: int = 80) -> str:
    """A value of the file in a message: its repr, cut (a record may be megabytes)."""
    text = repr(value) if isinstance(value, str | int | float | bool) or value is None else type(value).__name__
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _bad_file_name(name: object) -> str | None:
    """Why a `file_name` could make a reader open a file outside the image directory (or none at all)."""
    if not isinstance(name, str) or not name:
        return "file_name is not a non-empty string"
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or "\\" in name or "\0" in name or (len(name) > 1 and name[1] == ":"):
        return "file_name is an absolute path or holds a backslash or NUL"
    if ".." in parts:
        return "file_name climbs out of the image directory ('..')"
    return None


def _check_records(path: Path, data: dict) -> None:
    """Every image a record with an integer id (unique) and a file name inside the image directory; every
    annotation and category a record: else a DatasetRecordError naming the record, before any reader (ppdet,
    pycocotools, the subset maker) trips over it with a traceback or opens a file elsewhere."""
    fix = "correct the annotation file, or point --data / annotation_file at COCO's instances_val2017.json"
    seen: set[int] = set()
    for i, img in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        if not isinstance(img, dict):
            raise DatasetRecordError(f"{where} is a {type(img).__name__}, not an image record", hint=fix)
        ident = img.get("id")
        if type(ident) is not int:
            raise DatasetRecordError(f"{where}: id {_shown(ident)} is not an integer (COCO image ids are)", hint=fix)
        if ident in seen:
            raise DatasetRecordError(f"{where}: id {ident} appears twice", hint=fix)
        seen.add(ident)
        if why := _bad_file_name(img.get("file_name")):
            raise DatasetRecordError(f"{where} (id {ident}): {why}: {_shown(img.get('file_name'))}", hint=fix)
    for key in ("annotations", "categories"):
        records = data.get(key, [])
        if not isinstance(records, list):
            raise DatasetRecordError(f"{path}: '{key}' is a {type(records).__name__}, not a list", hint=fix)
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise DatasetRecordError(f"{path}: {key}[{i}] is a {type(rec).__name__}, not a record", hint=fix)


def _check_images(images: Path, records: list[dict], annotations: Path) -> None:
    if not images.is_dir():
        raise DatasetError(
            f"image directory not found: {images}",
            hint="pass --data with a COCO root holding it, or run `harness fetch --dataset`",
        )
    missing = [r.get("file_name", "?") for r in records if not (images / str(r.get("file_name", ""))).is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} of {len(records)} images listed in {annotations.name} are missing from "
            f"{images}: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}",
            hint="re-extract the images archive, or use --subset over the images you have",
        )


def open_root(ds: Dataset, data_dir: Path) -> tuple[Path, Path, Path]:
    """(root, images dir, annotation file) of an existing dataset root given with --data."""
    root = data_dir.expanduser().resolve()
    if not root.is_dir():
        raise UsageError(
            f"--data {root}: no such directory",
            hint=f"pass the root of {ds.name} (holds {ds.image_dir}/), or --data {ds.name}=DIR",
        )
    return root, root / ds.image_dir, (root / ds.annotation_file if LAYOUTS[ds.layout].annotation_file else root)


def _files(ds: Dataset, root: Path) -> dict[str, Path]:
    """The layout's further files (zoo file `files:`), each present in the dataset's root."""
    out = {role: root / rel for role, rel in ds.files.items()}
    for role, path in out.items():
        if not path.is_file():
            raise DatasetError(
                f"{ds.name}: its {role} {path} is missing",
                hint=f"check files.{role} of dataset {ds.name} in the zoo file, or the dataset root",
            )
    return out


def fetch(
    ds: Dataset, lock: LockFile | None, *, root: Path | None = None, locked: bool = False, **fetch_kw
) -> tuple[Path, Path, dict[str, str], Path]:
    """Fetch the archives and extract what the zoo needs: all images, the annotation file (from its own
    archive, or the images' when the dataset names none), the layout's further files (from the images')."""
    base = (root or cache_root()) / "extracted"
    refetch = f"harness fetch --dataset {ds.name}"
    again = bool(fetch_kw.get("verify"))  # `fetch --verify`: the extractions are made anew too
    if ds.images is None:
        raise DatasetUnavailable(
            f"dataset {ds.name} has no archive the harness can fetch",
            hint=f"get it from {ds.homepage} and pass --data {ds.name}=DIR (the root holding {ds.annotation_file})",
        )
    imgs = fetch_artifact(ds.images, lock, locked=locked, root=root, **fetch_kw)
    shas = {imgs.url: imgs.sha256}

    def unpacked(artifact, got, **kw):  # each archive into its own directory, named by its sha256
        return unpack(artifact, got.path, base / got.sha256[:16], lock, refetch, root=root, verify=again, **kw)

    img_root = unpacked(ds.images, imgs, tag={"archive_sha256": imgs.sha256})
    ann_root, where = img_root, ds.images.url
    if ds.annotations is not None:
        anns = fetch_artifact(ds.annotations, lock, locked=locked, root=root, **fetch_kw)
        shas[anns.url] = anns.sha256
        ann_root, where = (
            unpacked(
                ds.annotations,
                anns,
                want=lambda name: name == ds.annotation_file,
                tag={"archive_sha256": anns.sha256, "want": ds.annotation_file},
            ),
            ds.annotations.url,
        )
    if not LAYOUTS[ds.layout].annotation_file:  # its ground truth lies in the images' folder (a mot dataset)
        return img_root / ds.image_dir, img_root, shas, img_root
    if not (ann_root / ds.annotation_file).is_file():
        raise DatasetError(
            f"{where}: archive has no {ds.annotation_file}",
            hint=f"check the archives and annotation_file of dataset {ds.name} in the zoo file",
        )
    return img_root / ds.image_dir, ann_root / ds.annotation_file, shas, img_root


def _subset_path(annotations: Path, n: int, seed: int, root: Path | None) -> Path:
    st = annotations.stat()
    ident = f"{annotations.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()
    return (
        (root or cache_root()) / "subsets" / f"{annotations.stem}-n{n}-seed{seed}-"
        f"{hashlib.sha256(ident).hexdigest()[:12]}.json"
    )


def make_subset(data: dict, annotations: Path, n: int, seed: int) -> dict:
    """The annotation json restricted to `n` images chosen by a seeded sample of the sorted ids."""
    ids = sorted(img["id"] for img in data["images"])
    if not 1 <= n <= len(ids):
        raise UsageError(f"--subset {n}: must be between 1 and the {len(ids)} images of {annotations.name}")
    chosen = sorted(random.Random(seed).sample(ids, n))
    keep = set(chosen)
    info = dict(data.get("info") or {})  # pycocotools' loadRes needs an "info" key (docs/stacks.md)
    info["harness_subset"] = {"n": n, "seed": seed, "source": str(annotations), "image_ids": chosen}
    return {
        "info": info,
        "licenses": data.get("licenses", []),
        "categories": data["categories"],
        "images": [img for img in data["images"] if img["id"] in keep],
        "annotations": [a for a in data.get("annotations", []) if a.get("image_id") in keep],
    }


def prepare(
    ds: Dataset,
    lock: LockFile | None,
    *,
    data_dir: Path | None = None,
    subset: int | None = None,
    seed: int = 0,
    root: Path | None = None,
    locked: bool = False,
    **fetch_kw,
) -> CocoData:
    """The dataset ready for eval: located (or fetched), optionally subset, and checked image by image."""
    shas: dict[str, str] = {}
    if data_dir is not None:
        base, images, annotations = open_root(ds, data_dir)
    else:
        images, annotations, shas, base = fetch(ds, lock, root=root, locked=locked, **fetch_kw)
    files = _files(ds, base)
    if (own := _PREPARE.get(ds.layout)) is not None:  # a layout whose annotations are not COCO json
        return own(ds, images, annotations, files, shas, subset, seed, root)
    meta = None
    if not annotations.is_file():
        _load(annotations)  # raises the error that names the missing file and the fix
    if subset is not None:
        path = _subset_path(annotations, subset, seed, root)
        if not isinstance(read_json(path), dict):  # absent, or damaged: a subset is derived data, made again
            atomic_write_json(path, make_subset(_load(annotations), annotations, subset, seed))
        annotations = path
    data = _load(annotations)
    if subset is not None:
        meta = data["info"]["harness_subset"]
    if not data["images"]:
        raise DatasetError(
            f"{annotations}: lists no images: nothing to evaluate",
            hint="point annotation_file (or --data) at instances_val2017.json",
        )
    _check_images(images, data["images"], annotations)
    _check_classes(ds, data, annotations)
    if (check := LAYOUT_CHECKS.get(ds.layout)) is not None:
        check(annotations, data)
    return CocoData(
        images, annotations, len(data["images"]), meta, shas, sha256_file(annotations), ds.name, ds.layout, files
    )


# A layout's own check of the annotation file's records, beyond COCO json's (a row per layout that has one);
# its subsets are COCO's (make_subset keeps the chosen images, in the file's order, and their annotations).
LAYOUT_CHECKS: dict[str, Callable[[Path, dict], None]] = {"coco-keypoints": keypoint_records.check}


def _check_classes(ds: Dataset, data: dict, annotations: Path) -> None:
    """The categories of the file are the classes the zoo says the dataset has (count, and names in order when
    listed): a model scored against another class list would be scored wrong, not refused."""
    if ds.classes is None:
        return
    names = [str(c.get("name")) for c in sorted(data["categories"], key=lambda c: c.get("id", 0))]
    expected = ds.classes if isinstance(ds.classes, list) else None
    if len(names) != ds.num_classes or (expected is not None and names != expected):
        want = f"{ds.num_classes} classes" + (f" ({', '.join(expected[:5])}, …)" if expected else "")
        raise DatasetError(
            f"{annotations}: has {len(names)} categories ({', '.join(names[:5])}{', …' if len(names) > 5 else ''}); "
            f"dataset {ds.name} has {want}",
            hint=f"point --data {ds.name}=DIR at {ds.name}'s root, or correct `classes` in the zoo file",
        )


def _voc(
    ds: Dataset,
    images: Path,
    eval_list: Path,
    files: dict[str, Path],
    shas: dict[str, str],
    subset: int | None,
    seed: int,
    root: Path | None,
) -> CocoData:
    """A VOC layout: the eval list (`annotation_file`, lines relative to `image_dir`), every image and XML file
    it lists present, every XML parsed safely and naming only classes of the label list (vocdata), the label
    list the zoo's `classes`. `--subset N` writes a list of N of its lines (a seeded sample of the line
    numbers, kept in list order); the subset's `image_ids` are those line numbers (0-based)."""
    if not eval_list.is_file():
        raise DatasetError(
            f"{ds.name}: eval list not found: {eval_list}",
            hint=f"pass --data {ds.name}=DIR with the root holding {ds.annotation_file}, or run "
            f"`harness fetch --dataset {ds.name}`",
        )
    lines = vocdata.read_list(eval_list, images)
    meta = None
    if subset is not None:
        if not 1 <= subset <= len(lines):
            raise UsageError(f"--subset {subset}: must be between 1 and the {len(lines)} images of {eval_list.name}")
        chosen = sorted(random.Random(seed).sample(range(len(lines)), subset))
        raw = eval_list.read_text(encoding="utf-8").splitlines()  # read_list checked it: one pair a line
        path = _subset_path(eval_list, subset, seed, root).with_suffix(".txt")
        atomic_write_bytes(path, "".join(raw[i].strip() + "\n" for i in chosen).encode())
        meta = {"n": subset, "seed": seed, "source": str(eval_list), "image_ids": chosen}
        eval_list, lines = path, [lines[i] for i in chosen]
    missing = [str(p.relative_to(images)) for _, im, xml in lines for p in (im, xml) if not p.is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} files listed in {eval_list.name} are missing from {images}: "
            f"{', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}",
            hint=f"the list's paths are relative to image_dir ({ds.image_dir!r}: ppdet's dataset_dir/image_dir, '.' "
            "for PaddleDetection's dataset/voc); else re-extract the dataset, or use --subset over the images you have",
        )
    gt = vocdata.ground_truth(images, eval_list, files["label_list"])  # every XML parsed: refused here, not in ppdet
    if ds.classes is not None:
        expected = ds.classes if isinstance(ds.classes, list) else None
        if len(gt.classes) != ds.num_classes or (expected is not None and gt.classes != expected):
            raise DatasetError(
                f"{files['label_list']}: lists {len(gt.classes)} classes ({', '.join(gt.classes[:5])}, …); "
                f"dataset {ds.name} has {ds.num_classes}",
                hint=f"point --data {ds.name}=DIR at {ds.name}'s root, or correct `classes` in the zoo file",
            )
    return CocoData(images, eval_list, len(lines), meta, shas, sha256_file(eval_list), ds.name, ds.layout, files)


def _mot(
    ds: Dataset,
    images: Path,
    root_dir: Path,
    files: dict[str, Path],
    shas: dict[str, str],
    subset: int | None,
    seed: int,
    root: Path | None,
) -> CocoData:
    """A mot layout: `image_dir` the folder of sequences, each complete as eval_mot reads it and its gt.txt
    readable as ppdet's MOT metric reads it (motdata); one class (`classes: 1`, the pedestrian). The
    dataset's `annotations` is its root (ppdet's dataset_dir), `num_images` its frames, `annotations_sha256` a
    digest of what the eval reads (motdata.digest). `--subset` is refused: a tracker is evaluated on whole
    sequences, and ppdet reads every sequence of the folder."""
    if subset is not None:
        raise UsageError(
            f"--subset {subset}: dataset {ds.name} is MOT sequences, evaluated whole",
            hint="leave out --subset for tracking models",
        )
    if ds.num_classes not in (None, 1):
        raise DatasetError(
            f"dataset {ds.name}: a mot dataset has one class (MOTChallenge's pedestrian), not {ds.num_classes}",
            hint="set `classes: 1` in the zoo file (multi-class MCMOT is not evaluated by the harness)",
        )
    names, frames = motdata.check(images)
    motdata.ground_truth(images)  # every gt.txt readable: refused here, not in the scorer
    return CocoData(images, root_dir, frames, None, shas, motdata.digest(images, names), ds.name, ds.layout, files)


# Layouts prepared by their own function (their annotations are not COCO json); the others go the COCO way.
_PREPARE = {"voc": _voc, "mot": _mot}
