"""`harness list`: the zoo, its documented AP and what is cached. Starts in a blink: no paddle, no network."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from harness.commands import options
from harness.core.errors import ExitCode
from harness.zoo.kinds import KINDS

if TYPE_CHECKING:
    from harness.zoo.manifest import Zoo

NAME = "list"
HELP = "show the zoo with documented AP and cache state"


def add_parser(sub: options.Subparsers, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = options.command(
        sub,
        common,
        NAME,
        HELP,
        epilog="examples:\n  harness list\n  harness list --json | jq '.[].name'\n"
        "  harness list --zoo zoos/paddledetection.yaml",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=main)
    return p


def rows(zoo: Zoo) -> list[dict]:
    """One row per model: its name, table, dataset, documented metrics, README labels and whether its weights are
    cached."""
    from harness.fetch.artifacts import is_cached

    return [
        {
            "name": m.name,
            "table": m.table,
            "dataset": zoo.dataset_of(m).name,
            **{k.headline: m.expected.get(k.headline) for k in KINDS.values()},
            "expected": m.expected,
            "labels": m.labels,
            "input_size": m.input_size,
            "cached": is_cached(m.weights.url),
        }
        for m in zoo.models
    ]


def table(rows: list[dict]) -> str:
    """The rows as the github-style table `harness list` prints."""
    from tabulate import tabulate

    # one column per kind of the kinds table that a model documents (the first kind always)
    shown = [k for i, k in enumerate(KINDS.values()) if i == 0 or any(r.get(k.headline) is not None for r in rows)]
    heads = [k.headline for k in shown]
    several = len({r.get("dataset") for r in rows}) > 1  # a dataset column once the models use more than one
    headers = ["model", "table", *(["dataset"] if several else []), *(k.label for k in shown), "other documented"]
    headers.append("weights")

    body = [
        [
            r["name"],
            r["table"] or "-",
            *([r.get("dataset") or "-"] if several else []),
            *("-" if r.get(h) is None else f"{r[h]:.1f}" for h in heads),
            ", ".join(f"{k} {v:g}" for k, v in r["expected"].items() if k not in heads) or "-",
            "cached" if r["cached"] else "-",
        ]
        for r in rows
    ]
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def main(args: argparse.Namespace) -> int:
    zoo, _ = options.zoo(args)
    found = rows(zoo)
    print(json.dumps(found, indent=2, ensure_ascii=False) if args.json else table(found))
    return ExitCode.OK
