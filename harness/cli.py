"""`harness`: a thin command line over functions the tests call directly.

Exit codes (whole CLI): 0 ok/pass, 1 verdict fail, 2 usage or manifest error, 3 could not measure,
130 interrupted, 143 terminated (SIGTERM); all from errors.ExitCode. paddle and ppdet are never imported
here: `list` and `--help` start in a blink.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import threading
from pathlib import Path

from harness import __version__
from harness.errors import ExitCode, HarnessError, UsageError

log = logging.getLogger("harness")

EPILOG = """\
examples:
  harness list                                  the zoo, its documented AP, what is cached
  harness list --json                           the same, machine-readable
  harness fetch                                 weights of every model + the PaddleDetection source
  harness fetch mask_rcnn_res2net50_vd_26w_4s_fpn_2x_coco --dataset
  harness fetch --locked                        refuse anything without a sha256 in zoo.yaml/zoo.lock
  harness fetch --dataset --subset 100          COCO val2017 and a 100-image subset (seed 0)
  HARNESS_CACHE=/data/cache harness fetch       cache somewhere else
  harness verify faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco --device gpu
  harness verify mask_rcnn_res2net50_vd_26w_4s_fpn_2x_coco --subset 50 --out runs/quick
  harness report runs/quick                     the markdown table, from result files alone
  harness rescore runs/quick --scorer pycocotools   recompute the stats from the stored predictions
  harness rehearse                              offline rehearsal on a random-weight mini-zoo

exit codes: 0 ok, 1 verdict fail, 2 usage or zoo.yaml error, 3 could not measure, 130 interrupted, 143 terminated
"""


def _common(*, sub: bool) -> argparse.ArgumentParser:
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


def _inputs() -> argparse.ArgumentParser:
    """Where a command gets its artifacts from: shared by fetch, verify (and every command that evaluates)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("inputs")
    g.add_argument(
        "--locked", action="store_true", help="refuse any artifact without a recorded sha256 (zoo.yaml or zoo.lock)"
    )
    g.add_argument(
        "--ppdet-root", type=Path, metavar="DIR", help="use this PaddleDetection checkout instead of the pinned archive"
    )
    g.add_argument("--data", type=Path, metavar="DIR", help="use an existing COCO root instead of fetching")
    g.add_argument("--subset", type=int, metavar="N", help="select N images deterministically")
    g.add_argument("--seed", type=int, default=0, help="seed of the subset sample (default: 0)")
    return p


def _timing(default_backends: str) -> argparse.ArgumentParser:
    """How fps is measured (README: 'How fps is measured'); shared by verify and bench."""
    from harness.timing import Method

    d = Method()
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("timing")
    g.add_argument(
        "--backend",
        action="append",
        dest="backends",
        metavar="NAME",
        choices=["dygraph", "inference", "trt-fp32", "trt-fp16"],
        help=f"dygraph | inference | trt-fp32 | trt-fp16, repeatable (default: {default_backends})",
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


def _common_eval(p: argparse.ArgumentParser, *, many: bool = False) -> None:
    """The options of every command that runs a model (verify, bench, run)."""
    if many:
        p.add_argument("models", nargs="*", metavar="MODEL", help="model names (default: the whole zoo)")
    else:
        p.add_argument("model", metavar="MODEL", help="model name (see `harness list`)")
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "gpu"],
        default="auto",
        help="auto: gpu when an NVIDIA device is present (default)",
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
    p.add_argument(
        "--scorer",
        choices=["faster-coco-eval", "pycocotools"],
        help="COCO scorer (default: faster-coco-eval, pycocotools where it is not installed)",
    )
    if not many:
        p.add_argument("--json", action="store_true", help="print the record as JSON")


def _parallel(p: argparse.ArgumentParser, *, gpus_help: str) -> None:
    p.add_argument(
        "--parallel",
        type=int,
        metavar="K",
        help="evaluate each model as K slices of the images, one worker each, merged and scored once "
        "(the same predictions and AP as one worker; default: 1, or the number of --gpus)",
    )
    p.add_argument("--gpus", metavar="LIST", help=gpus_help)


