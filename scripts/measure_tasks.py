#!/usr/bin/env python3
"""Measure whether four PaddleDetection task families run on the harness's two pinned stacks.

Why: for PaddleSlim-compressed models, rotated boxes (DOTA), tracking (MOT) and WIDER FACE the harness has
no evaluation path yet, and what each would take must be a *measured* fact, not a guess. This script is the
measurement: it really installs what each task needs and really runs PaddleDetection's own entry point
(tools/eval.py, tools/eval_mot.py, ppdet/ext_op/setup.py) on CPU, on synthetic data with random weights, and
prints one outcome line per (task, stack). harness/zoo/tasks.yaml records those lines; reports/tasks-measured.md
is the prose log. It is a script, never a CI test: it installs packages and takes minutes.

Usage (from a checkout; Python 3.11; a package registry reachable):

    python3 scripts/measure_tasks.py                          # every task on both stacks, fresh venvs
    python3 scripts/measure_tasks.py --tasks slim --stacks previous
    python3 scripts/measure_tasks.py --from-tox .tox          # copy the tox venvs instead of installing (quicker)
    python3 scripts/measure_tasks.py --keep                   # keep /tmp/measure-* afterwards (default: delete venvs)

What it makes, per stack S (all under --base, default /tmp):
    measure-S-venv   a venv: paddlepaddle + the harness's deps and `ppdet` extra under constraints/S.txt
                     (or a copy of the tox env with --from-tox)
    measure-S-src    PaddleDetection's archive for S, extracted from $HARNESS_SHARED/fixtures (or ../shared)
    measure-S-TASK   the task's synthetic dataset (laid out at the config's own relative paths), logs, outputs
A task's extra packages (paddleslim, motmetrics, lap/lapx, ext_op) go into the stack's venv, never into the tox
venvs. Everything runs under `nice -n 10`; compiles use one job.

Each try prints `OUTCOME <task> <stack>: <line>`; --json FILE writes them all. The tries themselves are in
scripts/measure_steps.py, which runs inside the stack's venv (this driver never imports paddle).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

# shutil and tarfile are imported inside the driver's functions only: both import zlib, and whether zlib is loaded
# before paddle is one of the things measured (paddle 2.6.2 ships its own zlib symbols; see EXT_OP_RECIPES).
ROOT = Path(__file__).resolve().parents[1]
STEPS_FILE = Path(__file__).with_name("measure_steps.py")
sys.path.insert(0, str(STEPS_FILE.parent))
from measure_steps import PRELOAD, TASK_CONFIGS  # noqa: E402  (no paddle: the steps import it lazily)

# The pinned stacks (zoo.yaml `sources:`): paddle release and PaddleDetection commit.
STACKS = {
    "current": {"paddle": "3.3.1", "commit": "666f597fd00d3157e84dd9fb2dd3f40bf9918ebc"},
    "previous": {"paddle": "2.6.2", "commit": "7d6dc4079379b7827351c511f76e23ccea4910fd"},
}

# Per task: the config tried, packages it needs (as the pinned tree names them) and why those versions.
# paddleslim: no requirements.txt pin in either tree; configs/slim/README says ">= 2.1.0", and
# configs/picodet/README pins `pip install paddleslim==2.2.2` for its QAT row (the only exact pin).
# 2.6.0 is PyPI's newest (Dec 2023, paired with paddle 2.6): tried as well, so "no release works" is measured.
SLIM_VERSIONS = ["2.2.2", "2.6.0"]
# paddleslim's declared deps minus opencv-python (the stack's opencv-python-headless provides cv2, as for imgaug)
SLIM_DEPS = ["tqdm", "pyzmq", "matplotlib", "pillow", "pyyaml", "scikit-learn", "swig"]
# imported by paddleslim but not declared (paddle 2.x pulled it in; paddle 3 no longer does)
SLIM_UNDECLARED = ["decorator"]
# requirements.txt of each tree: "motmetrics" (unpinned) and "lap" (v2.7.0) / "lapx" (develop)
MOT_PACKAGES = {"current": ["motmetrics", "lapx"], "previous": ["motmetrics", "lap"]}

TASKS = list(TASK_CONFIGS)
TRY_TIMEOUT = 900  # seconds for one eval on 1-3 tiny images on CPU


# ---------------------------------------------------------------------------------------------- the driver


def sh(cmd: list[str], log: Path, cwd: Path | None = None, env: dict | None = None, timeout: int = 1800) -> int:
    """Run `cmd` under nice, appending its output to `log`; return the exit status (124 on timeout)."""
    with log.open("a") as f:
        f.write(f"\n$ {' '.join(map(str, cmd))}\n")
        f.flush()
        try:
            return subprocess.run(
                ["nice", "-n", "10", *map(str, cmd)],
                check=False,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            ).returncode
        except subprocess.TimeoutExpired:
            f.write(f"\n[timed out after {timeout} s]\n")
            return 124


def tail(log: Path, n: int = 25) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:])


def first_error(log: Path) -> str:
    """The failure as one line: the innermost traceback frame inside the tried packages plus the exception line."""
    text = log.read_text(errors="replace")
    lines = text[text.rfind("\n$ ") :].splitlines()  # the last command's output only
    excs = [ln for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception|Exit)\b", ln)]
    inner = [ln for ln in excs if not ln.startswith("SystemExit: tools/")]  # the tool's own error, not our wrapper
    exc = (inner or excs or [""])[-1]
    frames = [m for ln in lines if (m := re.match(r'\s*File "([^"]+)", line (\d+)', ln))]
    where = ""
    for m in reversed(frames):
        path = m.group(1)
        if "/ppdet/" in path or "/paddleslim/" in path or "/tools/" in path or "/paddle/" in path:
            short = re.sub(r".*/(site-packages|PaddleDetection-[0-9a-f]+|measure-\w+-src)/", "", path)
            where = f"{short}:{m.group(2)}"
            break
    cxx = [ln.split(None, 1)[1] for ln in lines if re.match(r"^\d+\s+\S", ln) and "C++ Traceback" in text]
    if exc.startswith("FatalError") and cxx:
        exc = f"{exc.strip()} (C++ frame 0: {cxx[-1].strip()})"
    hung = next((ln.strip() for ln in lines if "hung: no exit" in ln), "")
    png = next((ln.strip() for ln in lines if ln.startswith("libpng error")), "")
    if hung or png:  # the root first: cv2 failed to decode (libpng in zlib), then the loader thread died, then hang
        exc = "; ".join(x for x in (png and f"cv2.imdecode: '{png}'", exc.strip(), hung) if x)
    if not exc:
        errs = [ln for ln in lines if re.search(r"error:|Error|FAILED|fatal", ln)]
        exc = errs[-1].strip() if errs else (lines[-1].strip() if lines else "no output")
    return (f"{exc.strip()} ({where})" if where else exc.strip())[:400]


def make_venv(stack: str, base: Path, from_tox: Path | None, log: Path) -> Path:
    """A scratch venv with the stack's paddle and ppdet's import-time deps, pinned by constraints/<stack>.txt."""
    import shutil

    venv = base / f"measure-{stack}-venv"
    if (venv / "bin/python").exists():
        return venv
    if from_tox:
        shutil.copytree(from_tox / stack, venv, symlinks=True)
        return venv  # bin/python finds its prefix from pyvenv.cfg beside it; scripts' shebangs are not used
    sh([sys.executable, "-m", "venv", venv], log)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # the harness's own dependencies (ppdet imports requests, for one) and its `ppdet` extra, as tox installs them
    extras = [*project["dependencies"], *project["optional-dependencies"]["ppdet"]]
    env = {"PIP_CONSTRAINT": str(ROOT / f"constraints/{stack}.txt")}
    pip = [venv / "bin/python", "-m", "pip", "install", "--quiet"]
    if sh([*pip, f"paddlepaddle=={STACKS[stack]['paddle']}", *extras], log, env=env):
        raise SystemExit(f"venv for {stack}: pip install failed, see {log}")
    sh([*pip, "--no-deps", "imgaug==0.4.0"], log, env=env)
    return venv


def extract(stack: str, base: Path, shared: Path) -> Path:
    """PaddleDetection's trimmed archive for the stack, extracted (a fresh copy: ext_op builds write into it)."""
    import tarfile

    commit = STACKS[stack]["commit"]
    dest = base / f"measure-{stack}-src"
    root = dest / f"PaddleDetection-{commit}"
    if not root.exists():
        archive = shared / "fixtures" / f"PaddleDetection-{commit}.tar.gz"
        if not archive.exists():
            raise SystemExit(f"{archive} is missing: put PaddleDetection's archive there (or set HARNESS_SHARED)")
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as t:
            t.extractall(dest, filter="data")
    return root


