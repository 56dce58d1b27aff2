"""The whole zoo's nightly site to look at: 355 models over 30 made-up nights, left on disk.

A newcomer's preview of what the nightly page looks like at zoo scale, without a GPU, a run or a network:
scripts/bench_site.py's nights (a model failing tonight as PaddleDetection's commit moved, one whose checkpoint is
truncated tonight, one fixed, one erroring for five nights, noisy ones) are written as a run directory and a
history, then the same command the nightly's merge job runs renders them:
`harness report RUN --history HISTORY --html SITE --outputs OUT`. Every page carries a banner saying the data is
made up. Nothing outside DIR is written; DIR must be new, empty, or an earlier demo.

    python scripts/demo_site.py [DIR]          (default ./zoo-demo; then open DIR/site/index.html)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import bench_site  # noqa: E402

from harness.core.errors import UsageError  # noqa: E402
from harness.core.files import own_directory  # noqa: E402
from harness.records import results  # noqa: E402

MARK = ".zoo-demo"
NOTICE = "DEMO: made-up nights of the whole zoo (scripts/demo_site.py); no model was run, no number is real."


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", nargs="?", type=Path, default=Path("zoo-demo"), help="where to leave it (default zoo-demo)")
    ap.add_argument("--nights", type=int, default=30)
    args = ap.parse_args()
    root = args.dir.resolve()
    try:
        own_directory(
            root,
            MARK,
            "made by scripts/demo_site.py; everything here is rebuilt on the next run\n",
            refusal=f"{root}: not empty and not a demo directory",
            hint="name a new or empty directory",
        )
    except UsageError as exc:
        print(f"demo_site: {exc}", file=sys.stderr)
        return 2
    for name in ("run", "site", "out", "history.jsonl"):  # an earlier demo: rebuilt from scratch
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    recs, run, hist = bench_site.make(root, args.nights)
    for rec in recs:  # every page says the data is made up
        results.write(run, rec.model_copy(update={"notice": NOTICE}))
    argv = [sys.executable, "-m", "harness", "report", str(run), "--history", str(hist)]
    argv += ["--html", str(root / "site"), "--outputs", str(root / "out")]
    done = subprocess.run(argv, stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        return done.returncode
    print(f"{len(recs)} models, {args.nights} nights: open {root / 'site' / 'index.html'}")
    print(f"report.md, junit.xml, results.csv and the plots: {root / 'out'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
