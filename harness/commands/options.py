"""What several commands share: their option groups, and the steps from parsed options to the library's
arguments (the zoo and its lock, the run directory, `inputs.Options`).

Choices come from the tables that own them (backends: `timing.BACKENDS`, scorers: `scoring.SCORERS`,
devices: the worker protocol's `Spec.device`), imported when a command's parser is built, so that a new
backend or scorer is offered by the command line without an edit here. Nothing here imports paddle.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import UsageError

if TYPE_CHECKING:
    from harness.model.inputs import Options
    from harness.zoo.lockfile import LockFile
    from harness.zoo.manifest import Zoo

Subparsers = argparse._SubParsersAction  # the object `add_subparsers` returns: each command adds its parser


def command(
    sub: Subparsers,
    common: argparse.ArgumentParser,
    name: str,
    summary: str,
    *,
    parents: Sequence[argparse.ArgumentParser] = (),
    **kw: Any,
) -> argparse.ArgumentParser:
    """A command's parser as every command makes it: the common options (and `parents`), its one-line summary,
    its description and examples printed as written."""
    return sub.add_parser(
        name,
        parents=[common, *parents],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help=summary,
        **kw,
    )


def common(*, sub: bool) -> argparse.ArgumentParser:
    """Options accepted before and after the command. On subcommands their defaults are suppressed,
    else argparse would overwrite `harness --zoo X list` with the subcommand's default."""
    p = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS if sub else None)
    g = p.add_argument_group("common options")
    g.add_argument(
        "--zoo",
        type=Path,
        metavar="PATH",
        help="zoo manifest (default: $HARNESS_ZOO, ./zoo.yaml, else the bundled one)",
    )
    g.add_argument(
        "--stack",
        metavar="NAME",
        help="PaddleDetection source pin from zoo.yaml's sources (default: $HARNESS_STACK, else the first)",
    )
    g.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging", default=argparse.SUPPRESS if sub else False
    )
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="warnings and errors only",
        default=argparse.SUPPRESS if sub else False,
    )
    return p


def inputs() -> argparse.ArgumentParser:
    """Where a command gets its artifacts from: shared by fetch, verify (and every command that evaluates)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("inputs")
    g.add_argument(
        "--locked", action="store_true", help="refuse any artifact without a recorded sha256 (zoo.yaml or zoo.lock)"
    )
    g.add_argument(
        "--ppdet-root", type=Path, metavar="DIR", help="use this PaddleDetection checkout instead of the pinned archive"
    )
    g.add_argument(
        "--data",
        action="append",
        metavar="[NAME=]DIR",
        help="use an existing dataset root instead of fetching: DIR for the one dataset the models use (COCO "
        "val2017 by default), NAME=DIR for the zoo's dataset NAME (repeatable)",
    )
    g.add_argument("--subset", type=int, metavar="N", help="select N images deterministically")
    g.add_argument("--seed", type=int, default=0, help="seed of the subset sample (default: 0)")
    return p


def timing(default_backends: str) -> argparse.ArgumentParser:
    """How fps is measured (docs/commands.md: 'How fps is measured'); shared by verify, bench and run."""
    from harness.model.timing import BACKENDS, Method

    d = Method()
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("timing")
    g.add_argument(
        "--backend",
        action="append",
        dest="backends",
        metavar="NAME",
        choices=BACKENDS,
        help=f"{' | '.join(BACKENDS)}, repeatable (default: {default_backends})",
    )
    g.add_argument("--warmup", type=int, default=d.warmup, metavar="N", help=f"untimed iterations ({d.warmup})")
    g.add_argument(
        "--iters", type=int, default=d.min_iters, metavar="M", help=f"at least M timed iterations ({d.min_iters})"
    )
    g.add_argument(
        "--min-seconds",
        type=float,
        default=d.min_seconds,
        metavar="T",
        help=f"and at least T seconds ({d.min_seconds:g})",
    )
    g.add_argument(
        "--sample", type=int, default=d.sample, metavar="K", help=f"distinct images, seeded by --seed ({d.sample})"
    )
    g.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads (default: all cores); on a CPU 1 gives tools/eval.py's predictions (threads change them)",
    )
    return p


def devices() -> tuple[str, ...]:
    """The devices a worker accepts (`auto`, then the kinds), from the worker protocol's own field."""
    from harness.model.protocol import Spec

    return typing.get_args(Spec.model_fields["device"].annotation)


def scorer(p: argparse.ArgumentParser) -> None:
    """`--scorer`: its choices and default from scoring.py, which owns them."""
    from harness.score.scoring import DEFAULT, SCORERS

    others = ", ".join(s for s in SCORERS if s != DEFAULT)
    p.add_argument(
        "--scorer", choices=SCORERS, help=f"COCO scorer (default: {DEFAULT}, {others} where it is not installed)"
    )


def common_eval(p: argparse.ArgumentParser, *, many: bool = False) -> None:
    """The options of every command that runs a model (verify, bench, run)."""
    if many:
        p.add_argument("models", nargs="*", metavar="MODEL", help="model names (default: the whole zoo)")
    else:
        p.add_argument("model", metavar="MODEL", help="model name (see `harness list`)")
    p.add_argument(
        "--device", choices=devices(), default="auto", help="auto: gpu when an NVIDIA device is present (default)"
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="run directory (default: runs/<UTC time>)")
    p.add_argument(
        "--eval-size",
        type=int,
        metavar="PX",
        help="scale the config's eval resize to this short side (smoke tests; AP not comparable)",
    )
    p.add_argument(
        "-o",
        "--opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the config like ppdet's -o, e.g. -o BBoxPostProcess.nms.score_threshold=0.01",
    )
    p.add_argument("--timeout", type=float, metavar="S", help="kill the model's worker after S seconds")
    p.add_argument(
        "--loader-workers",
        type=int,
        metavar="N",
        help="data-loader worker processes (default: the config's worker_num on a GPU, 0 on a CPU)",
    )
    scorer(p)
    if not many:
        p.add_argument("--json", action="store_true", help="print the record as JSON")


