"""Every (task, architecture family) through the real pipeline, on CPU at a small size: the family matrix.

For the models of scripts/families.yaml (one per family and task, from zoos/paddledetection.yaml): random-initialised
weights built from each real config (BatchNorm calibrated on the synthetic images), served on 127.0.0.1 with a
synthetic set of each model's own dataset laid out as that dataset is (COCO json with the dataset's classes, COCO
keypoints, Pascal VOC, MOTChallenge sequences: harness/nightly/synthetic.py), then `harness run` over them: download
and verify, strict weight check, PaddleDetection's eval, scoring of every prediction kind the model writes, verdict,
report. Random weights give AP ≈ 0, so a verdict of `fail` is the expected outcome; what the matrix shows is that
every family runs through.

    .venv-current/bin/python scripts/families.py --json /tmp/families-current.json
    HARNESS_STACK=previous .venv-previous/bin/python scripts/families.py --json /tmp/families-previous.json
    python scripts/families.py --merge /tmp/families-current.json /tmp/families-previous.json \\
        --out reports/families.md
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass
class Row:
    task: str  # the section of scripts/families.yaml
    judged: str  # the kinds the model is judged on and its dataset: "box, mask on coco-val2017"
    family: str
    model: str
    eval_size: int | None
    status: str  # ran | error | not built
    verdict: str | None = None  # the harness's verdict (fail is expected with random weights)
    predictions: list[str] | None = None
    metrics: list[str] | None = None
    seconds: float | None = None  # the worker (import, build, weights, eval) as the result records it
    why: str | None = None
    unscaled: str | None = None  # why --eval-size did not apply (a keypoint model's crops: geometry.py)


@dataclass(frozen=True)
class Pick:
    task: str
    family: str
    model: str
    eval_size: int | None  # its own eval size, or None (the run's)


def _picks(path: Path) -> list[Pick]:
    """The rows of scripts/families.yaml: `task: {Family: model or {model: m, eval_size: px}}`."""
    raw = yaml.safe_load(path.read_text())
    picks = [
        Pick(task, family, v, None) if isinstance(v, str) else Pick(task, family, v["model"], v.get("eval_size"))
        for task, families in raw.items()
        for family, v in families.items()
    ]
    if dupes := sorted({p.model for p in picks if [q.model for q in picks].count(p.model) > 1}):
        raise SystemExit(f"{path}: models named twice: {', '.join(dupes)}")
    return picks


def _judged(zoo, name: str) -> str:
    """The kinds a model is judged on (its documented metrics') and the dataset it is evaluated on."""
    from harness.zoo.kinds import of_metric

    model = zoo.model(name)
    kinds = dict.fromkeys(k.prefix for m in model.documented() if (k := of_metric(m)) is not None)
    return f"{', '.join(kinds)} on {zoo.dataset_of(model).name}"


def _subzoo(zoo_path: Path, names: list[str]) -> dict:
    whole = yaml.safe_load(zoo_path.read_text())
    by_name = {m["name"]: m for m in whole["models"]}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise SystemExit(f"scripts/families.yaml names models not in {zoo_path}: {', '.join(missing)}")
    models = [by_name[n] for n in names]
    return {**whole, "models": models, "tables": {m["table"]: whole["tables"][m["table"]] for m in models}}


def run(args) -> dict:
    from harness.nightly.rehearsal import build_mirror, mirror_zoo, serve
    from harness.zoo.manifest import parse_zoo

    picks = _picks(args.families)
    if args.only:
        picks = [p for p in picks if p.task in args.only or p.model in args.only]
    sizes = {p.model: p.eval_size or args.eval_size for p in picks}
    raw = _subzoo(args.zoo, [p.model for p in picks])
    zoo = parse_zoo(raw)
    stack, pin = zoo.source(args.stack)
    args.work.mkdir(parents=True, exist_ok=True)
    failed: dict[str, str] = {}
    t0 = time.perf_counter()
    mirror = build_mirror(args.work, zoo, stack, n_images=args.images, failed=failed)
    print(f"mirror built in {time.perf_counter() - t0:.0f} s; not built: {sorted(failed)}", flush=True)
    ok = parse_zoo({**raw, "models": [m for m in raw["models"] if m["name"] not in failed]})
    runs = {size: args.work / f"run-{size}" for size in sorted(set(sizes.values()))}
    with serve(mirror, 0) as base:
        served = args.work / "served.yaml"
        served.write_text(yaml.safe_dump(mirror_zoo(ok, stack, base, mirror), allow_unicode=True))
        env = {**os.environ, "HARNESS_CACHE": str(args.work / "cache"), "HARNESS_STACK": stack}
        for size, run_dir in runs.items():  # one `harness run` per eval size
            names = [m for m, s in sizes.items() if s == size and m not in failed]
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "harness",
                    "run",
                    "--zoo",
                    str(served),
                    "--out",
                    str(run_dir),
                    "--device",
                    "cpu",
                    "--eval-size",
                    str(size),
                    "--no-timing",
                    "--history",
                    str(args.work / "history.jsonl"),
                    *names,
                ],
                env=env,
                cwd=REPO,
            )
            print(f"harness run at {size} px exited {proc.returncode}", flush=True)
    rows = []
    for p in picks:
        name, judged = p.model, _judged(zoo, p.model)
        if name in failed:
            rows.append(Row(p.task, judged, p.family, name, sizes[name], "not built", why=failed[name]))
            continue
        rec = json.loads((runs[sizes[name]] / name / "result.json").read_text())
        err = rec.get("error") or {}
        rows.append(
            Row(
                p.task,
                judged,
                p.family,
                name,
                sizes[name],
                "error" if rec["status"] == "error" else "ran",
                rec["status"],
                sorted(rec.get("predictions") or {}),
                sorted(rec.get("metrics") or {}),
                (rec.get("durations") or {}).get("worker"),
                f"{err.get('stage')}: {str(err.get('message', '')).splitlines()[0][:300]}" if err else None,
                (rec.get("geometry") or {}).get("unscaled"),
            )
        )
    import paddle  # the version that ran (the same environment as the runs above)

    return {
        "stack": stack,
        "commit": pin.commit,
        "paddle": paddle.__version__,
        "eval_size": args.eval_size,
        "images": args.images,
        "rows": [asdict(r) for r in rows],
    }


