"""Offline rehearsal: the whole pipeline on a local mini-zoo served over HTTP on 127.0.0.1.

The mini-zoo is the real zoo with three things swapped, and nothing else: the weights are the real
configs' models with **random** initial values (saved by paddle like a published checkpoint, so keys,
shapes and file format are real), the dataset is a handful of synthetic COCO-format images with boxes and
polygon masks, and every URL points at a server on this machine. The harness then runs through the same
commands a user runs on the real zoo. Random weights detect nothing: AP ≈ 0 is the expected outcome.

Everything lives under one directory (default ./rehearsal): the mirror that is served, the rehearsal's
own cache, its zoo.yaml and zoo.lock. Delete the directory to start from nothing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from harness.core.errors import ArtifactError, ExitCode, HarnessError
from harness.core.files import atomic_write_bytes, atomic_write_json, own_directory, read_json, remove_tree
from harness.fetch import source
from harness.fetch.archive import extract
from harness.fetch.artifacts import fetch
from harness.zoo.manifest import Artifact, Model, Source, Zoo, load_zoo

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765
EVAL_SIZE = 320  # short side of the rehearsal's eval (the configs' 800 costs ~7x more on a CPU)
# A short fps measurement (it is a rehearsal: random weights, 320 px on a CPU): 1 warm-up, then at least 3
# timed iterations and 1 s. A Mask R-CNN forward on random weights takes ~12 s here, so each iteration counts.
TIMING = ["--warmup", "1", "--iters", "3", "--min-seconds", "1"]
BANNER = (
    "REHEARSAL: random-initialised weights on synthetic images, served from 127.0.0.1. "
    "AP ≈ 0 is the expected result; it says nothing about the published checkpoints."
)

# The 80 COCO categories (ids as in instances_val2017.json): the configs predict 80 classes, and ppdet
# maps class index -> category id through the annotation file, so a synthetic set must carry all 80.
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
COCO_NAMES = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag "
    "tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
    "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
    "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote "
    "keyboard cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear "
    "hair_drier toothbrush"
).split()


class ArchiveUnavailable(HarnessError):
    """Neither a PaddleDetection archive in the shared fixtures nor the zoo's (GitHub's) reachable: nothing to
    rehearse with, and nothing the rehearsal itself can fix (the message says which file goes where)."""

    exit_code = ExitCode.UNAVAILABLE


def _shared() -> tuple[Path, str]:
    """The shared directory ($HARNESS_SHARED, else ../shared beside the checkout) and how it was chosen."""
    if env := os.environ.get("HARNESS_SHARED"):
        return Path(env), "$HARNESS_SHARED"
    return Path(__file__).resolve().parents[3] / "shared", "../shared beside the checkout"  # harness/nightly/ -> ..


def _archive_of(pin: Source, cache: Path) -> tuple[Path, bool]:
    """The PaddleDetection archive: the shared fixtures' (True: a trimmed fixture), else the zoo's own, GitHub's
    archive of the commit (False). Neither is an ArchiveUnavailable naming both places and the fix."""
    shared, chosen = _shared()
    name = f"PaddleDetection-{pin.commit}.tar.gz"
    local = shared / "fixtures" / name
    if local.is_file():
        return local, True
    url = pin.archive_artifact().url
    try:
        return fetch(url, root=cache).path, False
    except ArtifactError as exc:
        reason = exc.message.splitlines()[0].removeprefix(f"{url}: ")
        raise ArchiveUnavailable(
            f"rehearsal: no PaddleDetection archive of commit {pin.commit}:\n"
            f"  looked for {local} (the fixtures of {chosen}): no such file\n"
            f"  fetched {url}: {reason}",
            hint=f"put {name} ({url}, downloaded where GitHub is reachable, or the trimmed test fixture) at "
            f"{local}, or set HARNESS_SHARED to a directory holding fixtures/{name}",
        ) from None


def _content_tree(archive: Path, scratch: Path) -> str:
    """The git tree id of a trimmed fixture archive: the rehearsal pins the content it serves."""
    tree = source.tree_id(source.top(extract(archive, scratch / "src")))
    remove_tree(scratch, inside=scratch.parent)
    if tree is None:
        raise HarnessError(f"{archive}: holds no files")
    return tree


def synthetic_coco(out: Path, n_images: int, *, size: tuple[int, int] = (320, 240), seed: int = 0) -> dict:
    """`n_images` JPEGs with 1-3 filled polygons each, and their instances json (boxes, polygons, areas)."""
    import cv2
    import numpy as np

    rng = random.Random(seed)
    (out / "val2017").mkdir(parents=True, exist_ok=True)
    w, h = size
    images: list[dict] = []
    anns: list[dict] = []
    for i in range(n_images):
        image_id = 1000 + i
        yy, xx = np.mgrid[0:h, 0:w]
        canvas = np.stack([(xx * 255 // w), (yy * 255 // h), np.full_like(xx, 90 + 40 * i)], -1).astype(np.uint8)
        for _ in range(rng.randint(1, 3)):
            cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
            rx, ry = rng.uniform(0.08, 0.22) * w, rng.uniform(0.08, 0.22) * h
            angles = sorted(rng.uniform(0, 6.283) for _ in range(rng.randint(5, 9)))
            pts = np.array([[cx + rx * np.cos(a), cy + ry * np.sin(a)] for a in angles]).round(1)
            cv2.fillPoly(canvas, [pts.astype(np.int32)], tuple(rng.randrange(256) for _ in range(3)))
            x0, y0 = pts.min(0)
            x1, y1 = pts.max(0)
            area = 0.5 * abs(float(np.dot(pts[:, 0], np.roll(pts[:, 1], 1)) - np.dot(pts[:, 1], np.roll(pts[:, 0], 1))))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": rng.choice(COCO_IDS[:20]),
                    "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    "area": round(area, 2),
                    "iscrowd": 0,
                    "segmentation": [pts.flatten().tolist()],
                }
            )
        name = f"{image_id:012d}.jpg"
        ok, jpg = cv2.imencode(".jpg", canvas[:, :, ::-1].copy())
        assert ok
        (out / "val2017" / name).write_bytes(jpg.tobytes())
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
    return {
        "info": {"description": "harness rehearsal: synthetic COCO-format set", "version": "1"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [
            {"id": c, "name": n, "supercategory": "thing"} for c, n in zip(COCO_IDS, COCO_NAMES, strict=True)
        ],
    }


def _zip_dir(zip_path: Path, root: Path, members: list[Path]) -> None:
    tmp = zip_path.with_name(zip_path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for m in members:
            zf.write(m, m.relative_to(root).as_posix())
    tmp.replace(zip_path)


def build_mirror(
    work: Path,
    zoo: Zoo,
    stack: str,
    *,
    n_images: int,
    archive: Path | None = None,
    failed: dict[str, str] | None = None,
) -> Path:
    """Create (once) the files the loopback server serves: archive, random weights, synthetic COCO.

    `archive` is the PaddleDetection archive to serve (its content tree is pinned); without it, the one
    `_archive_of` finds. Callers that import this module from an installed copy pass it: the installed
    package has no ../shared beside it. With `failed`, a model whose config is missing or does not build is
    recorded there (name -> why) and served without weights; without it, that is an error."""
    mirror, cache = work / "mirror", work / "cache"
    done = mirror / ".complete.json"
    want = {
        "stack": stack,
        "commit": zoo.sources[stack].commit,
        "images": n_images,
        "eval_size": EVAL_SIZE,
        "models": [m.name for m in zoo.models],
        "weights": "random, batch-norm calibrated",
    }
    if isinstance(made := read_json(done), dict) and made.get("tree") and {k: made.get(k) for k in want} == want:
        if failed is not None:
            failed.update(made.get("failed") or {})
        return mirror
    # A new mirror has new random bytes behind the same URLs: drop what pinned or cached the old ones.
    for stale in (mirror, cache):
        remove_tree(stale, inside=work)
    (work / "zoo.lock").unlink(missing_ok=True)
    pin = zoo.sources[stack]
    tree = _serve_archive(work, pin, archive)
    staging = _serve_dataset(work, n_images)
    built = source.prepare(
        Source(
            repository="local",
            commit=pin.commit,
            tree=tree,
            paddle=pin.paddle,
            archive=Artifact(url=str(_served_archive(mirror, pin.commit))),
        ),
        root=cache,
    )
    for m in zoo.models:
        _random_weights(m, built, mirror / "models" / f"{m.name}.pdparams", staging / "val2017", failed)
    remove_tree(cache / "src", inside=cache)  # extracted only to build the models
    remove_tree(staging, inside=work)
    atomic_write_json(done, {**want, "tree": tree, "failed": failed or {}})
    return mirror


def _served_archive(mirror: Path, commit: str) -> Path:
    return mirror / "PaddlePaddle" / "PaddleDetection" / "archive" / f"{commit}.tar.gz"


def _serve_archive(work: Path, pin: Source, archive: Path | None) -> str:
    """Copy the PaddleDetection archive into the mirror; returns the content tree the mirror's zoo pins."""
    origin, trimmed = (archive, True) if archive else _archive_of(pin, work / "cache")
    served = _served_archive(work / "mirror", pin.commit)
    served.parent.mkdir(parents=True)
    shutil.copyfile(origin, served)
    # The real archive must have the real tree; any other (a trimmed fixture) has its own, pinned in the
    # mirror's zoo. An archive handed in is always hashed: nothing is assumed about it.
    return _content_tree(served, work / "scratch") if trimmed else pin.tree


