"""`harness bench MODEL`: time inference on each backend without evaluating (docs/commands.md: 'How fps is
measured')."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands import options
from harness.core.errors import ExitCode

if TYPE_CHECKING:
    from harness.model.inputs import Options
    from harness.model.timing import TimingRecord

NAME = "bench"
HELP = "time inference (fps, latency per stage) without evaluating"


def add_parser(sub: options.Subparsers, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = options.command(
        sub,
        common,
        NAME,
        HELP,
        parents=[options.inputs(), options.timing("dygraph and inference")],
        description="Times the model with the published method (docs/commands.md: 'How fps is measured') on each "
        "backend and scores the exported model's predictions against the dygraph model's on the same images. Writes "
        "<out>/<model>/timing.json, and fills result.json's timing when --out is a verify run.",
        epilog="examples:\n"
        "  harness bench faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco --device gpu --backend trt-fp16\n"
        "  harness bench faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco --out runs/quick   # fills its fps\n"
        "  harness bench mask_rcnn_res2net50_vb_26w_4s_fpn_2x_coco --eval-size 320 --iters 20 --min-seconds 5",
    )
    options.common_eval(p)
    p.set_defaults(func=main)
    return p


def bench(model: str, *, zoo: str | Path | None, options: Options, out: str | Path | None) -> tuple[TimingRecord, Path]:
    """Time `model` on `options.backends`; returns the timing record (also `<out>/<model>/timing.json`) and
    the run directory (`out`, else a new `runs/<UTC time>`)."""
    from harness.commands.options import default_run_dir, load
    from harness.model.inputs import prepare
    from harness.nightly import verification as v

    the_zoo, _, lock = load(zoo)
    chosen = the_zoo.model(model)
    inputs = prepare(the_zoo, lock, options, [chosen])
    run_dir = Path(out) if out else default_run_dir()
    return v.bench(the_zoo, chosen, inputs, lock, options, run_dir), run_dir


def main(args: argparse.Namespace) -> int:
    from harness.publish.report import timing_lines

    opts = options.build_options(args, timing=True, backends=("dygraph", "inference"))
    timing, run_dir = bench(args.model, zoo=args.zoo, options=opts, out=args.out)
    if args.json:
        print(json.dumps(timing.model_dump(exclude_none=True), indent=2, sort_keys=True))
    else:
        print("\n".join(timing_lines(timing)))
        print(f"timing: {run_dir / args.model / 'timing.json'}")
    return ExitCode.OK