def _why(row: dict) -> str:
    """The reason, without local paths: a config absent from a stack's tree says so."""
    return re.sub(
        r" not found in /\S+",
        " not in this stack's tree (added to PaddleDetection later)",
        (row.get("why") or "").replace("|", "/"),
    )


def _status(row: dict) -> str:
    return "not at this pin" if " not found in /" in (row.get("why") or "") else row["status"]


def _by_stack(runs: list[dict]) -> list[dict]:
    """One run per stack: JSON outputs of the same stack (a run of some rows with --only, then others) are merged,
    a later row of a model replacing an earlier one."""
    out: dict[str, dict] = {}
    for r in runs:
        if r["stack"] not in out:
            out[r["stack"]] = {**r, "rows": list(r["rows"])}
            continue
        have = out[r["stack"]]
        models = {row["model"] for row in r["rows"]}
        have["rows"] = [row for row in have["rows"] if row["model"] not in models] + r["rows"]
    return list(out.values())


def architectures(zoo_path: Path = REPO / "zoos" / "paddledetection.yaml") -> dict[str, str]:
    """Each model's architecture as the zoo file names it (the config's `architecture:`): the family, the same
    word as on the site and in the reports; the yaml's names (Faster R-CNN, PP-YOLOE+) are the variants."""
    from harness.zoo.manifest import load_zoo

    zoo, _ = load_zoo(zoo_path)
    return {m.name: m.architecture or "-" for m in zoo.models}