def _serve_dataset(work: Path, n_images: int) -> Path:
    """The synthetic COCO set, zipped into the mirror as COCO's own archives; returns the staging directory
    (its images calibrate the random weights)."""
    mirror = work / "mirror"
    log.info("rehearsal: building %d synthetic images", n_images)
    staging = work / "staging"
    remove_tree(staging, inside=work)
    coco = synthetic_coco(staging, n_images)
    ann = staging / "annotations" / "instances_val2017.json"
    ann.parent.mkdir(parents=True)
    ann.write_text(json.dumps(coco))
    for sub in ("zips", "annotations"):
        (mirror / sub).mkdir(parents=True)
    _zip_dir(mirror / "zips" / "val2017.zip", staging, sorted((staging / "val2017").iterdir()))
    _zip_dir(mirror / "annotations" / "annotations_trainval2017.zip", staging, [ann])
    return staging


def _random_weights(m: Model, built: source.SourceTree, out: Path, images: Path, failed: dict[str, str] | None) -> None:
    """The model's random-initialised, batch-norm calibrated weights at `out`, made by the worker from its config
    (`init-weights`); a config missing or not building goes into `failed` (an error without it)."""
    log.info("rehearsal: random-initialised weights for %s (building the model from its config)", m.name)
    t0 = time.perf_counter()
    try:
        config = built.config(m)
    except HarnessError as exc:
        if failed is None:
            raise
        failed[m.name] = exc.message.splitlines()[0]
        return
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.model.worker",
            "init-weights",
            "--ppdet-root",
            str(built.root),
            "--config",
            str(config),
            "--out",
            str(out),
            "--short-side",
            str(EVAL_SIZE),
            "--calibrate",
            *map(str, sorted(images.iterdir())),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 and failed is not None:
        failed[m.name] = f"building the model failed: {_last_error(proc.stderr)}"
        return
    if proc.returncode != 0:
        raise HarnessError(
            f"rehearsal: building {m.name} failed:\n{proc.stderr[-2000:]}",
            hint="is the paddle stack installed? (scripts/rehearse.sh installs it)",
        )
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    log.info(
        "rehearsal:   %d keys, %d params, %.1f MB in %.1f s",
        info["keys"],
        info["params"],
        info["bytes"] / 1e6,
        time.perf_counter() - t0,
    )


