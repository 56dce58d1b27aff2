"""Is the impact selection sound on real history? For commit pairs of PaddleDetection's develop that change
modeling code, run models the selection calls unaffected on both trees and check their predictions are identical;
run models it calls affected and count how many actually changed (the selection's precision).

Per pair (parent, commit), on the stack this interpreter runs (paddle of the current stack):
1. `harness.nightly.selection.select` decides every model of the zoo from the committed impact map, as
   scripts/replay_impact.py does for the night that moves the tree from parent to commit.
2. Both trees are written out of the repository (`ppdet/`, `configs/`, `tools/`; blobs a partial mirror lacks are
   listed and left out of both).
3. A sample of unaffected models (first those that import a changed file: a change the map judged by its
   module-level code alone; then others, seeded) and of affected ones. Random weights are built from each model's
   config on the parent's tree (BatchNorm calibrated), and a synthetic set of its dataset is served on 127.0.0.1:
   the rehearsal's machinery, as `harness impact build` uses it.
4. `harness run --threads 1 --device cpu --ppdet-root TREE` on each tree, the same weights and images; the
   prediction files of each model are compared byte for byte.

A model that ran on both trees is `identical` or `changed`; one that failed on one tree only is `changed`. One that
failed on both the same way (`failed on both`), or predicted nothing on either (`empty on both`: random weights
whose scores stay under the model's threshold) judges nothing: it is named, not counted.

    .venv-current/bin/python scripts/impact_soundness.py --repo /path/to/PaddleDetection.git \\
        [--pairs 5] [--commit SHA ...] [--unaffected 8] [--affected 4] [--prefer /tmp/harness-impact-current/run]
        [--out reports/impact-soundness.md]

The repository is a clone or mirror of PaddleDetection with its history (for reading; never a test dependency).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from replay_impact import PIN, Git, night  # noqa: E402

from harness.core.files import read_json  # noqa: E402
from harness.nightly.impact import _subzoo  # noqa: E402
from harness.nightly.rehearsal import build_mirror, mirror_zoo, serve  # noqa: E402
from harness.records import impact as impact_map  # noqa: E402
from harness.zoo.manifest import parse_zoo  # noqa: E402

PARTS = ("ppdet/", "configs/", "tools/", "setup.py", "requirements.txt")
MODELING = ("ppdet/modeling/",)  # the models themselves: architectures, backbones, necks, heads, post-processing
EVAL_SIZE = 160
CHANGE = {"file", "config", "imported", "untraced"}  # the reasons that are a change between the two trees


def informative(run_dir: Path) -> set[str]:
    """The models of a run directory (the impact build's, `<work>/run`) whose prediction files hold something:
    random weights under a model's score threshold predict nothing, and nothing compared judges nothing."""
    return {p.name for p in run_dir.iterdir() if p.is_dir() and _count(_predictions(run_dir, p.name))}


@dataclass
class Outcome:
    model: str
    called: str  # unaffected | affected
    result: str  # identical | changed | empty on both | failed on both | not built
    detail: str = ""
    predictions: int = 0  # prediction records compared (a file's entries)


@dataclass
class Pair:
    parent: str
    commit: str
    subject: str
    changed: list[str]
    selected: int
    models: int
    missing_blobs: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0


def export(git: Git, commit: str, dest: Path) -> list[str]:
    """The commit's files under PARTS written to `dest`; returns the paths whose blobs the repository lacks."""
    listing = git.listing(git.tree(commit))
    paths = sorted(p for p in listing if p.startswith(PARTS))
    missing = []
    proc = subprocess.Popen(
        ["git", "-C", str(git.repo), "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    for path in paths:
        proc.stdin.write(f"{listing[path]}\n".encode())
        proc.stdin.flush()
        header = proc.stdout.readline().split()
        if len(header) < 3 or header[1] != b"blob":
            missing.append(path)
            continue
        data = proc.stdout.read(int(header[2]))
        proc.stdout.read(1)  # the newline after the contents
        out = dest / path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    proc.stdin.close()
    proc.wait()
    return missing


def _archive(root: Path, commit: str, out: Path) -> Path:
    """A GitHub-style archive of an exported tree (one `PaddleDetection-<commit>/` directory): what the mirror
    serves as the parent's source, so the random weights are built from the parent's configs."""
    with tarfile.open(out, "w:gz", compresslevel=1) as tf:
        tf.add(root, arcname=f"PaddleDetection-{commit}")
    return out


def pick_pairs(git: Git, commits: list[str], n: int, leaves_some: Callable[[str, str], bool]) -> list[tuple[str, str]]:
    """The newest `n` first-parent commits of the range whose change touches modeling code (MODELING) and after
    which the selection leaves some model unaffected (`leaves_some(parent, commit)`): a pair that selects every model
    has no unaffected model to check."""
    out = []
    for parent, commit in reversed(list(itertools.pairwise(commits))):
        changed = _changed(git, parent, commit)
        if any(p.startswith(MODELING) and p.endswith(".py") for p in changed) and leaves_some(parent, commit):
            out.append((parent, commit))
        if len(out) == n:
            break
    return out


def _changed(git: Git, parent: str, commit: str) -> list[str]:
    a, b = git.listing(git.tree(parent)), git.listing(git.tree(commit))
    return sorted(p for p in set(a) | set(b) if a.get(p) != b.get(p))


def sample(
    decisions,
    the_map,
    arch: dict[str, str],
    changed: list[str],
    k_free: int,
    k_hit: int,
    seed: str,
    informative: set[str] | None = None,
) -> list[tuple[str, str]]:
    """(model, called) pairs: unaffected models that import a changed file first, then other unaffected ones, one
    per architecture where it can (seeded by the pair); affected ones (selected for a change, not for a failed
    trace), seeded. With `informative` (models whose random weights predict something), only those."""
    rng = random.Random(seed)
    moved = set(changed)
    keep = (lambda m: m in informative) if informative is not None else (lambda m: True)
    free = [d.model for d in decisions if not d.run and the_map.models[d.model].status == "traced" and keep(d.model)]
    hit = [d.model for d in decisions if d.run and keep(d.model) and {r.kind for r in d.reasons} & CHANGE]
    near = [m for m in free if moved & set(the_map.models[m].imported)]
    rng.shuffle(near)
    rest = [m for m in free if m not in near]
    rng.shuffle(rest)
    chosen: list[str] = near[: k_free // 2]
    arch_seen: set[str] = set()
    for m in rest:
        if len(chosen) >= k_free:
            break
        if arch.get(m, m) not in arch_seen:
            arch_seen.add(arch.get(m, m))
            chosen.append(m)
    chosen += [m for m in rest + near if m not in chosen][: k_free - len(chosen)]
    rng.shuffle(hit)
    return [(m, "unaffected") for m in chosen] + [(m, "affected") for m in hit[:k_hit]]


def _predictions(run: Path, model: str) -> dict[str, bytes]:
    d = run / model / "predictions"
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _count(files: dict[str, bytes]) -> int:
    n = 0
    for name, data in files.items():
        if name.endswith(".json"):
            try:
                doc = json.loads(data)
            except ValueError:
                continue
            n += len(doc) if isinstance(doc, list) else 1
    return n


def _error(run: Path, model: str) -> str | None:
    rec = read_json(run / model / "result.json") or {}
    if rec.get("status") == "error" or not rec:
        err = rec.get("error") or {}
        return f"{err.get('stage')}: {' '.join(str(err.get('message')).split())[:200]}" if err else "no result"
    return None


def compare(run_a: Path, run_b: Path, model: str, called: str) -> Outcome:
    """One model's outcome from its two run directories (the parent's tree, the commit's)."""
    ea, eb = _error(run_a, model), _error(run_b, model)
    if ea and eb:
        same = ea == eb
        return Outcome(model, called, "failed on both" if same else "changed", ea if same else f"{ea} | {eb}")
    if ea or eb:
        return Outcome(model, called, "changed", f"parent: {ea or 'ran'}; commit: {eb or 'ran'}")
    a, b = _predictions(run_a, model), _predictions(run_b, model)
    if a == b:
        digest = hashlib.sha256(b"".join(a[k] for k in sorted(a))).hexdigest()[:12]
        n = _count(a)  # no prediction on either tree (random weights scoring under the threshold) judges nothing
        return Outcome(model, called, "identical" if n else "empty on both", f"{len(a)} files, sha256 {digest}", n)
    names = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return Outcome(model, called, "changed", "differ: " + ", ".join(names), _count(a))


def _run(served: Path, root: Path, out: Path, names: list[str], env: dict[str, str], log: Path) -> None:
    cmd = [sys.executable, "-m", "harness", "run", "--zoo", str(served), "--out", str(out), "--device", "cpu"]
    cmd += ["--eval-size", str(EVAL_SIZE), "--no-timing", "--threads", "1", "--ppdet-root", str(root)]
    cmd += ["--history", str(out.parent / f"history-{out.name}.jsonl"), *names]
    with log.open("a") as fh:
        subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)


def check_pair(git: Git, raw: dict, the_map, models: list[str], parent: str, commit: str, args) -> Pair:
    t0 = time.perf_counter()
    changed = _changed(git, parent, commit)
    decisions = night(git, models, the_map, parent, commit)
    subject = git.run("log", "-1", "--format=%s", commit).decode().strip()
    pair = Pair(parent, commit, subject, changed, sum(d.run for d in decisions), len(models))
    work = args.work / commit[:10]
    shutil.rmtree(work, ignore_errors=True)
    trees = {c: work / "trees" / c[:10] for c in (parent, commit)}
    missing = {c: export(git, c, root) for c, root in trees.items()}
    pair.missing_blobs = len(set(missing[parent]) | set(missing[commit]))
    arch = {m["name"]: m.get("architecture") or m["table"] for m in raw["models"]}
    prefer = informative(args.prefer) if args.prefer else None
    picks = sample(decisions, the_map, arch, changed, args.unaffected, args.affected, commit, prefer)
    names = [m for m, _ in picks]
    zoo_raw = _subzoo(raw, names)
    zoo_raw["sources"] = {the_map.stack: {**raw["sources"][the_map.stack], "commit": parent}}
    zoo = parse_zoo(zoo_raw)
    failed: dict[str, str] = {}
    archive = _archive(trees[parent], parent, work / f"PaddleDetection-{parent}.tar.gz")
    mirror = build_mirror(work / "mirror", zoo, the_map.stack, n_images=2, archive=archive, failed=failed)
    env = {**os.environ, "HARNESS_CACHE": str(work / "cache"), "HARNESS_STACK": the_map.stack}
    ok = [n for n in names if n not in failed]
    with serve(mirror, 0) as base:
        served = work / "served.yaml"
        served.write_text(yaml.safe_dump(mirror_zoo(parse_zoo(_subzoo(zoo_raw, ok)), the_map.stack, base, mirror)))
        runs = {c: work / ("parent" if c == parent else "commit") for c in trees}
        for c, out in runs.items():
            if ok:
                _run(served, trees[c], out, ok, env, work / "runs.log")
    for model, called in picks:
        if model in failed:
            pair.outcomes.append(Outcome(model, called, "not built", failed[model][:200]))
        else:
            pair.outcomes.append(compare(runs[parent], runs[commit], model, called))
    pair.seconds = round(time.perf_counter() - t0, 1)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return pair


def _report(pairs: list[Pair], the_map, map_path: str, args) -> list[str]:
    free = [o for p in pairs for o in p.outcomes if o.called == "unaffected"]
    hit = [o for p in pairs for o in p.outcomes if o.called == "affected"]
    judged_free = [o for o in free if o.result in ("identical", "changed")]
    judged_hit = [o for o in hit if o.result in ("identical", "changed")]
    wrong = [o for o in judged_free if o.result == "changed"]
    moved = [o for o in judged_hit if o.result == "changed"]
    lines = [
        "# Soundness of the impact selection on real commit pairs",
        "",
        f"`scripts/impact_soundness.py`, {time.strftime('%Y-%m-%d')}: {len(pairs)} first-parent commits of "
        f"develop before {PIN[:10]} that change modeling code, each against its parent. The selection decides "
        f"from `{map_path}` ({the_map.stack}, paddle {the_map.paddle}); the sampled models run on both trees "
        f"with the same random weights (built from the parent's configs, BatchNorm calibrated) on 2 synthetic "
        f"images at {EVAL_SIZE} px, `--threads 1 --device cpu`; their prediction files are compared byte for byte."
        + (
            f" Models are sampled among the {len(informative(args.prefer))} whose random weights predicted something "
            "in the impact build (random weights under a model's score threshold predict nothing on either tree)."
            if args.prefer
            else ""
        ),
        "",
        "| | models | predictions identical | changed | judging nothing (empty, failed on both, not built) |",
        "|---|---:|---:|---:|---:|",
        f"| called unaffected | {len(free)} | {len(judged_free) - len(wrong)} | **{len(wrong)}** | "
        f"{len(free) - len(judged_free)} |",
        f"| called affected | {len(hit)} | {len(judged_hit) - len(moved)} | {len(moved)} | "
        f"{len(hit) - len(judged_hit)} |",
        "",
        f"Unaffected models whose predictions changed: **{len(wrong)}**"
        + (" — the selection missed no change on any pair checked." if not wrong else " — the selection is unsound."),
        f"Precision of the selection on the affected sample: {len(moved)} of {len(judged_hit)} models it selected "
        "changed their predictions (a selected model that does not change costs GPU time, never a missed result).",
        "",
    ]
    for p in pairs:
        lines += [
            f"## {p.commit[:10]} {p.subject[:90]}",
            "",
            f"Parent {p.parent[:10]}; {len(p.changed)} files changed ({', '.join(p.changed[:6])}"
            f"{' …' if len(p.changed) > 6 else ''}); selected {p.selected} of {p.models} models; "
            f"{p.missing_blobs} blobs absent from the mirror (left out of both trees); {p.seconds:.0f} s.",
            "",
            "| model | called | predictions | records | detail |",
            "|---|---|---|---:|---|",
            *(
                f"| {o.model} | {o.called} | {o.result} | {o.predictions} | {o.detail.replace('|', '/')[:160]} |"
                for o in p.outcomes
            ),
            "",
        ]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, required=True, help="a clone or mirror of PaddleDetection with its history")
    ap.add_argument("--nights", type=int, default=200, help="the range: this many commits before the pin")
    ap.add_argument("--pairs", type=int, default=5, help="commit pairs to check (newest first)")
    ap.add_argument("--commit", nargs="*", default=[], help="check these commits (against their first parent)")
    ap.add_argument("--unaffected", type=int, default=8, help="unaffected models sampled per pair")
    ap.add_argument("--affected", type=int, default=4, help="affected models sampled per pair")
    ap.add_argument("--zoo", type=Path, default=REPO / "zoos" / "paddledetection.yaml")
    ap.add_argument("--map", type=Path, default=None, help="default: the committed map of the current stack")
    ap.add_argument("--work", type=Path, default=Path("/tmp/harness-soundness"))
    ap.add_argument("--keep", action="store_true", help="keep each pair's trees and runs")
    ap.add_argument(
        "--prefer",
        type=Path,
        metavar="RUN_DIR",
        help="sample only models that predicted something in this run directory (the impact build's <work>/run)",
    )
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "impact-soundness.md")
    args = ap.parse_args()
    raw = yaml.safe_load(args.zoo.read_text())
    path = args.map or sorted((REPO / "reports" / "impact").glob("current-*.json"))[0]
    the_map = impact_map.read(path)
    models = [m["name"] for m in raw["models"]]
    git = Git(args.repo)
    if args.commit:
        pairs = [
            (git.run("rev-parse", f"{c}^").decode().strip(), git.run("rev-parse", c).decode().strip())
            for c in args.commit
        ]
    else:

        def leaves_some(parent: str, commit: str) -> bool:
            return not all(d.run for d in night(git, models, the_map, parent, commit))

        pairs = pick_pairs(git, git.commits(PIN, args.nights), args.pairs, leaves_some)
    done = []
    for parent, commit in pairs:
        print(f"pair {parent[:10]} → {commit[:10]}", file=sys.stderr, flush=True)
        pair = check_pair(git, raw, the_map, models, parent, commit, args)
        for o in pair.outcomes:
            print(f"  {o.called:10} {o.result:14} {o.model} {o.detail[:100]}", file=sys.stderr, flush=True)
        done.append(pair)
    shown = str(path.resolve().relative_to(REPO)) if path.resolve().is_relative_to(REPO) else str(path)
    args.out.write_text("\n".join(_report(done, the_map, shown, args)), encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps([asdict(p) for p in done], indent=1), encoding="utf-8")
    print(args.out.read_text()[:1500])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
