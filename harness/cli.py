"""`harness`: the command line, a small dispatcher over `harness.commands` (one module per command).

Exit codes (whole CLI): 0 ok/pass, 1 verdict fail, 2 usage or manifest error, 3 could not measure,
130 interrupted, 143 terminated (SIGTERM); all from errors.ExitCode. paddle and ppdet are never imported
here, and only the chosen command's options are built (each imports the tables its choices come from):
`list` and `--help` start in a blink.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
import threading
from collections.abc import Collection, Sequence

from harness import __version__
from harness.commands import COMMANDS, options
from harness.core.errors import ExitCode, HarnessError

log = logging.getLogger("harness")

DESCRIPTION = (
    "A benchmark and reproduction harness for PaddleDetection model zoos: fetch each model's weights, evaluate it "
    "with PaddleDetection, score it, judge its AP against the one its README documents, and report. The bundled "
    "zoo is the models of PaddleDetection's Res2Net README; `harness import` reads other READMEs into zoo files."
)

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


def build_parser(only: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command (`only`: of those commands; the others are listed with their summary but
    take no options, which is all `harness --help` and a parse of another command need)."""
    common = options.common(sub=True)
    parser = argparse.ArgumentParser(
        prog="harness",
        description=textwrap.fill(DESCRIPTION, 100),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[options.common(sub=False)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        if only is None or command.NAME in only:
            command.add_parser(sub, common)
        else:
            sub.add_parser(command.NAME, help=command.HELP, add_help=False)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The command `argv` names: its first word that is not an option or the value of one (`--zoo PATH`)."""
    takes_value = {s for a in options.common(sub=False)._actions if a.nargs != 0 for s in a.option_strings}
    names = {c.NAME for c in COMMANDS}
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in takes_value:
            skip = True
        elif word in names:
            return word
        elif not word.startswith("-"):
            return None
    return None


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
    words = sys.argv[1:] if argv is None else argv
    command = command_of(words)
    args = build_parser([command] if command else ()).parse_args(words)
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