def _last_error(stderr: str) -> str:
    """The exception line of a Python traceback (the last line that names one), for a one-line reason."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    named = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception)\b", ln)]
    return (named or lines or ["no output"])[-1][:300]


def mirror_zoo(zoo: Zoo, stack: str, base: str, mirror: Path) -> dict:
    """The zoo as plain data with every URL moved to `base`, only the rehearsed stack, and its source pinned to
    the content tree of the archive the mirror serves (recorded by build_mirror)."""
    made = read_json(mirror / ".complete.json")
    if not isinstance(made, dict) or not made.get("tree"):
        raise HarnessError(f"{mirror}: not a finished rehearsal mirror", hint="run `harness rehearse` again")
    tree = made["tree"]
    raw = zoo.model_dump(exclude_none=True, exclude_defaults=True)
    raw["notice"] = BANNER
    src = raw["sources"][stack]
    src["repository"] = f"{base}/PaddlePaddle/PaddleDetection"
    src["tree"] = tree
    src.pop("archive", None)
    raw["sources"] = {stack: src}
    raw["dataset"]["images"] = {"url": f"{base}/zips/val2017.zip"}
    raw["dataset"]["annotations"] = {"url": f"{base}/annotations/annotations_trainval2017.zip"}
    for m in raw["models"]:
        m["weights"] = {"url": f"{base}/models/{m['name']}.pdparams"}
    return raw


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(directory: Path, port: int = DEFAULT_PORT) -> Iterator[str]:
    """A static file server on 127.0.0.1 (a free port if `port` is taken); yields its base URL."""
    handler = functools.partial(_Quiet, directory=str(directory))
    try:
        httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


MARKER = ".harness-rehearsal"


def _claim(work: Path) -> None:
    """The rehearsal deletes and rebuilds what it made under `work` (mirror/, cache/): it refuses a directory
    that holds anything it did not make, so `--dir ~` can never delete a user's files."""
    own_directory(
        work,
        MARKER,
        "made by `harness rehearse`; everything here may be deleted and rebuilt\n",
        ours=(work / "mirror" / ".complete.json").exists(),
        refusal=f"--dir {work}: not empty and not a rehearsal directory",
        hint="pass a new or empty directory (the rehearsal owns everything under it)",
    )


