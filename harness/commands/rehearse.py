"""`harness rehearse`: the whole pipeline offline, on a random-weight mini-zoo served on 127.0.0.1."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import options

NAME = "rehearse"
HELP = "offline rehearsal: the whole pipeline on a random-weight mini-zoo served on 127.0.0.1"


def add_parser(sub: options.Subparsers, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = options.command(
        sub,
        common,
        NAME,
        HELP,
        description="Builds a mini-zoo from the real configs (random-initialised weights, synthetic COCO "
        "images, the pinned PaddleDetection archive), serves it on 127.0.0.1 and runs the harness's "
        "commands against it. Random weights: AP ≈ 0 is the expected result.",
        epilog="examples:\n  harness rehearse\n  harness rehearse --dir /tmp/rehearsal --images 8",
    )
    p.add_argument("--dir", type=Path, default=Path("rehearsal"), help="work directory (default: ./rehearsal)")
    p.add_argument("--port", type=int, default=8765, help="loopback port (default: 8765, a free one if taken)")
    p.add_argument("--images", type=int, default=4, help="synthetic images in the mini val set (default: 4)")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    from harness.nightly.rehearsal import rehearse

    return rehearse(args.dir, zoo_path=args.zoo, stack=args.stack, port=args.port, n_images=args.images)