def step(venv: Path, name: str, stack: str, src: Path, work: Path, log: Path, env: dict | None = None) -> int:
    """Run one try step of this file inside the stack's venv."""
    cmd = [venv / "bin/python", STEPS_FILE, name, "--src", src, "--work", work]
    base = {"KMP_BLOCKTIME": "0", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}
    return sh(cmd, log, env={**base, **(env or {})}, timeout=TRY_TIMEOUT)


# What paddle 2.6.2's zlib clash looks like (in the last command's output): a crash in zlib, libpng failing in
# zlib (cv2 then returns no image), or a tool that hangs because its data-loader thread died of it.
ZLIB_MARKERS = ("inflateReset2", "deflateReset", "Segmentation fault", "to zlib", "hung: no exit")


def try_step(venv: Path, name: str, stack: str, src: Path, work: Path, log: Path) -> tuple[int, str]:
    """A step as PaddleDetection runs it; when that crashes in zlib (or hangs: a data-loader thread that
    crashed), once more with zlib imported before paddle. Returns the final status and a note ("" when the
    first run passed)."""
    if step(venv, name, stack, src, work, log) == 0:
        return 0, ""
    err = first_error(log)
    text = log.read_text(errors="replace")
    if not any(k in text[text.rfind("\n$ ") :] for k in ZLIB_MARKERS):
        return 1, err
    rc = step(venv, name, stack, src, work, log, env={PRELOAD: "1"})
    again = "passes" if rc == 0 else first_error(log)
    return rc, f"{err}; with zlib imported before paddle: {again}"