def rehearse(
    work: Path, *, zoo_path: Path | None = None, stack: str | None = None, port: int = DEFAULT_PORT, n_images: int = 4
) -> int:
    """Build the mini-zoo, serve it, and run the user's commands against it.

    Returns 0 when every step ran through: fetches succeeded and every model got a verdict. A verdict of
    `fail` is the expected outcome (random weights), so only errors (exit code ≥ 2) make the rehearsal fail.
    """
    zoo, _ = load_zoo(zoo_path)
    stack, _ = zoo.source(stack)
    work = work.resolve()
    _claim(work)
    print(f"== {BANNER}", flush=True)
    mirror = build_mirror(work, zoo, stack, n_images=n_images)
    # Each step is the user's command in its own process, with the rehearsal's own cache: this process's
    # environment is left as it was (a caller importing rehearse() keeps its HARNESS_CACHE).
    env = {**os.environ, "HARNESS_CACHE": str(work / "cache")}
    run_dir = work / "runs" / time.strftime("%Y%m%d-%H%M%S")
    with serve(mirror, port) as base:
        zoo_file = work / "zoo.yaml"
        text = (
            f"# Generated by `harness rehearse` from the real zoo.yaml: every URL points at {base}.\n"
            + yaml.safe_dump(mirror_zoo(zoo, stack, base, mirror), sort_keys=False, allow_unicode=True)
        )
        atomic_write_bytes(zoo_file, text.encode())
        worst = 0
        for title, argv in _steps(zoo, zoo_file, work, run_dir, n_images):
            shown = " ".join("ZOO" if a == str(zoo_file) else a for a in argv)
            print(f"\n== harness {shown}\n   ({title})", flush=True)
            t0 = time.perf_counter()
            code = subprocess.run(
                [sys.executable, "-m", "harness", *argv], env=env, stdin=subprocess.DEVNULL
            ).returncode
            print(f"-- exit {code}, {time.perf_counter() - t0:.1f} s", flush=True)
            if code < 0 or code >= ExitCode.USAGE:  # a step killed by a signal counts as an error
                worst = max(worst, code if code > 0 else ExitCode.ERROR)
    print(
        f"\n== {BANNER}\n== rehearsal files: {work} (zoo.yaml, zoo.lock, mirror/, cache/, runs/, history.jsonl, "
        f"site/)\n== report: {run_dir / 'report.md'}\n== web page: {work / 'site' / 'index.html'}\n"
        f"== {'OK' if worst == 0 else 'FAILED'}: exit {worst}"
    )
    return worst


def _steps(zoo: Zoo, zoo_file: Path, work: Path, run_dir: Path, n_images: int) -> list[tuple[str, list[str]]]:
    """The user's commands the rehearsal runs, in order, each with what it shows (title, argv)."""
    z = ["--zoo", str(zoo_file)]
    run_opts = [
        "--locked",
        "--device",
        "cpu",
        "--eval-size",
        str(EVAL_SIZE),
        "--out",
        str(run_dir),
        *TIMING,
        "--sample",
        str(n_images),
    ]
    history = ["--history", str(work / "history.jsonl")]
    return [
        ("cold cache: download, verify, record zoo.lock", ["fetch", *z, "--dataset"]),
        ("warm cache: no download, no re-hash", ["fetch", *z, "--dataset", "--locked"]),
        ("the zoo", ["list", *z]),
        (
            f"one model: evaluate with PaddleDetection, score, judge, time ({EVAL_SIZE} px)",
            ["verify", zoo.models[0].name, *z, *run_opts],
        ),
        (
            "the nightly over the zoo; --resume keeps the model verified above",
            ["run", *z, *run_opts, "--resume", *history],
        ),
        (
            "the table again and the web page, from the result files alone (open site/index.html)",
            ["report", str(run_dir), "--out", str(run_dir / "table.md"), *history, "--html", str(work / "site")],
        ),
    ]
