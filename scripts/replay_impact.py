"""Replay PaddleDetection's own history as nightly steps through the impact selection: how much of the zoo a
nightly with `--changed-since` would have run, commit by commit.

For the last N first-parent commits of develop before the pin, each commit is one night: the night before ran on
its parent and every model passed there; tonight runs on the commit, with paddle, the harness, the device, the
data and the zoo file unchanged. `harness.nightly.selection.select` (the function `harness run --changed-since`
calls) decides per model from the committed impact map of the pinned tree, the two commits' file listings
(`git ls-tree`) and, for files a model only imports, their contents (`git cat-file`). GPU-hours are the plan's
estimates (`harness.nightly.schedule.estimate`, 5000 images a model, as reports/plan-nightly.md).

The impact map is of the pinned tree; replaying older commits with it assumes a model's files moved little over
the range (the map of each commit would be exact; building 200 of them is not what this measures).

    .venv-current/bin/python scripts/replay_impact.py --repo /path/to/PaddleDetection.git [--nights 200]
        [--map reports/impact/current-<tree>.json] [--out reports/impact-replay.md]

The repository is a clone or mirror of PaddleDetection with its history (for reading; never a test dependency).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.nightly import schedule, selection  # noqa: E402
from harness.records import impact as impact_map  # noqa: E402
from harness.records.environment import NightEnv  # noqa: E402
from harness.records.results import Conditions, HistoryEntry  # noqa: E402
from harness.zoo.manifest import load_zoo  # noqa: E402

PIN = "666f597fd00d3157e84dd9fb2dd3f40bf9918ebc"


class Git:
    """The few git reads the replay needs, cached: a commit's tree, a tree's listing, a blob's bytes."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.listings: dict[str, dict[str, str]] = {}

    def run(self, *args: str) -> bytes:
        return subprocess.run(["git", "-C", str(self.repo), *args], check=True, capture_output=True).stdout

    def commits(self, tip: str, n: int) -> list[str]:
        """The last n first-parent commits up to `tip`, oldest first, with the parent of the oldest before them."""
        return self.run("rev-list", "--first-parent", f"-{n + 1}", tip).decode().split()[::-1]

    def tree(self, commit: str) -> str:
        return self.run("rev-parse", f"{commit}^{{tree}}").decode().strip()

    def listing(self, tree: str) -> dict[str, str]:
        if tree not in self.listings:
            out = self.run("ls-tree", "-r", "-z", tree).decode("utf-8", "surrogateescape")
            files = {}
            for line in filter(None, out.split("\0")):
                meta, path = line.split("\t", 1)
                _mode, kind, blob = meta.split()
                if kind == "blob":
                    files[path] = blob
            self.listings[tree] = files
        return self.listings[tree]

    def content(self, path: str, blob: str) -> bytes | None:
        try:
            return self.run("cat-file", "blob", blob)
        except subprocess.CalledProcessError:
            return None


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def night(git: Git, models: list[str], the_map, parent: str, commit: str) -> list[selection.Decision]:
    """The decisions of the night that moves PaddleDetection from `parent` to `commit`."""
    before, after = git.tree(parent), git.tree(commit)
    stable = {"paddle": the_map.paddle, "harness_commit": "replay", "device_name": "replay GPU"}
    history = [
        HistoryEntry(
            run_id=f"n-{parent[:10]}",
            finished="2000-01-01T00:00:00+00:00",
            model=m,
            status="pass",
            conditions=Conditions(stack=the_map.stack, device="gpu"),
            metrics={},
            env=NightEnv(ppdet_commit=parent, ppdet_tree=before, **stable),
        )
        for m in models
    ]
    tonight = selection.Tonight(
        env=NightEnv(ppdet_commit=commit, ppdet_tree=after, **stable),
        files=git.listing(after),
        stack=the_map.stack,
        device="gpu",
    )
    return selection.select(models, the_map, history, tonight, git.listing, content=git.content)


def _moved(git: Git, parent: str, commit: str) -> set[str]:
    a, b = git.listing(git.tree(parent)), git.listing(git.tree(commit))
    return {p for p in set(a) | set(b) if a.get(p) != b.get(p)}


