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

from harness.core.errors import UsageError
from harness.fetch import source, treefiles
from harness.model.inputs import Options
from harness.nightly import runner
from harness.nightly import verification as v
from harness.nightly.selection import Decision, Tonight, select
from harness.records import impact
from harness.records.environment import NightEnv
from harness.records.results import CARRIED, Carried, HistoryEntry, Result, now
from harness.zoo.manifest import Zoo

TREE_ID = re.compile(r"[0-9a-f]{40}")


def tonight(zoo: Zoo, zoo_path: Path, opts: Options, device: str | None) -> tuple[Tonight, Path, Path | None]:
    """Tonight's environment and PaddleDetection files (the checkout of `--ppdet-root`, else the pinned archive,
    fetched and extracted as a run does), its root, and the git repository that may hold older trees (a checkout's)."""
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
        zoo_sha256=hashlib.sha256(zoo_path.read_bytes()).hexdigest(),
    )
    git = tree.root if (tree.root / ".git").exists() else None
    return Tonight(env, treefiles.of_directory(tree.root), stack=stack, device=device), tree.root, git


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
) -> list[Decision]:
    """The selection for tonight (`since`: a night of the history or a PaddleDetection tree id)."""
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
    night, root, git = tonight(zoo, zoo_path, opts, device)
    names = models or [m.name for m in zoo.models]
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
