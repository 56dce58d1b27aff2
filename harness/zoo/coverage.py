"""The import's coverage report (reports/zoo-coverage.md): what was imported, what was not and why, by task,
the findings in the READMEs (each at its file:line), and the measured reasons of tasks the harness does not run.

Why a module of its own: readme.py decides what each row becomes; this one only counts and writes, from the
`Imported` record and harness/zoo/tasks.yaml (the measured outcome of each task not run, per stack).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from pathlib import Path, PurePosixPath

import yaml

from harness.zoo.kinds import of_metric
from harness.zoo.readme import Imported

TASKS = Path(__file__).with_name("tasks.yaml")


@cache
def measured() -> dict[str, dict]:
    """tasks.yaml's `tasks`: per task the harness does not evaluate, its label, status, reason and per-stack
    outcome as scripts/measure_tasks.py measured them."""
    if not TASKS.is_file():
        return {}
    rows = (yaml.safe_load(TASKS.read_text(encoding="utf-8")) or {}).get("tasks") or {}
    return {k: v for k, v in rows.items() if isinstance(v, dict)}


def _distinct(result: Imported) -> tuple[set[str], dict[str, str]]:
    """Distinct .pdparams file names imported, and each other one's first skip reason (with a documented
    metric or not)."""
    imported = {PurePosixPath(e.weights.split("?")[0]).name for e in result.entries}
    others: dict[str, str] = {}
    slips = [(readme, line, "a README slip (listed under findings)") for readme, line in result.slips]
    for _, line, reason in [*result.skipped, *slips]:
        for name in re.findall(r"/([^/()\s]+\.pdparams)", line):
            if name not in imported:
                others.setdefault(name, reason)
    return imported, others


def coverage(result: Imported, commit: str | None) -> str:
    """The coverage report: READMEs, rows, models imported, rows skipped by reason and task, findings."""
    reasons = Counter(re.sub(r" \((the table names|metric |config ).*\)$", "", r) for _, _, r in result.skipped)
    tasks = Counter(f"{result.tasks[r][1]} (`{result.tasks[r][0]}`)" for _, _, r in result.skipped if r in result.tasks)
    by_dataset = Counter((e.dataset.name if e.dataset else "coco-val2017") for e in result.entries)
    families = Counter(e.table.split(":")[0] for e in result.entries)
    by_task = Counter(
        " + ".join(dict.fromkeys(k.task + f" ({k.prefix})" for m in e.expected if (k := of_metric(m)) is not None))
        for e in result.entries
    )
    imported, others = _distinct(result)
    documented = {n: r for n, r in others.items() if not r.startswith("no ") or r == "no config link"}
    # numbers only a benchmark's server scores (a test split without public ground truth): no one re-measures them
    server = {n for n, r in documented.items() if r in result.server}
    measured_tasks = set(measured())  # the tasks measured on both stacks (tasks.yaml); parts of them not built
    not_built = {n for n, r in documented.items() if r in result.tasks and result.tasks[r][0] in measured_tasks}
    total = len(imported) + len(documented)
    lines = [
        "# PaddleDetection model-zoo tables: import coverage",
        "",
        f"`harness import --all` over `configs/**/README*.md` of PaddleDetection {commit or '(checkout)'}: a row "
        "is imported when it has a .pdparams link, a config present at the pin (or found by its file name under "
        "the README's folder), a dataset and task the harness evaluates — decided by the config itself: its "
        "`metric`, `num_classes` and EvalDataset (harness/zoo/datasets.yaml) — and a documented value of that "
        "task. Every other row is counted below with its reason; findings in the READMEs are listed with their "
        "file and line.",
        "",
        "| | count |",
        "|---|---|",
        f"| README files read | {len(result.readmes)} |",
        f"| table rows | {result.rows} |",
        f"| models imported | {len(result.entries)} |",
        f"| rows repeating an imported model (README_cn, a second table) | {result.duplicates} |",
        f"| rows skipped | {len(result.skipped)} |",
        f"| findings in the READMEs | {len(result.findings)} |",
        "",
        "## Coverage of the distinct checkpoints",
        "",
        f"The tables link {len(imported) + len(others)} distinct `.pdparams` files; {total} of them with a documented "
        f"metric. Imported: {len(imported)} of {total}, **{_pct(len(imported), total)}**. Without the "
        f"{len(server)} documented only on a test split that a benchmark's server scores (no public ground truth: "
        "DOTA, MOTChallenge; no one can re-measure them): "
        f"{len(imported)} of {total - len(server)}, **{_pct(len(imported), total - len(server))}**. Without "
        f"every row of the measured tasks the harness does not evaluate ({', '.join(sorted(measured_tasks))}, "
        f"measured below: {len(not_built)} files): {len(imported)} of {total - len(not_built)}, "
        f"**{_pct(len(imported), total - len(not_built))}**. A file counts once, under the first reason its row "
        "was skipped for.",
        "",
        "| why a checkpoint is not imported | files |",
        "|---|---|",
        *[f"| {r} | {n} |" for r, n in Counter(re.sub(r" \(.*\)$", "", r) for r in documented.values()).most_common()],
        "",
        "## Models imported, by task (the kinds each is judged on)",
        "",
        "| task | models |",
        "|---|---|",
        *[f"| {t} | {n} |" for t, n in sorted(by_task.items())],
        "",
        "## Models imported, by dataset",
        "",
        "| dataset | models |",
        "|---|---|",
        *[f"| {d} | {n} |" for d, n in sorted(by_dataset.items())],
        "",
        "## Rows not imported for their task or dataset, by task",
        "",
        "| task | rows |",
        "|---|---|",
        *[f"| {t} | {n} |" for t, n in tasks.most_common()],
        "",
        *_measured_lines(),
        "## Findings in the READMEs (not imported)",
        "",
        *[f"- `{f.where}`: {f.text}" for f in result.findings],
        *[f"- {c}" for c in result.conflicts],
        "",
        "## Config links resolved by file name (imported)",
        "",
        *[f"- `{f.where}`: {f.text}" for f in result.resolved],
        "",
        "## Rows skipped, by reason",
        "",
        "| reason | rows |",
        "|---|---|",
        *[f"| {r} | {n} |" for r, n in reasons.most_common()],
        "",
        "## Models imported, by folder",
        "",
        "| folder | models |",
        "|---|---|",
        *[f"| {f} | {n} |" for f, n in sorted(families.items())],
        "",
    ]
    return "\n".join(lines)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / max(whole, 1):.1f} %"


def _measured_lines() -> list[str]:
    """Each task the harness does not run, with the outcome measured on each stack (tasks.yaml)."""
    rows = measured()
    if not rows:
        return []
    out = [
        "## Tasks the harness does not evaluate yet, measured",
        "",
        "Each was tried on both stacks with PaddleDetection's own entry points (tools/eval.py, tools/eval_mot.py, "
        "ppdet/ext_op) on CPU, random weights and synthetic data: `runs` means that path ran end to end on at least "
        "one stack, not that the harness evaluates the task. `python3 scripts/measure_tasks.py` re-measures them "
        "(harness/zoo/tasks.yaml; the log: reports/tasks-measured.md).",
        "",
    ]
    for name, row in rows.items():
        out += [
            f"### {row.get('label', name)} (`{name}`): {row.get('status', '?')}",
            "",
            str(row.get("reason", "")).strip(),
            "",
        ]
        for stack, got in (row.get("stacks") or {}).items():
            if isinstance(got, dict):
                out.append(f"- {stack} (measured {got.get('measured', '?')}): {got.get('outcome', '?')}")
        out.append("")
    return out
