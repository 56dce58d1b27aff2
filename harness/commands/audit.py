"""`harness audit`: offline, without weights, does every model's config exist at the pin, stay inside the
tree and build on this environment's paddle? Run once per stack; `--merge` renders the JSON of several."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands import options
from harness.core.errors import ExitCode

if TYPE_CHECKING:
    from harness.nightly.audit import Audit
    from harness.zoo.manifest import Zoo

NAME = "audit"
HELP = "offline, without weights: does every model's config exist, stay in the tree and build?"
log = logging.getLogger("harness")


def add_parser(sub: options.Subparsers, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = options.command(
        sub,
        common,
        NAME,
        HELP,
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
    p.set_defaults(func=main)
    return p


def audit(
    zoo: Zoo, models: list[str] | None = None, *, stack: str | None = None, ppdet_root: Path | None = None
) -> Audit:
    """Every selected model's config checked and built (in workers) against the pinned source of `stack`."""
    from importlib.metadata import PackageNotFoundError, version

    from harness.fetch import source
    from harness.nightly import audit as checks

    name, pin = zoo.source(stack)
    tree = source.checkout(ppdet_root, pin) if ppdet_root else source.prepare(pin)
    findings = checks.run(zoo, tree, models or None)
    try:
        paddle = version("paddlepaddle")
    except PackageNotFoundError:
        paddle = None
    return checks.Audit(stack=name, paddle=paddle, tree=tree.as_json(), findings=findings)


def main(args: argparse.Namespace) -> int:
    from harness.core.files import atomic_write_bytes, atomic_write_json
    from harness.nightly import audit as checks

    if args.merge:
        text = checks.markdown([checks.load(path) for path in args.merge])
    else:
        zoo, _ = options.zoo(args)
        data = audit(zoo, args.models, stack=args.stack, ppdet_root=args.ppdet_root)
        if args.json:
            atomic_write_json(args.json, data.model_dump(), sort_keys=False)
        text = checks.markdown([data])
        failed = sum(f.status != "built" for f in data.findings)
        log.info("audit (%s): %d built, %d did not", data.stack, len(data.findings) - failed, failed)
    if args.out:
        atomic_write_bytes(args.out, text.encode())
    else:
        print(text, end="")
    return ExitCode.OK
