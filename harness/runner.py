"""`harness run`: the nightly over the zoo (or a shard of it), model by model, nothing lost.

Each model is verified in its own worker subprocess (see verification.py): a crash, an OOM, a segfault or
a timeout becomes that model's `error` result with its log's tail, and the run goes on. Results are
written atomically as each model finishes, so a killed run loses at most the model in flight, and
`--resume` skips every model that already has a complete result. Scale-out uses what CI systems already
have: `--shard I/N` (or the CI's index variables) takes a deterministic slice of the zoo, `--gpus` runs one
model per GPU at once; `harness report DIR...` merges the shards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import platform
import queue
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from harness import __version__
from harness.errors import HarnessError, UsageError
from harness.files import atomic_write_json, read_json
from harness.inputs import Options, prepare
from harness.launcher import interrupt_all
from harness.lockfile import LockFile
from harness.manifest import Model, Zoo
from harness.results import RESULT, model_dir, now, read, write
from harness.verdict import ERROR, FAIL
from harness.verification import start_record, verify

log = logging.getLogger(__name__)
RUN = "run.json"


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `total`, 1-based (`--shard 2/3`): models i with i mod total == index-1, zoo order."""

    index: int = 1
    total: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            i, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise UsageError(f"--shard {text!r}: expected I/N, e.g. 2/3") from None
        if not 1 <= i <= n:
            raise UsageError(f"--shard {text}: I must be between 1 and N")
        return cls(i, n)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Shard:
        """$HARNESS_SHARD (I/N), else a 0-based index with a total: $HARNESS_SHARD_INDEX/$HARNESS_SHARD_TOTAL
        (e.g. GitHub's strategy.job-index/job-total) or Kubernetes' $JOB_COMPLETION_INDEX with
        $HARNESS_SHARD_TOTAL."""
        env = os.environ if env is None else env
        if env.get("HARNESS_SHARD"):
            return cls.parse(env["HARNESS_SHARD"])
        index = env.get("HARNESS_SHARD_INDEX") or env.get("JOB_COMPLETION_INDEX")
        if index is not None and env.get("HARNESS_SHARD_TOTAL"):
            return cls.parse(f"{int(index) + 1}/{env['HARNESS_SHARD_TOTAL']}")
        return cls()

    def pick(self, models: list[Model]) -> list[Model]:
        return [m for i, m in enumerate(models) if i % self.total == self.index - 1]

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"


def complete(run_dir: Path, model: str) -> bool:
    """A result that `--resume` may keep: readable, for this model, finished, with a final status."""
    path = model_dir(run_dir, model) / RESULT
    try:
        rec = read([path])[0] if path.is_file() else None
    except UsageError:  # unreadable or not of the schema: evaluated again
        return False
    return rec is not None and rec["model"] == model and bool(rec["finished"])


def gpu_list(spec: str | None) -> list[str]:
    """`--gpus 0,1,3` or `--gpus all` (every GPU nvidia-smi lists); empty: one model at a time."""
    if not spec:
        return []
    if spec == "all":
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            raise UsageError("--gpus all: nvidia-smi lists no GPU", hint="pass the ids, e.g. --gpus 0,1") from None
        return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
    ids = [g.strip() for g in spec.split(",") if g.strip()]
    if not ids or len(set(ids)) != len(ids):
        raise UsageError(f"--gpus {spec!r}: expected distinct ids like 0,1,2 or 'all'")
    return ids


def _git_sha() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _paddle_version() -> str | None:
    for dist in ("paddlepaddle-gpu", "paddlepaddle"):
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return None


def environment() -> dict:
    return {"host": socket.gethostname(), "platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "paddle": _paddle_version(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def _error_result(zoo: Zoo, model: Model, run_id: str, stack: str, stage: str, exc: HarnessError) -> dict:
    """The result of a model that never reached verify (the run's shared preparation failed)."""
    return {**start_record(zoo, model, run_id, stack), "error": {"stage": stage, "message": str(exc)},
            "finished": now()}


def run(zoo: Zoo, zoo_path: Path, lock: LockFile, names: list[str] | None, opts: Options, run_dir: Path, *,
        resume: bool = False, shard: Shard = Shard(), gpus: list[str] | None = None) -> list[dict]:
    """Verify the selected models of this shard into `run_dir`; returns their results in zoo order."""
    selected = shard.pick(zoo.select(names))
    run_id = opts.run_id or run_dir.name
    opts = dataclasses.replace(opts, run_id=run_id, progress=False if gpus else opts.progress)
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = read_json(run_dir / RUN) if resume else None
    meta = {
        "run_id": run_id, "zoo": str(zoo_path), "zoo_sha256": hashlib.sha256(zoo_path.read_bytes()).hexdigest(),
        "harness": __version__, "harness_git_sha": _git_sha(), "environment": environment(),
        "shard": str(shard), "gpus": gpus or None, "models": [m.name for m in selected],
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(opts).items()},
        "started": (previous or {}).get("started") or now(), "resumed": [now()] if resume else [],
        "finished": None,
    }
    if previous:
        meta["resumed"] = [*previous.get("resumed", []), *meta["resumed"]]
    atomic_write_json(run_dir / RUN, meta, sort_keys=False)

    todo = [m for m in selected if not (resume and complete(run_dir, m.name))]
    for m in selected:
        if m not in todo:
            log.info("%s: complete result kept (--resume)", m.name)
    if todo:
        try:
            inputs = prepare(zoo, lock, opts)
        except HarnessError as exc:  # no source or no dataset: every model says so, none is silent
            log.error("preparing the run failed: %s", exc)
            for m in todo:
                write(run_dir, _error_result(zoo, m, run_id, zoo.source(opts.stack)[0], "prepare", exc))
            todo = []
        if gpus:
            free: queue.Queue[str] = queue.Queue()
            for g in gpus:
                free.put(g)

            def one(m: Model) -> None:
                gpu = free.get()
                try:
                    _announce(verify(zoo, m, inputs, lock, dataclasses.replace(opts, gpu=gpu), run_dir), gpu)
                finally:
                    free.put(gpu)

            pool = ThreadPoolExecutor(max_workers=len(gpus))
            try:
                list(pool.map(one, todo))
            except KeyboardInterrupt:
                interrupt_all()  # the threads' workers die, their partial model directories are removed
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown()
        else:
            for m in todo:
                _announce(verify(zoo, m, inputs, lock, opts, run_dir), None)
    records = [read([model_dir(run_dir, m.name) / RESULT])[0] for m in selected]
    meta["finished"] = now()
    meta["counts"] = {s: sum(r["status"] == s for r in records) for s in ("pass", "fail", "error")}
    atomic_write_json(run_dir / RUN, meta, sort_keys=False)
    return records


def _announce(rec: dict, gpu: str | None) -> None:
    where = f" (GPU {gpu})" if gpu is not None else ""
    detail = rec["error"]["message"].splitlines()[0] if rec.get("error") else \
        "; ".join(v["reason"] for v in rec.get("metrics", {}).values())
    log.info("%s%s: %s — %s", rec["model"], where, rec["status"].upper(), detail)


def exit_code(records: list[dict]) -> int:
    statuses = {r["status"] for r in records}
    return 3 if ERROR in statuses else 1 if FAIL in statuses else 0