def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915  # declarations, one statement per option
    common, inputs = _common(sub=True), _inputs()
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Reproduce PaddleDetection's Res2Net model zoo: fetch, verify, report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common(sub=False)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "list",
        parents=[common],
        help="show the zoo with documented AP and cache state",
        epilog="example: harness list --json | jq '.[].name'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "fetch",
        parents=[common, inputs],
        help="download and verify weights, source and dataset into the cache",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  harness fetch\n  harness fetch faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco --locked\n"
        "  harness fetch --dataset --subset 500 --seed 1\n  harness fetch --ppdet-root ~/PaddleDetection "
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
        "--dataset", action="store_true", help="also fetch and check COCO val2017 (implied by --data and --subset)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser(
        "verify",
        parents=[common, inputs, _timing("dygraph")],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="evaluate one model with PaddleDetection and judge its AP against the documented one",
        description="Fetch, check the weights strictly, evaluate with PaddleDetection, score with pycocotools, "
        "judge against the documented AP with the zoo's tolerance, write <out>/<model>/result.json and print "
        "the table row. Exit 0 pass, 1 fail, 3 could not measure.",
        epilog="examples:\n"
        "  harness verify faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco --device gpu\n"
        "  harness verify mask_rcnn_res2net50_vd_26w_4s_fpn_2x_coco --subset 50 --out runs/quick\n"
        "  harness verify faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco --data ~/coco --ppdet-root ~/PaddleDetection\n"
        "  harness verify faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco --subset 8 --eval-size 320 "
        "-o BBoxPostProcess.nms.score_threshold=0.01\n"
        "  harness verify mask_rcnn_res2net50_vd_26w_4s_fpn_2x_coco --gpus all     # one slice of val2017 per GPU\n"
        "  harness verify faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco --parallel 2 --threads 1 --subset 16",
    )
    _common_eval(p)
    p.add_argument("--no-timing", dest="timing", action="store_false", help="skip the fps measurement")
    _parallel(
        p,
        gpus_help="slice i runs on the i-th GPU (mod their number); --parallel defaults to their "
        "number: 0,1,2,3 or all",
    )
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "bench",
        parents=[common, inputs, _timing("dygraph and inference")],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="time inference (fps, latency per stage) without evaluating",
        description="Times the model with the published method (README: 'How fps is measured') on each backend "
        "and scores the exported model's predictions against the dygraph model's on the same images. Writes "
        "<out>/<model>/timing.json, and fills result.json's timing when --out is a verify run.",
        epilog="examples:\n"
        "  harness bench faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco --device gpu --backend trt-fp16\n"
        "  harness bench faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco --out runs/quick   # fills its fps\n"
        "  harness bench mask_rcnn_res2net50_vb_26w_4s_fpn_2x_coco --eval-size 320 --iters 20 --min-seconds 5",
    )
    _common_eval(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "run",
        parents=[common, inputs, _timing("dygraph")],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="the nightly: verify every model (or a shard) into one run directory, then publish the reports",
        description="Verifies each selected model in its own worker (a crash, OOM or timeout is that model's "
        "error, the run goes on), writes results as each model finishes, then report.md, junit.xml, "
        "results.csv, history and plots. Exit 3 if any error, else 1 if any fail, else 0.",
        epilog="examples:\n"
        "  harness run --device gpu --gpus all --out runs/nightly --timeout 7200\n"
        "  harness run --out runs/nightly --resume                # after a killed run: finished models kept\n"
        "  harness run --shard 2/3 --run-id $GITHUB_RUN_ID --out runs/shard-2   # one of 3 machines\n"
        "  harness report runs/shard-* --outputs runs/merged --history reports/history.jsonl",
    )
    _common_eval(p, many=True)
    p.add_argument("--resume", action="store_true", help="keep every model that already has a complete result")
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="take shard I of N (1-based; default: $HARNESS_SHARD, "
        "$HARNESS_SHARD_INDEX or $JOB_COMPLETION_INDEX with $HARNESS_SHARD_TOTAL, else 1/1)",
    )
    p.add_argument(
        "--gpus",
        metavar="LIST",
        help="the work queue's GPUs, one unit (model or slice) on each at once: 0,1,2,3 or all",
    )
    p.add_argument(
        "--parallel",
        metavar="K|auto",
        default="1",
        help="cut each model into K slices of the images (units of the queue), or `auto`: the planner "
        "picks each model's slices from the history (see `harness plan`); default: 1",
    )
    p.add_argument("--run-id", metavar="ID", help="id recorded in every result (shards of one nightly share it)")
    p.add_argument(
        "--history",
        type=Path,
        metavar="PATH",
        help="history store to append to (default: $HARNESS_HISTORY or reports/history.jsonl; "
        "sharded runs append nothing: the merging `harness report` does)",
    )
    p.add_argument("--no-timing", dest="timing", action="store_false", help="skip the fps measurement")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "report",
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="render the reports of one or more run directories (shards merge) from their result files",
        epilog="examples:\n  harness report runs/20261125-101500\n  harness report runs/a runs/b --out report.md\n"
        "  harness report runs/shard-* --outputs runs/merged --history reports/history.jsonl\n"
        "  harness report runs/shard-* --history reports/history.jsonl --html site/   (open site/index.html)",
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="directories written by verify or run")
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the markdown table to FILE")
    p.add_argument(
        "--html",
        type=Path,
        metavar="DIR",
        help="write the web page (a static site: overview, one page per model with trends and logs) into DIR; "
        "with --history its trends span the earlier nights",
    )
    p.add_argument(
        "--outputs",
        type=Path,
        metavar="DIR",
        help="write report.md, junit.xml and results.csv (and with --history: plots) into DIR",
    )
    p.add_argument("--history", type=Path, metavar="PATH", help="append these results to a history store")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "rescore",
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="recompute every stat and verdict of a run from its stored predictions (no model is run)",
        epilog="examples:\n  harness rescore runs/nightly\n  harness rescore runs/nightly --scorer pycocotools",
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="directories written by verify or run")
    p.add_argument("--scorer", choices=["faster-coco-eval", "pycocotools"], help="default: faster-coco-eval")
    p.set_defaults(func=cmd_rescore)

    p = sub.add_parser(
        "export",
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="write the zoo in another format (OpenMMLab model-index), optionally with a run's results",
        epilog="examples:\n  harness export --format model-index --out build/model-index\n"
        "  harness export --format model-index --out build/mi --run runs/nightly   # adds measured AP and timing",
    )
    p.add_argument("--format", choices=["model-index"], default="model-index")
    p.add_argument("--out", type=Path, default=Path("model-index"), metavar="DIR", help="default: ./model-index")
    p.add_argument("--run", type=Path, nargs="*", metavar="RUN_DIR", help="results to include")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "import",
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="read PaddleDetection's README model-zoo tables into a zoo file (`--zoo` takes it)",
        description="Reads the markdown tables of configs/**/README*.md in the pinned PaddleDetection source (or "
        "--ppdet-root): every row with a .pdparams link, a config present at the pin that evaluates on COCO "
        "val2017 and a documented COCO val2017 AP becomes a model; every other row is counted with the reason "
        "it was skipped. Sources, dataset and tolerance come from --zoo.",
        epilog="examples:\n  harness import ppyoloe --out zoos/ppyoloe.yaml\n"
        "  harness import configs/rtdetr/README.md configs/solov2/README.md --out zoos/two.yaml\n"
        "  harness import --all --out zoos/paddledetection.yaml --coverage reports/zoo-coverage.md\n"
        "  harness list --zoo zoos/ppyoloe.yaml",
    )
    p.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="a README path inside the tree (configs/ppyoloe/README.md) or a folder of configs/ (ppyoloe)",
    )
    p.add_argument("--all", action="store_true", help="every configs/**/README*.md")
    p.add_argument("--ppdet-root", type=Path, metavar="DIR", help="a PaddleDetection checkout instead of the pin")
    p.add_argument("--out", type=Path, metavar="FILE", help="the zoo file to write (default: print it)")
    p.add_argument("--coverage", type=Path, metavar="FILE", help="also write the coverage report (markdown)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "audit",
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="offline, without weights: does every model's config exist, stay in the tree and build?",
        description="For every model of the zoo (or those named): the config exists at the pin, its _BASE_ chain "
        "stays inside the tree, and the model builds on this environment's paddle (parameter count). Run it "
        "once per stack, from that stack's environment, and merge the JSON outputs.",
        epilog="examples:\n  harness audit --zoo zoos/paddledetection.yaml --json audit-current.json\n"
        "  HARNESS_STACK=previous .venv-previous/bin/harness audit --zoo zoos/paddledetection.yaml "
        "--json audit-previous.json\n"
        "  harness audit --merge audit-current.json audit-previous.json --out reports/zoo-audit.md",
    )
    p.add_argument("models", nargs="*", metavar="MODEL", help="model names (default: the whole zoo)")
    p.add_argument("--ppdet-root", type=Path, metavar="DIR", help="a PaddleDetection checkout instead of the pin")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the findings as JSON")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the markdown report (default: print it)")
    p.add_argument("--merge", type=Path, nargs="+", metavar="JSON", help="render earlier --json outputs instead")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser(
        "plan",
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="the nightly's schedule for G GPUs: units, makespan, lower bound (no model runs)",
        description="Estimates each model's work (its last run in the history under the same conditions, else "
        "its README's fps, else a default), cuts models into slices where that shortens the night, and "
        "schedules the units longest first onto the GPU free first, as `harness run --gpus ... --parallel auto` "
        "does. Prints the makespan against the lower bound max(work / G, longest unit) and against one model "
        "per GPU.",
        epilog="examples:\n  harness plan --gpus 8\n"
        "  harness plan --zoo zoos/paddledetection.yaml --gpus 1 8 64 --out reports/plan-nightly.md\n"
        "  harness plan --gpus 8 --json | jq .plans[0].assignment",
    )
    p.add_argument("--gpus", type=int, nargs="+", default=[8], metavar="G", help="GPU counts to plan for (8)")
    p.add_argument("--images", type=int, default=5000, help="images per model (default: val2017's 5000)")
    p.add_argument("--device", choices=["gpu", "cpu"], default="gpu", help="history entries of this device")
    p.add_argument("--parallel", default="auto", metavar="K|auto", help="slices per model (default: auto)")
    p.add_argument(
        "--history",
        type=Path,
        metavar="PATH",
        help="durations of earlier runs (default: $HARNESS_HISTORY or reports/history.jsonl)",
    )
    p.add_argument("--json", action="store_true", help="print the plans as JSON")
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the markdown to FILE")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser(
        "rehearse",
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="offline rehearsal: the whole pipeline on a random-weight mini-zoo served on 127.0.0.1",
        description="Builds a mini-zoo from the real configs (random-initialised weights, synthetic COCO "
        "images, the pinned PaddleDetection archive), serves it on 127.0.0.1 and runs the harness's "
        "commands against it. Random weights: AP ≈ 0 is the expected result.",
        epilog="examples:\n  harness rehearse\n  harness rehearse --dir /tmp/rehearsal --images 8",
    )
    p.add_argument("--dir", type=Path, default=Path("rehearsal"), help="work directory (default: ./rehearsal)")
    p.add_argument("--port", type=int, default=8765, help="loopback port (default: 8765, a free one if taken)")
    p.add_argument("--images", type=int, default=4, help="synthetic images in the mini val set (default: 4)")
    p.set_defaults(func=cmd_rehearse)
    return parser