def pip_install(venv: Path, stack: str, pkgs: list[str], log: Path, no_deps: bool = False) -> int:
    env = {"PIP_CONSTRAINT": str(ROOT / f"constraints/{stack}.txt")}
    return sh([venv / "bin/python", "-m", "pip", "install", *(["--no-deps"] if no_deps else []), *pkgs], log, env=env)


def pip_version(venv: Path, pkg: str) -> str:
    out = subprocess.run(
        [venv / "bin/python", "-m", "pip", "show", pkg], check=False, capture_output=True, text=True
    ).stdout
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Version:")), "absent")


def drive_slim(venv: Path, stack: str, src: Path, work: Path, log: Path) -> str:
    """paddleslim: each version installed and imported; the first that imports evaluates the QAT PicoDet row."""
    notes, usable = [], None
    for v in SLIM_VERSIONS:
        # what an ordinary `pip install paddleslim==v` would pull next to the stack (resolution only)
        dry = sh(
            [venv / "bin/python", "-m", "pip", "install", "--dry-run", f"paddleslim=={v}"],
            log,
            env={"PIP_CONSTRAINT": str(ROOT / f"constraints/{stack}.txt")},
        )
        text = log.read_text(errors="replace")
        would = re.findall(r"^Would install (.*)$", text[text.rfind("\n$ ") :], re.MULTILINE)
        resolved = f"with deps pip would install {would[-1]}" if dry == 0 and would else "with deps: no resolution"
        sh([venv / "bin/python", "-m", "pip", "uninstall", "-y", "paddleslim"], log)
        if pip_install(venv, stack, [f"paddleslim=={v}"], log, no_deps=True) or pip_install(
            venv, stack, SLIM_DEPS, log
        ):
            notes.append(f"paddleslim {v}: pip install fails ({first_error(log)})")
            continue
        rc = step(venv, "slim-import", stack, src, work, log)
        if rc:
            err = first_error(log)
            if "No module named 'decorator'" in err:
                pip_install(venv, stack, SLIM_UNDECLARED, log)
                rc = step(venv, "slim-import", stack, src, work, log)
                err = f"{err}; with decorator added: " + ("imports" if rc == 0 else first_error(log))
            notes.append(f"paddleslim {v} ({resolved}): " + (f"import fails: {err}" if rc else err))
        else:
            notes.append(f"paddleslim {v} ({resolved}): installs, imports")
        if rc == 0 and usable is None:
            usable = v
            rc, note = try_step(venv, "slim-eval", stack, src, work, log)
            ok = "runs (tools/eval.py --slim_config: quantised model built, COCO AP printed)"
            notes.append(f"QAT eval with {v}: " + (note if rc else ok if not note else f"{note} -> {ok}"))
            # keep the usable version installed for the record; try the others' import only
    return "; ".join(notes)


