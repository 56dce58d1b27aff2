"""`harness verify MODEL`: one model evaluated with PaddleDetection in a worker, scored, and judged against
its documented AP. `verify()` is also the library's `harness.verify`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands import options
from harness.core.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from harness.model.inputs import Options
    from harness.records.results import Result

NAME = "verify"
HELP = "evaluate one model with PaddleDetection and judge its AP against the documented one"
log = logging.getLogger("harness")

EPILOG = """\
examples:
  harness verify faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco --device gpu
  harness verify mask_rcnn_res2net50_vd_26w_4s_fpn_2x_coco --subset 50 --out runs/quick
  harness verify faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco --data ~/coco --ppdet-root ~/PaddleDetection
  harness verify faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco --subset 8 --eval-size 320 \
-o BBoxPostProcess.nms.score_threshold=0.01
  harness verify mask_rcnn_res2net50_vd_26w_4s_fpn_2x_coco --gpus all     # one slice of val2017 per GPU
  harness verify faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco --parallel 2 --threads 1 --subset 16"""


def add_parser(sub: options.Subparsers, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from harness.score.scoring import DEFAULT

    p = options.command(
        sub,
        common,
        NAME,
        HELP,
        parents=[options.inputs(), options.timing("dygraph")],
        description="Fetch, check the weights strictly, evaluate with PaddleDetection, score the predictions "
        f"(with {DEFAULT} unless --scorer says otherwise), judge against the documented AP with the zoo's "
        "tolerance, write <out>/<model>/result.json and print the table row. Exit 0 pass, 1 fail, 3 could not measure.",
        epilog=EPILOG,
    )
    options.common_eval(p)
    p.add_argument("--no-timing", dest="timing", action="store_false", help="skip the fps measurement")
    options.parallel(
        p,
        gpus_help="slice i runs on the i-th GPU (mod their number); --parallel defaults to their "
        "number: 0,1,2,3 or all",
    )
    p.set_defaults(func=main)
    return p


def verify(
    model: str, *, zoo: str | Path | None = None, options: Options | None = None, out: str | Path | None = None
) -> Result:
    """Verify one model of the zoo (`zoo`: a zoo file, default as `--zoo`'s) as `harness verify` does: fetch,
    evaluate in a worker, score, judge. Writes `<out>/<model>/result.json` (`out` default: a new
    `runs/<UTC time>`) and returns that record; its `status` is pass, fail or error. `options`: an
    `inputs.Options` (device, subset, eval size, timing, ...; default: all defaults)."""
    return verify_into(model, zoo=zoo, options=options, out=out)[0]


def verify_into(
    model: str, *, zoo: str | Path | None, options: Options | None, out: str | Path | None
) -> tuple[Result, Path]:
    """`verify`, and the run directory the record was written into (made here when `out` is None, after the
    inputs are ready: a run that fails before any model leaves no empty directory)."""
    from harness.commands.options import default_run_dir, load
    from harness.model import slices
    from harness.model.inputs import Options, prepare
    from harness.nightly import verification as v
    from harness.nightly.schedule import cpu_estimate
    from harness.records import history

    the_zoo, _, lock = load(zoo)
    chosen = the_zoo.model(model)
    opts = options or Options()
    if the_zoo.notice:
        log.warning("%s", the_zoo.notice)
    inputs = prepare(the_zoo, lock, opts, [chosen])
    slices.check(opts.slices, inputs.data.num_images)
    if inputs.device == "cpu" and opts.subset is None and inputs.data.num_images > 50:
        try:  # the model's own CPU runs, when there are any; a damaged history costs the estimate, not the run
            past = history.load(history.default_path())
        except UsageError:
            past = []
        log.warning("%s", cpu_estimate(chosen, inputs.data.num_images, past, eval_size=opts.eval_size))
    run_dir = Path(out) if out else default_run_dir()
    return v.verify(the_zoo, chosen, inputs, lock, opts, run_dir), run_dir


def main(args: argparse.Namespace) -> int:
    from harness.nightly import verification as v
    from harness.publish import view
    from harness.publish.report import markdown

    opts = options.with_parallel(args, options.build_options(args, timing=args.timing, backends=("dygraph",)))
    rec, run_dir = verify_into(args.model, zoo=args.zoo, options=opts, out=args.out)
    if args.json:
        print(v.dumps(rec))
    else:
        print(markdown(view.of([rec])))
        print(v.summary_line(rec))
        print(f"result: {run_dir / rec.model / 'result.json'}")
    return {"pass": ExitCode.OK, "fail": ExitCode.FAIL}.get(rec.status, ExitCode.ERROR)