def _zoo(args):
    from harness.lockfile import LockFile
    from harness.manifest import load_zoo

    zoo, path = load_zoo(args.zoo)
    args.zoo_path = path
    return zoo, LockFile.beside(path)


def cmd_list(args) -> int:
    from tabulate import tabulate

    from harness.artifacts import is_cached

    zoo, _ = _zoo(args)
    rows = [
        {
            "name": m.name,
            "table": m.table,
            "box_ap": m.expected.get("box_ap"),
            "mask_ap": m.expected.get("mask_ap"),
            "expected": m.expected,
            "labels": m.labels,
            "input_size": m.input_size,
            "cached": is_cached(m.weights.url),
        }
        for m in zoo.models
    ]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return ExitCode.OK
    headers = ["model", "table", "box AP", "mask AP", "other documented", "weights"]
    table = [
        [
            r["name"],
            r["table"] or "-",
            "-" if r["box_ap"] is None else f"{r['box_ap']:.1f}",
            "-" if r["mask_ap"] is None else f"{r['mask_ap']:.1f}",
            ", ".join(f"{k} {v:g}" for k, v in r["expected"].items() if k not in ("box_ap", "mask_ap")) or "-",
            "cached" if r["cached"] else "-",
        ]
        for r in rows
    ]
    print(tabulate(table, headers=headers, tablefmt="github", disable_numparse=True))
    return ExitCode.OK