def _soundness(path: Path) -> list[str]:
    """The soundness check's summary (scripts/impact_soundness.py's JSON), when it has been run."""
    if not path.is_file():
        return ["Soundness: not checked yet (`scripts/impact_soundness.py`).", ""]
    pairs = json.loads(path.read_text())
    outcomes = [o for p in pairs for o in p["outcomes"]]

    def n(called: str, result: str) -> int:
        return sum(1 for o in outcomes if o["called"] == called and o["result"] == result)

    judged = n("affected", "identical") + n("affected", "changed")
    return [
        f"Soundness ([{path.name.replace('.json', '.md')}]({path.name.replace('.json', '.md')}), "
        f"`scripts/impact_soundness.py`): {len(pairs)} commit pairs of this range that change modeling code "
        f"({', '.join(p['commit'][:10] for p in pairs)}); of the models the selection called unaffected, "
        f"{n('unaffected', 'identical')} predicted identically on both trees and **{n('unaffected', 'changed')} "
        f"changed**; of the affected ones run, {n('affected', 'changed')} of {judged} changed (the selection's "
        "precision on that sample).",
        "",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, required=True, help="a clone or mirror of PaddleDetection with its history")
    ap.add_argument("--pin", default=PIN)
    ap.add_argument("--nights", type=int, default=200)
    ap.add_argument("--zoo", type=Path, default=REPO / "zoos" / "paddledetection.yaml")
    ap.add_argument("--map", type=Path, default=None, help="default: the committed map of the current stack")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "impact-replay.md")
    ap.add_argument("--soundness", type=Path, default=REPO / "reports" / "impact-soundness.json")
    args = ap.parse_args()
    zoo, _ = load_zoo(args.zoo)
    path = args.map or sorted((REPO / "reports" / "impact").glob("current-*.json"))[0]
    the_map = impact_map.read(path)
    models = [m.name for m in zoo.models]
    hours = {
        m.name: schedule.estimate(zoo, m, schedule.NOMINAL_IMAGES, [], device="gpu").seconds() / 3600
        for m in zoo.models
    }
    full = sum(hours.values())
    git = Git(args.repo)
    commits = git.commits(args.pin, args.nights)
    rows, t0 = [], time.perf_counter()
    traced = [e for e in the_map.models.values() if e.status == "traced"]
    common = set.intersection(*(set(e.files) for e in traced))  # files every traced model executes
    failed = len(models) - len(traced)
    causes: dict[str, int] = {}
    shared: dict[str, int] = {}
    for parent, commit in itertools.pairwise(commits):
        decisions = night(git, models, the_map, parent, commit)
        chosen = [d for d in decisions if d.run]
        kinds = sorted({r.kind for d in chosen for r in d.reasons})
        if len(chosen) == len(models):
            moved = _moved(git, parent, commit)
            hit = sorted(moved & common)
            for changed in hit:
                shared[changed] = shared.get(changed, 0) + 1
            if "untraced" in kinds:
                cause = "a changed file under `ppdet/` no model executes (`untraced`)"
            elif hit:
                cause = "a changed file every traced model executes"
            elif "imported" in kinds:
                cause = "module-level code of files the models import (`imported`), with files some execute"
            else:
                cause = "changed files that together every traced model executes"
            causes[cause] = causes.get(cause, 0) + 1
        subject = git.run("log", "-1", "--format=%s", commit).decode().strip()
        rows.append((commit, subject, len(chosen), sum(hours[d.model] for d in chosen), kinds))
        print(f"{commit[:10]} {len(chosen):4d}/{len(models)} {','.join(kinds)}", file=sys.stderr)
    fractions = [n / len(models) for _, _, n, _, _ in rows]
    saved = sum(full - h for _, _, _, h, _ in rows)
    q = statistics.quantiles(fractions, n=10, method="inclusive")
    text = [
        "# Replaying PaddleDetection's history through the impact selection",
        "",
        f"`scripts/replay_impact.py`, {time.strftime('%Y-%m-%d')}: the last {len(rows)} first-parent commits of "
        f"develop up to {args.pin[:10]} ({commits[1][:10]} … {commits[-1][:10]}), each one night of "
        f"`harness run --changed-since` over the {len(models)} models of `{_shown(args.zoo)}`, with the "
        f"impact map `{_shown(path)}` ({the_map.stack}, paddle {the_map.paddle}); the night before "
        "ran on the commit's parent and every model passed there; paddle, the harness, the device, the data and the "
        f"zoo file do not change. GPU-hours: the plan's estimates, {schedule.NOMINAL_IMAGES} images a model; the "
        f"full zoo is {full:.1f} GPU-hours a night. Replay time {time.perf_counter() - t0:.0f} s.",
        "",
        "| | fraction of the zoo selected |",
        "|---|---|",
        f"| median | **{statistics.median(fractions):.1%}** |",
        f"| p90 | {q[8]:.1%} |",
        f"| nights selecting nothing | {sum(1 for f in fractions if f == 0)} of {len(rows)} |",
        f"| nights selecting everything | {sum(1 for f in fractions if f == 1)} of {len(rows)} |",
        "",
        f"GPU-hours over the {len(rows)} nights: {sum(r[3] for r in rows):.0f} selected against "
        f"{full * len(rows):.0f} for the full zoo every night: {saved:.0f} saved "
        f"({saved / (full * len(rows)):.1%}).",
        "",
        f"Every night selects the {failed} models whose trace failed ({failed / len(models):.1%} of the zoo: "
        "their eval fails on this stack at the map's size, so nothing says what they execute); no night can "
        "select fewer.",
        "",
        "Why the nights that select every model do:",
        "",
        "| cause | nights |",
        "|---|---:|",
        *(f"| {c} | {n} |" for c, n in sorted(causes.items(), key=lambda kv: -kv[1])),
        "",
        "A file every traced model executes (the engine, the shared ops and layers) selects the whole zoo whatever "
        "the change inside it; those changed most often here: "
        + ", ".join(f"`{p}` ({n})" for p, n in sorted(shared.items(), key=lambda kv: -kv[1])[:8])
        + ". `untraced` is a changed file under `ppdet/` that no model executed in the map's CPU trace (code only "
        "a GPU, training or another task runs, or a new module): the conservative rule. The map's limits "
        "(tracing on a CPU at 160 px with random weights) are in docs/nightly.md.",
        "",
        *_soundness(args.soundness),
        "| commit | subject | models | GPU-hours | reasons |",
        "|---|---|---:|---:|---|",
        *(
            f"| {c[:10]} | {s[:70].replace('|', '/')} | {n} | {h:.1f} | {', '.join(k)} |"
            for c, s, n, h, k in reversed(rows)
        ),
        "",
    ]
    args.out.write_text("\n".join(text), encoding="utf-8")
    print("\n".join(text[:14]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
