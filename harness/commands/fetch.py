"""`harness fetch`: weights, the PaddleDetection source and (optionally) the datasets into the cache, each
checked against its pin. One artifact failing does not stop the others; the worst failure sets the exit code.
With `--locked` every artifact's pin is checked before the first request: a missing one is exit 2 and
nothing was fetched."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands import options
from harness.core.errors import ExitCode, HarnessError, LockedError

if TYPE_CHECKING:
    from harness.zoo.lockfile import LockFile
    from harness.zoo.manifest import Dataset, Zoo

NAME = "fetch"
HELP = "download and verify weights, source and dataset into the cache"
log = logging.getLogger("harness")


def add_parser(sub: options.Subparsers, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = options.command(
        sub,
        common,
        NAME,
        HELP,
        parents=[options.inputs()],
        epilog="examples:\n  harness fetch\n  harness fetch faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco --locked\n"
        "  harness fetch --dataset --subset 500 --seed 1\n  harness fetch --dataset visdrone-val --locked\n"
        "  harness fetch --ppdet-root ~/PaddleDetection "
        "--data ~/coco --subset 50\n"
        "  harness fetch --verify --dataset      re-hash every cached file, fetch again what rotted",
    )
    p.add_argument("models", nargs="*", metavar="MODEL", help="model names (default: all)")
    p.add_argument(
        "--verify",
        action="store_true",
        help="re-hash every cached file instead of trusting its stamp (size, mtime); one that does not match "
        "its sha256 is evicted and fetched again",
    )
    p.add_argument(
        "--dataset",
        action="append",
        nargs="?",
        const="",
        metavar="NAME",
        help="also fetch and check a dataset: NAME (repeatable), or without NAME the datasets of the MODELs "
        "given (none given: the zoo's default, COCO val2017); implied by --data and --subset",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=main)
    return p


@dataclass(frozen=True)
class Request:
    """What to fetch: `models` (empty: all), the source of `stack`, and the dataset when `dataset` (or `data`
    or `subset`) asks for it; `locked` refuses anything unpinned, `verify` re-hashes what is cached."""

    models: list[str] = field(default_factory=list)
    stack: str | None = None
    ppdet_root: Path | None = None
    dataset: bool = False
    names: tuple[str, ...] = ()  # `--dataset NAME`s
    data: Path | None = None
    data_roots: dict[str, Path] = field(default_factory=dict)
    subset: int | None = None
    seed: int = 0
    locked: bool = False
    verify: bool = False

    @property
    def wants_dataset(self) -> bool:
        return self.dataset or bool(self.names or self.data_roots) or self.subset is not None or self.data is not None

    def datasets(self, zoo: Zoo) -> list[Dataset]:
        """The datasets asked for: by name, or those of the models named, or the zoo's default."""
        if not self.wants_dataset:
            return []
        named = [zoo.named_dataset(n) for n in dict.fromkeys([*self.names, *self.data_roots])]
        if named:
            return named
        return zoo.datasets_of(zoo.select(self.models)) if self.models else [zoo.dataset]


@dataclass
class Fetched:
    """One row per artifact (kind, name, status, detail fields) and the errors of those that failed."""

    rows: list[dict] = field(default_factory=list)
    failures: list[HarnessError] = field(default_factory=list)

    def attempt(self, kind: str, name: str, job: Callable[[], dict]) -> None:
        try:
            self.rows.append({"kind": kind, "name": name, **job()})
        except HarnessError as exc:
            self.failures.append(exc)
            self.rows.append({"kind": kind, "name": name, "status": "error", "error": exc.message})
            log.error("%s %s: %s", kind, name, exc)

    @property
    def exit_code(self) -> ExitCode:
        return max((f.exit_code for f in self.failures), default=ExitCode.OK)