def cmd_fetch(args) -> int:
    from harness import dataset, source
    from harness.artifacts import fetch_artifact

    zoo, lock = _zoo(args)
    models = zoo.select(args.models)
    stack, pin = zoo.source(args.stack)
    rows: list[dict] = []
    failures: list[HarnessError] = []

    def attempt(kind: str, name: str, job) -> None:
        try:
            rows.append({"kind": kind, "name": name, **job()})
        except HarnessError as exc:
            failures.append(exc)
            rows.append({"kind": kind, "name": name, "status": "error", "error": exc.message})
            log.error("%s %s: %s", kind, name, exc)

    cached = "verified" if args.verify else "cached"

    def src() -> dict:
        tree = source.checkout(args.ppdet_root, pin) if args.ppdet_root else source.prepare(pin, verify=args.verify)
        return {"status": tree.origin, "path": str(tree.root), "commit": tree.commit, "tree": tree.tree}

    attempt("source", f"PaddleDetection ({stack})", src)
    for m in models:

        def weights(m=m) -> dict:
            got = fetch_artifact(m.weights, lock, locked=args.locked, verify=args.verify)
            return {"status": "downloaded" if got.downloaded else cached, **got.as_json()}

        attempt("weights", m.name, weights)
    if args.dataset or args.subset is not None or args.data:

        def data() -> dict:
            d = dataset.prepare(
                zoo.dataset,
                lock,
                data_dir=args.data,
                subset=args.subset,
                seed=args.seed,
                locked=args.locked,
                verify=args.verify,
            )
            return {"status": "ok", "path": str(d.annotations), **d.as_json()}

        attempt("dataset", zoo.dataset.name, data)

    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        from tabulate import tabulate

        def detail(r: dict) -> str:
            if r["status"] == "error":
                return r["error"].splitlines()[0]
            if "sha256" in r:
                return f"{r['size'] / 1e6:.1f} MB  sha256 {r['sha256'][:12]}…  {r['path']}"
            return r["path"]

        print(
            tabulate(
                [[r["kind"], r["name"], r["status"], detail(r)] for r in rows],
                headers=["artifact", "name", "status", "detail"],
                tablefmt="simple",
            )
        )
    return max((f.exit_code for f in failures), default=ExitCode.OK)


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