# How ext_op is built, tried in order until rbox_iou imports and agrees with shapely. `setup.py install` goes
# through paddle's cpp_extension; what it installs depends on setuptools: 80.x (the stacks' pin) installs
# without the egg step, 69.x through easy_install's egg. On paddle 2.6.2 the egg step zips with zlib after
# `import paddle`, whose libpaddle exports its own zlib symbols (docs/stacks.md: pycocotools 2.0.11's
# inflateReset2 segfault): the third recipe imports zlib first.
EXT_OP_RECIPES = [
    ("the stack's setuptools", None, False),
    ("setuptools 69.5.1 (egg install)", "69.5.1", False),
    ("setuptools 69.5.1, zlib imported before paddle", "69.5.1", True),
]
SETUP_INSTALL = "import runpy, sys; sys.argv = ['setup.py', 'install']; runpy.run_path('setup.py', run_name='__main__')"


def clean_ext_op(venv: Path) -> None:
    """Remove what an earlier ext_op install left in site-packages (a bare ext_op.so there shadows any egg)."""
    import shutil

    for sp in venv.glob("lib/python3*/site-packages"):
        for pattern in ("ext_op*", "*_pd_.so", "rbox_iou.o", "nms_rotated.o", "matched_rbox_iou.o", "version.txt"):
            for path in sp.glob(pattern):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        pth = sp / "easy-install.pth"
        if pth.exists():
            pth.write_text("".join(ln for ln in pth.read_text().splitlines(True) if "ext_op" not in ln))


def drive_rotated(venv: Path, stack: str, src: Path, work: Path, log: Path) -> str:
    """ext_op built by `setup.py install` in a copy of ppdet/ext_op (recipes above); rbox_iou checked; DOTA eval."""
    import shutil

    notes = []
    stack_setuptools = pip_version(venv, "setuptools")
    built = False
    for label, setuptools, zlib_first in EXT_OP_RECIPES:
        if setuptools:
            sh(
                [venv / "bin/python", "-m", "pip", "install", "--quiet", f"setuptools=={setuptools}"],
                log,
                env={"PIP_CONSTRAINT": ""},
            )
        clean_ext_op(venv)
        ext = work / "ext_op"
        shutil.rmtree(ext, ignore_errors=True)
        shutil.copytree(src / "ppdet/ext_op", ext)
        code = ("import zlib; " if zlib_first else "") + SETUP_INSTALL
        if sh([venv / "bin/python", "-c", code], log, cwd=ext, env={"MAX_JOBS": "1"}, timeout=1800):
            notes.append(f"{label}: `setup.py install` fails: {first_error(log)}")
            continue
        if step(venv, "rotated-op", stack, src, work, log):
            notes.append(f"{label}: builds, but `from ext_op import rbox_iou` fails: {first_error(log)}")
            continue
        notes.append(f"{label}: ext_op builds on CPU, rbox_iou matches shapely")
        built = True
        break
    if pip_version(venv, "setuptools") != stack_setuptools:
        pip_install(venv, stack, [f"setuptools=={stack_setuptools}"], log)
    if not built:
        return "; ".join(notes) + "; DOTA eval not reached"
    rc, note = try_step(venv, "rotated-eval", stack, src, work, log)
    if rc:
        return "; ".join(notes) + f"; DOTA eval fails: {note}"
    ok = "tools/eval.py prints the RBOX mAP (and stops in map_utils without ext_op)"
    if note:
        notes.append(f"DOTA eval as PaddleDetection runs it: {note}")
    return ("runs: " if len(notes) == 1 else "runs with a workaround: ") + "; ".join(notes) + f"; {ok}"