def markdown(runs: list[dict], arch: dict[str, str] | None = None) -> str:
    runs = _by_stack(runs)
    arch = architectures() if arch is None else arch
    lines = [
        "# Every family through the real pipeline (CPU, random weights)",
        "",
        "`scripts/families.py`: one model per architecture family and task of the zoo (scripts/families.yaml: "
        "boxes and masks on COCO, person keypoints on COCO, Pascal VOC, COCO json of another dataset, trackers on "
        "MOTChallenge sequences), "
        "random-initialised weights built from its real config, served on 127.0.0.1 with a synthetic set of the "
        "model's own dataset laid out as that dataset is (COCO json with the dataset's classes, COCO keypoints "
        "json, VOC eval list with XML files and label list, MOT sequences with gt.txt and seqinfo.ini), then "
        "`harness run`: download and verify, strict "
        "weight check, PaddleDetection's eval, scoring of every prediction kind, verdict, report. AP ≈ 0 with "
        "random weights, so the verdict `fail` is the expected outcome: **ran** means the family went through "
        "every stage. Task: the kinds the model is judged on and its dataset. Family: the architecture its config "
        "builds (the config's `architecture:`, as the site and the reports name it); variant: the model's name in "
        "scripts/families.yaml. px: the eval size, `own size` where "
        "the config has no Resize to scale (a keypoint model's person crops are its config's, a tracker's "
        "LetterBox its EvalMOTReader's). Seconds: the worker "
        "(import, build, "
        "weights, eval) on this project's 2-core CPU machine.",
        "",
    ]
    for r in runs:
        ran = sum(row["status"] == "ran" for row in r["rows"])
        tasks = dict.fromkeys(row.get("task", "coco") for row in r["rows"])
        per = ", ".join(
            f"{t} {sum(x['status'] == 'ran' for x in r['rows'] if x.get('task', 'coco') == t)}"
            f"/{sum(x.get('task', 'coco') == t for x in r['rows'])}"
            for t in tasks
        )
        lines.append(
            f"- {r['stack']}: PaddleDetection {r['commit'][:12]}, paddle {r['paddle']}, "
            f"{r['images']} images at {r['eval_size']} px unless the row says otherwise: "
            f"**{ran} of {len(r['rows'])} ran** ({per})"
        )
    stacks = [r["stack"] for r in runs]
    by = {(r["stack"], row["model"]): row for r in runs for row in r["rows"]}
    models = list(dict.fromkeys(row["model"] for r in runs for row in r["rows"]))
    head = ["task", "family", "variant", "model", "px", "predictions"]
    head += [f"{s}: status" for s in stacks] + [f"{s}: s" for s in stacks]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in models:
        rows = [by.get((s, model)) for s in stacks]
        first = next(x for x in rows if x)
        kinds = next((", ".join(x["predictions"]) for x in rows if x and x.get("predictions")), "-")
        px = next((str(x["eval_size"]) for x in rows if x and x.get("eval_size")), "-")
        px = "own size" if any(x and x.get("unscaled") for x in rows) else px
        cells = [
            first.get("judged") or "-",
            arch.get(model, "-"),
            first["family"],
            model,
            px,
            kinds,
            *(_status(x) if x else "-" for x in rows),
            *(f"{x['seconds']:.0f}" if x and x.get("seconds") else "-" for x in rows),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    why = [(s, row) for r in runs for s in [r["stack"]] for row in r["rows"] if row["status"] != "ran"]
    lines += ["", "## Why a family did not run", ""]
    lines += [
        f"- {arch.get(row['model'], '-')}: {row['family']} (`{row['model']}`, {s}): {_status(row)}: {_why(row)}"
        for s, row in why
    ] or ["none"]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", default=None, help="the zoo's stack (default: $HARNESS_STACK or the first)")
    p.add_argument("--zoo", type=Path, default=REPO / "zoos" / "paddledetection.yaml")
    p.add_argument("--families", type=Path, default=REPO / "scripts" / "families.yaml")
    p.add_argument("--work", type=Path, default=None, help="working directory (default /tmp/families-<stack>)")
    p.add_argument("--only", nargs="+", help="run only these tasks (yaml sections) or models")
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--eval-size", type=int, default=160)
    p.add_argument("--json", type=Path, help="write this stack's rows as JSON")
    p.add_argument("--merge", type=Path, nargs="+", help="render earlier --json outputs instead of running")
    p.add_argument("--out", type=Path, help="write the markdown (default: print)")
    args = p.parse_args()
    if args.merge:
        text = markdown([json.loads(path.read_text()) for path in args.merge])
    else:
        args.stack = args.stack or os.environ.get("HARNESS_STACK")
        args.work = args.work or Path(f"/tmp/families-{args.stack or 'current'}")
        data = run(args)
        if args.json:
            args.json.write_text(json.dumps(data, indent=1))
        text = markdown([data])
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