def cmd_verify(args) -> int:
    from harness import slices
    from harness import verification as v
    from harness.inputs import cpu_estimate, prepare
    from harness.report import markdown

    zoo, lock = _zoo(args)
    model = zoo.model(args.model)
    opts = _with_parallel(args, _options(args, timing=args.timing, backends=("dygraph",)))
    if zoo.notice:
        log.warning("%s", zoo.notice)
    inputs = prepare(zoo, lock, opts)
    slices.check(opts.parallel, inputs.data.num_images)
    if inputs.device == "cpu" and opts.subset is None and inputs.data.num_images > 50:
        log.warning("%s", cpu_estimate(inputs.data.num_images))
    run_dir = args.out or default_run_dir()
    rec = v.verify(zoo, model, inputs, lock, opts, run_dir)
    if args.json:
        print(v.dumps(rec))
    else:
        print(markdown([rec]))
        print(v.summary_line(rec))
        print(f"result: {run_dir / model.name / 'result.json'}")
    return {"pass": ExitCode.OK, "fail": ExitCode.FAIL}.get(rec.status, ExitCode.ERROR)


def _options(args, *, timing: bool, backends: tuple[str, ...]):
    from harness.inputs import Options, parse_opts
    from harness.timing import Method

    method = Method(
        warmup=args.warmup, min_iters=args.iters, min_seconds=args.min_seconds, sample=args.sample, seed=args.seed
    )
    return Options(
        device=args.device,
        subset=args.subset,
        seed=args.seed,
        data=args.data,
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


def _with_parallel(args, opts):
    """`--parallel K` and `--gpus`: K slices (default: one per GPU named), slice i on gpus[i mod len]."""
    from harness.runner import gpu_list

    gpus = tuple(gpu_list(args.gpus))
    k = args.parallel if args.parallel is not None else max(1, len(gpus))
    if k < 1:
        raise UsageError(f"--parallel {k}: must be 1 or more")
    return dataclasses.replace(opts, parallel=k, gpus=gpus)


def _parallel_value(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1:
        raise UsageError(f"--parallel {text}: expected a number of slices (1 or more) or auto")
    return k


def cmd_bench(args) -> int:
    from harness import verification as v
    from harness.inputs import prepare
    from harness.report import timing_lines

    zoo, lock = _zoo(args)
    model = zoo.model(args.model)
    opts = _options(args, timing=True, backends=("dygraph", "inference"))
    inputs = prepare(zoo, lock, opts)
    run_dir = args.out or default_run_dir()
    timing = v.bench(zoo, model, inputs, lock, opts, run_dir)
    if args.json:
        print(json.dumps(timing.model_dump(exclude_none=True), indent=2, sort_keys=True))
    else:
        print("\n".join(timing_lines(timing)))
        print(f"timing: {run_dir / model.name / 'timing.json'}")
    return ExitCode.OK


def cmd_run(args) -> int:
    from harness import history, runner
    from harness.report import publish

    zoo, lock = _zoo(args)
    zoo.select(args.models)  # unknown names are a usage error before anything runs
    opts = _options(args, timing=args.timing, backends=("dygraph",))
    shard = runner.Shard.parse(args.shard) if args.shard else runner.Shard.from_env()
    run_dir = args.out or default_run_dir()
    opts = dataclasses.replace(opts, run_id=args.run_id or run_dir.name)
    if zoo.notice:
        log.warning("%s", zoo.notice)
    opts = dataclasses.replace(opts, parallel=_parallel_value(args.parallel))
    hist = None if shard.total > 1 else (args.history or history.default_path())
    past = history.load(args.history or history.default_path())
    records = runner.run(
        zoo,
        args.zoo_path,
        lock,
        args.models or None,
        opts,
        run_dir,
        resume=args.resume,
        shard=shard,
        gpus=runner.gpu_list(args.gpus),
        history=past,
    )
    out = publish(records, run_dir, history_path=hist)
    print(out["text"], end="")
    print(
        f"run: {run_dir} (report.md, junit.xml, results.csv" + (", plots; history: " + str(hist) if hist else "") + ")"
    )
    return runner.exit_code(records)


def cmd_report(args) -> int:
    from harness.files import atomic_write_bytes
    from harness.report import markdown, publish
    from harness.results import read, shard_disagreement

    records = read(args.runs, check_predictions=True)
    if args.html:  # refuse a directory that is not ours before anything is written anywhere
        from harness import site

        site.claim(args.html)
    if warning := shard_disagreement(args.runs):
        log.warning("%s", warning)
    if args.outputs or args.history:
        text = publish(records, args.outputs or args.runs[0], history_path=args.history)["text"]
    else:
        text = markdown(records)
    print(text, end="")
    if args.out:
        atomic_write_bytes(args.out, markdown(records).encode())
    if args.html:
        from harness import history

        past = history.load(args.history) if args.history else []
        pages = site.build(records, args.html, history=past, run_dirs=args.runs)
        print(f"site: {pages['index']}", file=sys.stderr)
    return ExitCode.OK


def cmd_rescore(args) -> int:
    from harness import runner
    from harness.report import markdown
    from harness.verification import rescore

    records = [rec for run in args.runs for rec in rescore(run, args.scorer)]
    print(markdown(sorted(records, key=lambda r: (r.zoo_index, r.model))), end="")
    return runner.exit_code(records)


def cmd_export(args) -> int:
    from harness.modelindex import export
    from harness.results import read

    zoo, _ = _zoo(args)
    for path in export(zoo, args.out, read(args.run) if args.run else None):
        print(path)
    return ExitCode.OK


def cmd_import(args) -> int:
    import yaml

    from harness import readme, source
    from harness.files import atomic_write_bytes
    from harness.manifest import parse_zoo

    if not args.sources and not args.all:
        raise UsageError("import: name a README or a folder, or pass --all", hint="e.g. harness import ppyoloe")
    zoo, _ = _zoo(args)
    pin = zoo.source(args.stack)[1]
    tree = source.checkout(args.ppdet_root, pin) if args.ppdet_root else source.prepare(pin)
    result = readme.read(tree.root, readme.find(tree.root, args.sources, args.all))
    if not result.entries:
        raise UsageError(
            f"no model imported from {', '.join(result.readmes)} ({len(result.skipped)} rows skipped)",
            hint="`--coverage FILE` lists every skipped row's reason",
        )
    doc = readme.zoo_document(zoo.model_dump(exclude_none=True), result)
    parse_zoo(doc, origin="the imported zoo")  # what is written is a valid zoo file
    text = (
        f"# Generated by `harness import` from PaddleDetection {tree.commit or 'checkout'} (git tree {tree.tree}):"
        f"\n# {len(result.entries)} models from {len(result.readmes)} README files.\n"
        + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=10_000)
    )
    if args.out:
        atomic_write_bytes(args.out, text.encode())
        log.info(
            "wrote %s: %d models, %d tables; %d rows skipped, %d repeated",
            args.out,
            len(result.entries),
            len(doc["tables"]),
            len(result.skipped),
            result.duplicates,
        )
    else:
        print(text, end="")
    if args.coverage:
        atomic_write_bytes(args.coverage, readme.coverage(result, tree.commit).encode())
    return ExitCode.OK


def cmd_audit(args) -> int:
    from harness import audit, source
    from harness.files import atomic_write_bytes, atomic_write_json

    if args.merge:
        text = audit.markdown([audit.load(path) for path in args.merge])
    else:
        from importlib.metadata import PackageNotFoundError, version

        zoo, _ = _zoo(args)
        stack, pin = zoo.source(args.stack)
        tree = source.checkout(args.ppdet_root, pin) if args.ppdet_root else source.prepare(pin)
        findings = audit.run(zoo, tree, args.models or None)
        try:
            paddle = version("paddlepaddle")
        except PackageNotFoundError:
            paddle = None
        data = audit.Audit(stack=stack, paddle=paddle, tree=tree.as_json(), findings=findings)
        if args.json:
            atomic_write_json(args.json, data.model_dump(), sort_keys=False)
        text = audit.markdown([data])
        failed = sum(f.status != "built" for f in findings)
        log.info("audit (%s): %d built, %d did not", stack, len(findings) - failed, failed)
    if args.out:
        atomic_write_bytes(args.out, text.encode())
    else:
        print(text, end="")
    return ExitCode.OK


def cmd_plan(args) -> int:
    from harness import history, schedule
    from harness.files import atomic_write_bytes

    zoo, _ = _zoo(args)
    path = args.zoo_path
    parallel = _parallel_value(args.parallel)
    if any(g < 1 for g in args.gpus) or args.images < 1:
        raise UsageError("plan: --gpus and --images must be 1 or more")
    past = history.load(args.history or history.default_path())
    estimates = [schedule.estimate(zoo, m, args.images, past, device=args.device) for m in zoo.models]
    plans = {g: schedule.plan(estimates, g, parallel=parallel) for g in args.gpus}
    baseline = {g: schedule.plan(estimates, g, parallel=1) for g in args.gpus}
    if args.json:
        print(
            json.dumps(
                {
                    "zoo": str(path),
                    "images": args.images,
                    "estimates": [vars(e) for e in estimates],
                    "plans": [p.as_json() for p in plans.values()],
                },
                indent=2,
            )
        )
    text = schedule.markdown(path.name, estimates, plans, baseline)
    if not args.json:
        print(text, end="")
    if args.out:
        atomic_write_bytes(args.out, text.encode())
    return ExitCode.OK


def cmd_rehearse(args) -> int:
    from harness.rehearsal import rehearse

    return rehearse(args.dir, zoo_path=args.zoo, stack=args.stack, port=args.port, n_images=args.images)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI cancelling the job): handled like Ctrl-C, but exits 143."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    import signal

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
        # past a file-size limit, write() should fail with EFBIG (a clear error), not kill the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="harness: %(message)s", stream=sys.stderr, force=True)
    try:
        return int(args.func(args))
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print(
            f"harness: {'terminated' if terminated else 'interrupted'}: workers stopped, partial outputs "
            "removed; finished results are kept (`harness run --resume` continues)",
            file=sys.stderr,
        )
        return int(ExitCode.TERMINATED if terminated else ExitCode.INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
