"""Running one worker: its own process group, its log streamed to a file and to a progress bar, a timeout,
Ctrl-C / SIGTERM that kill every running worker, and its answer read back (protocol.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from harness.core.errors import StageError
from harness.model import protocol
from harness.model.inputs import Options
from harness.model.protocol import Spec, WorkerResult

LOG_TAIL = 40
# `harness impact build` sets this: each worker runs under coverage.py, tracing only the PaddleDetection tree it
# is given, into TRACE_FILE beside its spec (harness/nightly/impact.py reads it back).
TRACE_ENV = "HARNESS_IMPACT_TRACE"
TRACE_FILE = "trace.coverage"


def log_tail(path: Path, n: int = LOG_TAIL) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


_RUNNING: set[subprocess.Popen] = set()
_INTERRUPTED = threading.Event()


class Interrupted(KeyboardInterrupt):
    """Raised in a worker's thread when the run was interrupted (its worker was killed for that)."""


def interrupt_all() -> None:
    """Stop every running worker (Ctrl-C / SIGTERM while models run in parallel threads)."""
    _INTERRUPTED.set()
    for proc in list(_RUNNING):
        _kill_group(proc)


def run_worker(
    spec: Spec, mdir: Path, opts: Options, *, label: str, cancel: threading.Event | None = None
) -> WorkerResult:
    """Run the worker in its own process group; stream its log; return its answer (protocol.py). Setting
    `cancel` kills it (another slice of the same model failed: this one's work would be thrown away)."""
    mdir.mkdir(parents=True, exist_ok=True)
    spec_path, log_path, out_path = mdir / protocol.SPEC, mdir / "worker.log", mdir / protocol.ANSWER
    out_path.unlink(missing_ok=True)
    protocol.write_spec(spec_path, spec)
    cmd = worker_command(spec, spec_path, mdir)
    timeout_s = opts.timeout_s
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(opts), start_new_session=True
    )
    _RUNNING.add(proc)
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        _kill_group(proc)

    timer = threading.Timer(timeout_s, kill) if timeout_s else None
    if timer:
        timer.start()
    if cancel is not None:
        threading.Thread(target=_kill_when, args=(cancel, proc), daemon=True).start()
    try:
        _stream(proc, log_path, label, opts.progress)
        rc = proc.wait()
    except BaseException:  # KeyboardInterrupt included: never leave a worker behind
        _kill_group(proc)
        raise
    finally:
        _RUNNING.discard(proc)
        if timer:
            timer.cancel()
    if _INTERRUPTED.is_set():
        raise Interrupted()
    if timed_out.is_set():
        raise StageError(
            f"worker timed out after {timeout_s:g} s and was killed",
            log_tail=log_tail(log_path),
            hint="raise --timeout, or use --subset",
        )
    return _answer(out_path, log_path, rc)


def worker_command(spec: Spec, spec_path: Path, mdir: Path) -> list[str]:
    """`python -m harness.model.worker eval --spec SPEC`, under coverage.py when TRACE_ENV is set (the impact map:
    only files of the spec's PaddleDetection tree are traced, so paddle's own Python runs at full speed)."""
    worker = ["-m", "harness.model.worker", "eval", "--spec", str(spec_path)]
    if os.environ.get(TRACE_ENV) != "1":
        return [sys.executable, *worker]
    root = Path(spec.ppdet_root).resolve()
    data = (mdir / TRACE_FILE).resolve()
    data.unlink(missing_ok=True)
    return [sys.executable, "-m", "coverage", "run", f"--data-file={data}", f"--include={root}/*", *worker]


def _env(opts: Options) -> dict[str, str]:
    """The worker's environment: unbuffered output, the parent's pid (die_with_parent), its threads and GPU."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HARNESS_PARENT_PID": str(os.getpid())}
    if opts.threads or "OMP_NUM_THREADS" not in env:  # paddle would pin itself to 1 thread
        env["OMP_NUM_THREADS"] = str(opts.threads or os.cpu_count() or 1)
    if opts.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = opts.gpu
    return env


def _stream(proc: subprocess.Popen, log_path: Path, label: str, progress: bool | None) -> None:
    """The worker's output into its log, except its progress lines, which move a bar on stderr."""
    from tqdm import tqdm

    quiet = None if progress is None else not progress
    with (
        log_path.open("w") as logf,
        tqdm(desc=label, unit="img", disable=quiet, file=sys.stderr, leave=False) as bar,
    ):
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith(protocol.PROGRESS):
                done, total = (int(x) for x in line.split()[1:3])
                bar.total = total
                bar.update(done - bar.n)
                continue
            logf.write(line)


def _answer(out_path: Path, log_path: Path, rc: int) -> WorkerResult:
    """The worker's answer; none at all is a crash, named by how the process ended."""
    record = protocol.read_answer(out_path)
    if record is None:
        how = f"killed by signal {signal.Signals(-rc).name}" if rc < 0 else f"exited with code {rc}"
        raise StageError(
            f"worker {how} without a result (crash or out of memory?)",
            log_tail=log_tail(log_path),
            hint=f"see {log_path}",
        )
    return record


def _kill_when(cancel: threading.Event, proc: subprocess.Popen) -> None:
    while proc.poll() is None:
        if cancel.wait(0.2):
            _kill_group(proc)
            return


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
