"""Offline rehearsal: the whole pipeline on a local mini-zoo served over HTTP on 127.0.0.1.

The mini-zoo is the real zoo with three things swapped, and nothing else: the weights are the real
configs' models with **random** initial values (saved by paddle like a published checkpoint, so keys,
shapes and file format are real), each dataset the models are evaluated on is a handful of synthetic images laid
out as that dataset is (COCO json with its own classes, COCO keypoints, Pascal VOC: harness/nightly/synthetic.py),
and every URL points at a server on this machine. The harness then runs through the same
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
from harness.nightly import synthetic
from harness.zoo.manifest import Artifact, Dataset, Model, Source, Zoo, load_zoo

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
    """Create (once) the files the loopback server serves: archive, random weights, a synthetic set of each dataset
    the models are evaluated on (the zoo's default always), laid out by its layout.

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
        "datasets": {ds.name: ds.layout for ds in _mirrored(zoo)},
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
    staging, images = _serve_datasets(work, zoo, n_images)
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
        calibration = images[zoo.dataset_of(m).name]
        _random_weights(m, built, mirror / "models" / f"{m.name}.pdparams", calibration, failed)
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


def _mirrored(zoo: Zoo) -> list[Dataset]:
    """The datasets a mirror serves: the zoo's default (the rehearsal fetches it), then every other one its models
    are evaluated on."""
    return [zoo.dataset, *(ds for ds in zoo.datasets_of(zoo.models) if ds.name != zoo.dataset.name)]


def _dataset_url(ds: Dataset) -> str:
    """Where the mirror serves a dataset other than the default: one archive holding its root as the zoo file lays
    it out (image_dir, annotation_file, files), so the zoo names no separate annotations archive."""
    return f"datasets/{ds.name}.zip"


def _serve_datasets(work: Path, zoo: Zoo, n_images: int) -> tuple[Path, dict[str, list[Path]]]:
    """A synthetic set for each dataset the mirror serves, made by its layout's maker (synthetic.WRITERS) and
    zipped into the mirror: the default as COCO's own two archives, each other as one archive of its root.
    Returns the staging directory and each dataset's images (they calibrate its models' random weights)."""
    mirror = work / "mirror"
    staging = work / "staging"
    remove_tree(staging, inside=work)
    images: dict[str, list[Path]] = {}
    for ds in _mirrored(zoo):
        log.info("rehearsal: building %d synthetic images of %s (%s)", n_images, ds.name, ds.layout)
        root = staging / ds.name
        images[ds.name] = synthetic.write(ds, root, n_images)
        members = sorted(p for p in root.rglob("*") if p.is_file())
        if ds.name != zoo.dataset.name:
            (mirror / "datasets").mkdir(parents=True, exist_ok=True)
            _zip_dir(mirror / _dataset_url(ds), root, members)
            continue
        ann = root / ds.annotation_file
        for sub in ("zips", "annotations"):
            (mirror / sub).mkdir(parents=True, exist_ok=True)
        _zip_dir(mirror / "zips" / "val2017.zip", root, [p for p in members if p != ann])
        _zip_dir(mirror / "annotations" / "annotations_trainval2017.zip", root, [ann])
    return staging, images


def _random_weights(
    m: Model, built: source.SourceTree, out: Path, images: list[Path], failed: dict[str, str] | None
) -> None:
    """The model's random-initialised, batch-norm calibrated weights at `out`, made by the worker from its config
    (`init-weights`); a config missing or not building goes into `failed` (an error without it)."""
    log.info("rehearsal: random-initialised weights for %s (building the model from its config)", m.name)
    t0 = time.perf_counter()
    try:
        config = built.config(m)
        slim = built.slim_config(m)  # a compressed model's weights are the transformed model's
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
            *(["--slim", str(slim)] if slim is not None else []),
            "--calibrate",
            *map(str, images),
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
    """The zoo as plain data with every URL moved to `base` (each dataset its models use: the mirror's synthetic
    set of it), only the rehearsed stack, and its source pinned to the content tree of the archive the mirror
    serves (recorded by build_mirror)."""
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
    served = made.get("datasets") or {zoo.dataset.name: zoo.dataset.layout}
    used = {ds.name: ds for ds in zoo.datasets_of(zoo.models) if ds.name != zoo.dataset.name}
    if missing := sorted(n for n, ds in used.items() if served.get(n) != ds.layout):
        raise HarnessError(
            f"{mirror}: serves no synthetic set of {', '.join(missing)}",
            hint="build the mirror with these models (build_mirror makes a set of every dataset they use)",
        )
    # every dataset a model uses comes from the mirror; the others (real URLs, unused) are left out
    raw["datasets"] = {n: d for n, d in raw.get("datasets", {}).items() if n in used}
    for name, d in raw["datasets"].items():
        d["images"] = {"url": f"{base}/{_dataset_url(used[name])}"}
        d.pop("annotations", None)
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
