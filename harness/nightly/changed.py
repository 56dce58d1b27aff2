"""`--changed-since`: tonight's facts gathered for the selection, and the record of a model carried over.

Why apart from selection.py: the selection is a pure function of listings, a map and the history (table-tested
on synthetic trees); this module finds tonight's PaddleDetection tree, paddle, the harness commit and the driver,
and writes what a skipped model leaves in tonight's run: a result of status "carried" naming the night it stands
for, never a pass of tonight.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from harness.core.errors import HarnessError, UsageError
from harness.fetch import source, treefiles
from harness.model.inputs import Options
from harness.nightly import runner
from harness.nightly import verification as v
from harness.nightly.selection import Decision, Tonight, select
from harness.records import impact
from harness.records.environment import NightEnv
from harness.records.results import CARRIED, Carried, HistoryEntry, Result, now
from harness.zoo.lockfile import LockFile
from harness.zoo.manifest import Zoo

TREE_ID = re.compile(r"[0-9a-f]{40}")


def tonight(
    zoo: Zoo, zoo_path: Path, opts: Options, device: str | None, datasets: dict[str, str] | None = None
) -> tuple[Tonight, Path, Path | None]:
    """Tonight's environment (the device's name included) and PaddleDetection files (the checkout of
    `--ppdet-root`, else the pinned archive, fetched and extracted as a run does), its root, and the git repository
    that may hold older trees (a checkout's). `datasets`: each model's dataset digest (dataset_digests)."""
    stack, pin = zoo.source(opts.stack)
    tree = source.checkout(opts.ppdet_root, pin) if opts.ppdet_root else source.prepare(pin)
    machine = runner.environment()
    env = NightEnv(
        paddle=machine.get("paddle"),
        ppdet_commit=tree.commit,
        ppdet_tree=tree.tree,
        harness_commit=runner._git_sha(),
        cuda=machine.get("cuda"),
        driver=machine.get("driver"),
        device_name=_device_name(device),
        zoo_sha256=hashlib.sha256(zoo_path.read_bytes()).hexdigest(),
    )
    git = tree.root if (tree.root / ".git").exists() else None
    files = treefiles.of_directory(tree.root)
    return Tonight(env, files, datasets=datasets or {}, stack=stack, device=device), tree.root, git


def _device_name(device: str | None) -> str | None:
    """The name the worker will record for tonight's device: the GPU's (nvidia-smi), else the CPU's model name."""
    if device == "gpu":
        return runner.gpu_name()
    from harness.model.timing import device_name

    return device_name(device or "cpu")


def dataset_digests(zoo: Zoo, lock: LockFile, opts: Options, names: list[str]) -> dict[str, str]:
    """Each model's dataset as tonight's run prepares it (fetched, subset, checked): its annotations' sha256, what
    the history records; a dataset that cannot be prepared is `not prepared: WHY` (its models run, and fail by
    name). Why before the selection: a changed dataset selects its models, and a carried model never runs."""
    from harness.fetch import dataset
    from harness.model.inputs import data_roots

    models = zoo.select(names)
    wanted = zoo.datasets_of(models)
    roots = data_roots(zoo, opts, [d.name for d in wanted])
    digest: dict[str, str] = {}
    for ds in wanted:
        try:
            data = dataset.prepare(
                ds, lock, data_dir=roots[ds.name], subset=opts.subset, seed=opts.seed, locked=opts.locked
            )
            digest[ds.name] = data.annotations_sha256 or "not prepared: no annotations digest"
        except HarnessError as exc:
            digest[ds.name] = "not prepared: " + " ".join(exc.message.split())[:200]
    return {m.name: digest[m.dataset or zoo.dataset.name] for m in models}


def decide(
    zoo: Zoo,
    zoo_path: Path,
    opts: Options,
    history: list[HistoryEntry],
    since: str,
    impact_map: Path | None,
    *,
    rotate: int | None = None,
    device: str | None = None,
    models: list[str] | None = None,
    lock: LockFile | None = None,
) -> list[Decision]:
    """The selection for tonight (`since`: a night of the history or a PaddleDetection tree id). With `lock` (a
    run), every model's dataset is prepared first and its digest compared; without (a plan), datasets are not."""
    if impact_map is None:  # the map committed for the pinned tree of this stack
        stack, pin = zoo.source(opts.stack)
        impact_map = impact.default_path(stack, pin.tree)
        if not impact_map.is_file():
            raise UsageError(
                f"--changed-since: no impact map at {impact_map} (the default for stack {stack})",
                hint="pass --impact-map PATH, or build one with `harness impact build`",
            )
    if rotate is not None and rotate < 1:
        raise UsageError(f"--rotate {rotate}: expected 1 or more nights")
    if since not in {e.run_id for e in history} and not TREE_ID.fullmatch(since):
        raise UsageError(
            f"--changed-since {since}: neither a night of the history nor a git tree id (40 hex digits)",
            hint="name a run id from the history (`harness report`'s nights) or a PaddleDetection tree id",
        )
    the_map = impact.read(impact_map)
    names = models or [m.name for m in zoo.models]
    datasets = dataset_digests(zoo, lock, opts, names) if lock is not None else None
    night, root, git = tonight(zoo, zoo_path, opts, device, datasets)
    return select(
        names,
        the_map,
        history,
        night,
        lambda tree: treefiles.find(tree, git),
        since=since,
        rotate=rotate,
        content=treefiles.reader([root, *treefiles.extractions()], git),
    )


def carried_record(zoo: Zoo, model: str, run_id: str, stack: str, d: Decision, base: HistoryEntry | None) -> Result:
    """Tonight's record of a model that did not run: status "carried", the night it stands for, its digest and
    what it measured then (shown as that night's, never as tonight's)."""
    assert not d.run and d.since is not None and d.digest is not None
    rec = v.start_record(zoo, zoo.select([model])[0], run_id, stack)
    rec.status = CARRIED
    rec.carried = Carried(
        run_id=d.since,
        finished=d.since_finished,
        digest=d.digest,
        measured={k: j.measured for k, j in base.metrics.items()} if base else {},
        fps=base.fps if base else None,
    )
    rec.finished = now()
    return rec