def check_locked(zoo: Zoo, lock: LockFile, request: Request) -> None:
    """`--locked`: every artifact the request would download has a recorded sha256 (zoo.yaml or zoo.lock),
    checked before the first request, so that a refusal (exit 2) has fetched nothing. The PaddleDetection
    source is not in the lock: it is pinned by its git tree, checked after extraction."""
    artifacts = [m.weights for m in zoo.select(request.models)]
    roots = _roots(zoo, request)
    for ds in request.datasets(zoo):
        if roots[ds.name] is None:
            artifacts += [a for a in (ds.images, ds.annotations) if a is not None]
    missing: dict[str, LockedError] = {}
    for artifact in artifacts:
        if lock.pin(artifact).sha256 is None:
            missing[artifact.url] = LockedError(
                f"--locked: no recorded sha256 for {artifact.url}",
                hint=f"fetch once without --locked on a trusted network and commit {lock.path.name}, "
                "or write sha256: under the artifact in zoo.yaml",
            )
    if len(missing) > 1:
        first = next(iter(missing.values()))
        urls = ", ".join(missing)
        raise LockedError(f"--locked: no recorded sha256 for {len(missing)} artifacts: {urls}", hint=first.hint)
    if missing:
        raise next(iter(missing.values()))


def fetch(zoo: Zoo, lock: LockFile, request: Request) -> Fetched:
    """Fetch (or find cached and check) everything the request names; never raises for one artifact, only
    for a request that cannot be (an unknown model, `--locked` with an artifact nobody pinned)."""
    from harness.fetch import dataset, source
    from harness.fetch.artifacts import fetch_artifact

    models = zoo.select(request.models)
    if request.locked:
        check_locked(zoo, lock, request)
    stack, pin = zoo.source(request.stack)
    done = Fetched()
    cached = "verified" if request.verify else "cached"

    def src() -> dict:
        root = request.ppdet_root
        tree = source.checkout(root, pin) if root else source.prepare(pin, verify=request.verify)
        return {"status": tree.origin, "path": str(tree.root), "commit": tree.commit, "tree": tree.tree}

    done.attempt("source", f"PaddleDetection ({stack})", src)
    for m in models:

        def weights(m=m) -> dict:
            got = fetch_artifact(m.weights, lock, locked=request.locked, verify=request.verify)
            return {"status": "downloaded" if got.downloaded else cached, **got.as_json()}

        done.attempt("weights", m.name, weights)
    roots = _roots(zoo, request)
    for ds in request.datasets(zoo):

        def data(ds=ds) -> dict:
            d = dataset.prepare(
                ds,
                lock,
                data_dir=roots[ds.name],
                subset=request.subset,
                seed=request.seed,
                locked=request.locked,
                verify=request.verify,
            )
            return {"status": "ok", "path": str(d.annotations), **d.as_json()}

        done.attempt("dataset", ds.name, data)
    return done


def _roots(zoo: Zoo, request: Request) -> dict[str, Path | None]:
    """Each requested dataset's `--data` root, as an evaluating command resolves them (inputs.data_roots)."""
    from harness.model.inputs import Options, data_roots

    opts = Options(data=request.data, data_roots=request.data_roots)
    return data_roots(zoo, opts, [d.name for d in request.datasets(zoo)])


def table(rows: list[dict]) -> str:
    from tabulate import tabulate

    def detail(r: dict) -> str:
        if r["status"] == "error":
            return r["error"].splitlines()[0]
        if "sha256" in r:
            return f"{r['size'] / 1e6:.1f} MB  sha256 {r['sha256'][:12]}…  {r['path']}"
        return r["path"]

    return tabulate(
        [[r["kind"], r["name"], r["status"], detail(r)] for r in rows],
        headers=["artifact", "name", "status", "detail"],
        tablefmt="simple",
    )


def main(args: argparse.Namespace) -> int:
    zoo, lock = options.zoo(args)
    request = Request(
        models=args.models,
        stack=args.stack,
        ppdet_root=args.ppdet_root,
        dataset=args.dataset is not None,
        names=tuple(n for n in args.dataset or [] if n),
        data=options.data_args(args.data)[0],
        data_roots=options.data_args(args.data)[1],
        subset=args.subset,
        seed=args.seed,
        locked=args.locked,
        verify=args.verify,
    )
    done = fetch(zoo, lock, request)
    print(json.dumps(done.rows, indent=2) if args.json else table(done.rows))
    return done.exit_code