def parallel(p: argparse.ArgumentParser, *, gpus_help: str) -> None:
    p.add_argument(
        "--parallel",
        type=int,
        metavar="K",
        help="evaluate each model as K slices of the images, one worker each, merged and scored once "
        "(the same predictions and AP as one worker; default: 1, or the number of --gpus)",
    )
    p.add_argument("--gpus", metavar="LIST", help=gpus_help)


def load(zoo_path: str | Path | None) -> tuple[Zoo, Path, LockFile]:
    """The zoo file (`--zoo`, else the default), its resolved path and the zoo.lock beside it."""
    from harness.zoo.lockfile import LockFile
    from harness.zoo.manifest import load_zoo

    zoo, path = load_zoo(zoo_path)
    return zoo, path, LockFile.beside(path)


def zoo(args: argparse.Namespace) -> tuple[Zoo, LockFile]:
    """`load` of `--zoo`; the resolved path is kept as `args.zoo_path` for commands that record it."""
    the_zoo, path, lock = load(args.zoo)
    args.zoo_path = path
    return the_zoo, lock


def default_run_dir() -> Path:
    """`runs/<UTC second>`, made here and now: two commands started in the same second get `…-2`, not one
    directory (its models' claims would refuse the second; see claims.py)."""
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    for i in range(1, 1000):
        path = Path("runs") / (stamp if i == 1 else f"{stamp}-{i}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise UsageError(f"runs/{stamp}: 999 run directories in one second", hint="pass --out DIR")


def data_args(values: list[str] | None) -> tuple[Path | None, dict[str, Path]]:
    """`--data` values: (the one unnamed DIR, {NAME: DIR}). `NAME=DIR` when the part before `=` is a dataset
    name (letters, digits, `_.-`) and the whole is not an existing path (a directory may hold `=`)."""
    plain: list[Path] = []
    named: dict[str, Path] = {}
    for value in values or []:
        name, sep, rest = value.partition("=")
        if sep and rest and re.fullmatch(r"[A-Za-z0-9_.-]+", name) and not Path(value).exists():
            if name in named:
                raise UsageError(f"--data {name}=...: given twice", hint="give each dataset one root")
            named[name] = Path(rest)
        else:
            plain.append(Path(value))
    if len(plain) > 1:
        raise UsageError(
            f"--data given {len(plain)} unnamed roots ({', '.join(map(str, plain))})",
            hint="name each: --data NAME=DIR (NAME: a dataset of the zoo file)",
        )
    return (plain[0] if plain else None), named


def build_options(args: argparse.Namespace, *, timing: bool, backends: tuple[str, ...]) -> Options:
    """The `inputs.Options` of an evaluating command's parsed options."""
    from harness.model.inputs import Options, parse_opts
    from harness.model.timing import Method

    method = Method(
        warmup=args.warmup, min_iters=args.iters, min_seconds=args.min_seconds, sample=args.sample, seed=args.seed
    )
    return Options(
        device=args.device,
        subset=args.subset,
        seed=args.seed,
        data=data_args(args.data)[0],
        data_roots=data_args(args.data)[1],
        ppdet_root=args.ppdet_root,
        locked=args.locked,
        eval_size=args.eval_size,
        opts=parse_opts(args.opt),
        timeout_s=args.timeout,
        stack=args.stack,
        threads=args.threads,
        workers=args.loader_workers,
        timing=timing,
        backends=tuple(args.backends or backends),
        method=method,
        scorer=args.scorer,
    )


def with_parallel(args: argparse.Namespace, opts: Options) -> Options:
    """`--parallel K` and `--gpus`: K slices (default: one per GPU named), slice i on gpus[i mod len]."""
    from harness.nightly.runner import gpu_list

    gpus = tuple(gpu_list(args.gpus))
    k = args.parallel if args.parallel is not None else max(1, len(gpus))
    if k < 1:
        raise UsageError(f"--parallel {k}: must be 1 or more")
    return dataclasses.replace(opts, parallel=k, gpus=gpus)


def parallel_value(text: str) -> int | str:
    """`--parallel` of run and plan: a number of slices (1 or more) or `auto`."""
    if text == "auto":
        return text
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1:
        raise UsageError(f"--parallel {text}: expected a number of slices (1 or more) or auto")
    return k


def load_zoo(path: str | Path | None = None) -> Zoo:
    """The library's `harness.load_zoo`: the zoo file at `path` (default: $HARNESS_ZOO, ./zoo.yaml, else the
    bundled one), validated; every problem is a `ManifestError` naming the field, as `--zoo` gives it."""
    return load(path)[0]


def changed_since(p: argparse.ArgumentParser) -> None:
    """`--changed-since`, `--impact-map`, `--rotate`: run only the models whose inputs changed (plan and run)."""
    p.add_argument(
        "--changed-since",
        metavar="NIGHT|TREE",
        help="only the models whose inputs changed since the last night each passed (at or before NIGHT, a run "
        "id of the history; or against TREE, a PaddleDetection git tree id); the others are carried over",
    )
    p.add_argument(
        "--impact-map",
        type=Path,
        metavar="PATH",
        help="the impact map (`harness impact build`) that says which files each model executes (default: "
        "reports/impact/<stack>-<pinned tree, 12>.json)",
    )
    p.add_argument(
        "--rotate",
        type=int,
        metavar="K",
        help="with --changed-since: also run any model whose last run is K nights old or more",
    )
