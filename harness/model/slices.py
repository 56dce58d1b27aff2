"""Data-parallel eval of one model (`--parallel K`): the images cut into K deterministic slices, one worker
per slice, the predictions merged back into the order one worker writes them, scored once.

Why the merge is exact: ppdet evaluates the images of its annotation file one at a time (batch size 1, the
harness's override) in the order of the kind's dataset (kinds.Kind.image_order: ascending ids for boxes and
masks, `COCODataSet.parse_dataset` sorts them; the file's order for keypoints), and an image's predictions
depend on that image and the weights alone (a keypoint model's OKS-NMS works within one image). A slice's
worker therefore writes, for each of its images, what a single worker writes for it; a stable sort of the
union by image position restores the single worker's predictions, detection for detection. A slice is its
own annotation file (like `--subset`, the file's order kept), so ppdet's
reader sees exactly its images. The tests compare `--parallel 2` with `--parallel 1` prediction for
prediction and stat for stat.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError, StageError, UsageError
from harness.core.files import atomic_write_bytes, atomic_write_json, read_json
from harness.fetch.cache import cache_root
from harness.model.launcher import interrupt_all
from harness.zoo.kinds import Kind, by_file
from harness.zoo.layouts import LAYOUTS

KEY = "harness_slice"  # the slice's own description, in its annotation file's `info`


@dataclass(frozen=True)
class Slice:
    """Slice `index` (0-based) of `total`: the images at positions index, index+total, ... of the sorted ids
    (round robin, so that every slice gets a like share of the dataset's image sizes)."""

    index: int
    total: int
    annotations: Path
    image_ids: tuple[int, ...]
    file_index: tuple[int, ...]  # each image's place in the source file's `images` (image_ids' order)

    @property
    def label(self) -> str:
        return f"{self.index + 1}/{self.total}"


def _part(data: dict, meta: dict) -> dict:
    keep = set(meta["image_ids"])
    return {
        "info": {**(data.get("info") or {}), KEY: meta},
        "licenses": data.get("licenses", []),
        "categories": data["categories"],
        "images": [i for i in data["images"] if i["id"] in keep],
        "annotations": [a for a in data.get("annotations", []) if a.get("image_id") in keep],
    }


def check(k: int, num_images: int) -> None:
    """Refuse a `--parallel` that cannot be cut before anything runs (a usage error, exit 2)."""
    if not 1 <= k <= num_images:
        raise UsageError(
            f"--parallel {k}: must be between 1 and the {num_images} images to evaluate",
            hint="use fewer slices than images",
        )


def cut(annotations: Path, k: int, root: Path | None = None, *, layout: str = "coco") -> list[Slice]:
    """The K slices of an annotation file, each written once as its own annotation file in the cache
    (`slices/`, keyed by the source file's content): derived data, made again whenever it does not read
    back as exactly the slice it must be. COCO json only (instances or keypoints: layouts' `coco_json`): another
    layout's dataset is refused (exit 2)."""
    if not LAYOUTS[layout].coco_json:
        raise UsageError(
            f"--parallel {k}: {annotations.name} ({layout} layout) cannot be cut into slices yet",
            hint="run the models of this dataset without --parallel",
        )
    raw = annotations.read_bytes()
    data = json.loads(raw)
    listed = {img["id"]: i for i, img in enumerate(data["images"])}
    ids = sorted(listed)
    check(k, len(ids))
    sha = hashlib.sha256(raw).hexdigest()
    folder = (root or cache_root()) / "slices" / f"{annotations.stem}-{sha[:16]}-k{k}"
    out = []
    for i in range(k):
        part = ids[i::k]
        meta = {"index": i, "total": k, "source": str(annotations), "source_sha256": sha, "image_ids": part}
        path = folder / f"{i + 1}of{k}.json"
        have = read_json(path)
        if not (
            isinstance(have, dict)
            and (have.get("info") or {}).get(KEY) == meta
            and sorted(img["id"] for img in have.get("images", [])) == part
        ):
            atomic_write_json(path, _part(data, meta), sort_keys=False)
        out.append(Slice(i, k, path, tuple(part), tuple(listed[img] for img in part)))
    return out


def merge(slices: list[Slice], predictions: list[dict[str, str]], out: Path) -> dict[str, str]:
    """One prediction file per kind from every slice's files, in the order a single worker writes them.

    Every detection must belong to an image of the slice that wrote it (anything else is an error, never
    merged). A kind that only some slices wrote empty — a slice without a detection writes the files the
    documented metrics need, `mask.json` where SOLOv2's others wrote `segm.json` — is dropped when another
    kind serves the same IoU type, as a single worker would not have written it."""
    position = {img: pos for pos, img in enumerate(sorted(i for s in slices for i in s.image_ids))}
    in_file = {img: pos for s in slices for img, pos in zip(s.image_ids, s.file_index, strict=True)}
    merged: dict[str, list] = {}
    for s, files in zip(slices, predictions, strict=True):
        own = set(s.image_ids)
        for kind, path in files.items():
            dets = json.loads(Path(path).read_bytes())
            if stray := sorted({d.get("image_id") for d in dets} - own, key=str)[:3]:
                raise HarnessError(
                    f"slice {s.label} wrote predictions for images outside it ({stray})",
                    hint="the slice's annotation file and its predictions disagree: re-run",
                )
            merged.setdefault(kind, []).extend(dets)
    served = {_key(k) for k, dets in merged.items() if dets}
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind, dets in merged.items():
        if not dets and _key(kind) in served:
            continue
        order = in_file if _order(kind) == "file" else position
        dets.sort(key=lambda d: order[d["image_id"]])  # stable: each image's own order is kept
        target = out / f"{kind}.json"
        atomic_write_bytes(target, json.dumps(dets).encode())
        files[kind] = str(target)
    return files


def threads_per_slice(k: int, threads: int | None) -> int:
    """CPU threads each slice's worker gets: `--threads` (per worker), else the cores shared out."""
    return threads or max(1, (os.cpu_count() or 1) // k)


def run_all(k: int, one, *, what: str) -> list:
    """Run `one(i, cancelled)` for i in 0..k-1 in k threads; the first failure cancels the others (their
    workers are killed) and is raised: nothing partial goes on to be scored."""
    if k == 1:  # one worker: no thread, no slice label
        return [one(0, None)]
    cancelled = threading.Event()
    failures: list[tuple[int, BaseException]] = []

    def guarded(i: int):
        try:
            return one(i, cancelled)
        except BaseException as exc:
            if not cancelled.is_set():
                failures.append((i, exc))
                cancelled.set()
            raise

    pool = ThreadPoolExecutor(max_workers=k, thread_name_prefix=what)
    futures = [pool.submit(guarded, i) for i in range(k)]
    try:
        for f in futures:
            f.exception()  # waits
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM: kill every worker before waiting for the threads
        interrupt_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if failures:
        i, exc = failures[0]
        if isinstance(exc, StageError):
            raise StageError(
                f"slice {i + 1}/{k}: {exc.message}", hint=exc.hint, log_tail=exc.log_tail, details=exc.details
            ) from exc
        raise exc
    return [f.result() for f in futures]


def _order(file: str) -> str:
    kind: Kind | None = by_file(file)
    return kind.image_order if kind else "id"


def _key(file: str) -> str | None:
    """The stats key of a prediction file's kind (mask.json and segm.json are one kind)."""
    kind = by_file(file)
    return kind.stats_key if kind else None
