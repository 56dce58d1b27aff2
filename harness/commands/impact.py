"""`harness impact`: the impact map of a zoo (which PaddleDetection files and configs each model reads), built by
running every model once on the CPU under coverage.py, and shown per model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.commands import options

NAME = "impact"
HELP = "the impact map: the PaddleDetection files and configs each model executes (build, show)"


def add_parser(sub: options.Subparsers, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = options.command(
        sub,
        common,
        NAME,
        HELP,
        description="`build` runs every model of the zoo once on the CPU at a tiny size (random weights from its "
        "config, a synthetic image of its dataset's layout, served on 127.0.0.1) through the same worker path as "
        "verify, under coverage.py, and writes per model the files it executed and its config chain with their "
        "git blob ids. `show` lists one model's.",
        epilog="examples:\n"
        "  harness impact build --stack current            # reports/impact/current-<tree>.json\n"
        "  harness impact build --only yolov3_mobilenet_v1_270e_coco --out /tmp/map.json\n"
        "  harness impact build --only dino_r50_4scale_1x_coco --update reports/impact/current-ff075e412edc.json\n"
        "  harness impact show yolov3_mobilenet_v1_270e_coco --map /tmp/map.json",
    )
    verbs = p.add_subparsers(dest="verb", required=True)
    b = verbs.add_parser("build", parents=[common], help="run the models under coverage.py and write the map")
    b.add_argument("--ppdet-root", type=Path, metavar="DIR", help="trace this PaddleDetection tree, not the pin's")
    b.add_argument("--only", nargs="+", metavar="NAME", default=[], help="only these models")
    b.add_argument("--out", type=Path, help="the map (default: reports/impact/<stack>-<tree id, 12>.json)")
    b.add_argument("--work", type=Path, help="working directory (default: /tmp/harness-impact-<stack>)")
    b.add_argument("--images", type=int, default=2, help="synthetic images per dataset (default: 2)")
    b.add_argument("--batch", type=int, default=8, help="models per traced run (default: 8)")
    b.add_argument(
        "--update",
        type=Path,
        metavar="MAP",
        help="trace the --only models again and replace their entries in MAP (written back unless --out)",
    )
    s = verbs.add_parser("show", parents=[common], help="one model's configs and files")
    s.add_argument("model")
    s.add_argument("--map", type=Path, required=True, metavar="PATH", help="the impact map (JSON)")
    s.add_argument("--json", action="store_true", help="the model's entry as JSON")
    p.set_defaults(func=main)
    return p


def build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from harness.commands.options import load
    from harness.nightly import impact
    from harness.records import impact as record

    if args.update is not None and not args.only:
        from harness.core.errors import UsageError

        raise UsageError("--update MAP re-traces the models named with --only", hint="add --only NAME ...")
    base = record.read(args.update) if args.update is not None else None
    zoo, zoo_path, _ = load(args.zoo)
    stack, _ = zoo.source(args.stack)
    work = args.work or Path(f"/tmp/harness-impact-{stack}")
    plan = impact.Plan(zoo_path, stack, tuple(args.only), work, args.ppdet_root, images=args.images, batch=args.batch)
    total = len(args.only) or len(zoo.models)
    with tqdm(total=total, desc="impact map", unit="model") as bar:
        the_map = impact.build(plan, progress=bar.update)
    if base is not None:
        the_map = impact.updated(base, the_map, args.update)
    out = args.out or args.update or record.default_path(stack, the_map.ppdet.tree)
    record.write(out, the_map)
    for line in impact.cost_lines(the_map):
        print(line)
    print(f"impact map: {out}")
    return 0


def show(args: argparse.Namespace) -> int:
    from harness.records import impact as record

    entry = record.read(args.map).model(args.model)
    if args.json:
        print(json.dumps(entry.model_dump(), indent=1))
        return 0
    print(f"{args.model}: {entry.status}")
    for title, blobs in (("configs", entry.configs), ("files", entry.files), ("imported only", entry.imported)):
        print(f"{title} ({len(blobs)}):")
        print("".join(f"  {blob[:12]}  {path}\n" for path, blob in blobs.items()), end="")
    return 0


def main(args: argparse.Namespace) -> int:
    return build(args) if args.verb == "build" else show(args)