# ppdet imports `lap` at start-up (ppdet/modeling/mot/matching/jde_matching.py); lapx provides the same module.
LAP_ALTERNATIVE = {"lap": "lapx"}


def drive_mot(venv: Path, stack: str, src: Path, work: Path, log: Path) -> str:
    """The tree's MOT packages; if the eval fails, the lap alternative; uninstalled afterwards (later tasks)."""
    pkgs, notes = MOT_PACKAGES[stack], []
    try:
        for attempt in range(2):
            if pip_install(venv, stack, pkgs, log):
                return "; ".join([*notes, f"pip install {' '.join(pkgs)} fails: {first_error(log)}"])
            versions = ", ".join(f"{p} {pip_version(venv, p)}" for p in pkgs)
            lap = "lap" if "lap" in pkgs else "lapx"
            if sh([venv / "bin/python", "-c", "import paddle; import lap"], log):  # ppdet's own import order
                notes.append(
                    f"`import paddle; import lap` crashes with {lap} {pip_version(venv, lap)}: {first_error(log)}"
                )
            rc, note = try_step(venv, "mot-eval", stack, src, work, log)
            ok = f"{versions}; tools/eval_mot.py (FairMOT) printed the motmetrics MOTA/IDF1 summary"
            if rc == 0:
                return (
                    f"runs: {ok}"
                    if not notes and not note
                    else "; ".join(x for x in [*notes, note, f"-> runs: {ok}"] if x)
                )
            notes.append(f"{versions}: tools/eval_mot.py fails: {note}")
            alt = [LAP_ALTERNATIVE.get(p, p) for p in pkgs]
            if attempt or alt == pkgs:
                break
            sh([venv / "bin/python", "-m", "pip", "uninstall", "-y", *pkgs], log)
            pkgs = alt
        return "; ".join(notes)
    finally:
        sh([venv / "bin/python", "-m", "pip", "uninstall", "-y", "motmetrics", "lap", "lapx"], log)


def drive_face(venv: Path, stack: str, src: Path, work: Path, log: Path) -> str:
    rc, note = try_step(venv, "face-eval", stack, src, work, log)
    if rc:
        return f"tools/eval.py fails: {note}"
    return (f"{note} -> " if note else "") + (work / "face-outcome.txt").read_text().strip()


DRIVERS = {"slim": drive_slim, "rotated": drive_rotated, "mot": drive_mot, "face": drive_face}


def main() -> int:
    import shutil

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stacks", nargs="+", default=list(STACKS), choices=list(STACKS))
    ap.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    ap.add_argument("--base", type=Path, default=Path("/tmp"))
    ap.add_argument("--from-tox", type=Path, help="copy <dir>/<stack> (a tox env dir) instead of installing")
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("HARNESS_SHARED", ROOT.parent / "shared")))
    ap.add_argument("--keep", action="store_true", help="keep the scratch venvs (default: delete them at the end)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = []
    for stack in args.stacks:
        vlog = args.base / f"measure-{stack}-venv.log"
        t0 = time.perf_counter()
        venv = make_venv(stack, args.base, args.from_tox, vlog)
        print(f"venv {stack}: {venv} ({time.perf_counter() - t0:.0f} s)", flush=True)
        src = extract(stack, args.base, args.shared)
        for task in args.tasks:
            work = args.base / f"measure-{stack}-{task}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            log = work / "log.txt"
            t0 = time.perf_counter()
            outcome = DRIVERS[task](venv, stack, src, work, log)
            secs = round(time.perf_counter() - t0)
            print(f"OUTCOME {task} {stack}: {outcome} [{secs} s; log {log}]", flush=True)
            results.append({"task": task, "stack": stack, "outcome": outcome, "seconds": secs, "log": str(log)})
        if not args.keep:
            shutil.rmtree(venv, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
