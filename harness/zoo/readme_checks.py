"""The README cross-checks: rows that contradict another row or the config they link become findings (a
maintainer fixes the README), not models. readme.py reads the rows; this module compares them.

`found` is a list of (entry, table, columns) as readme.py makes them; entries have `weights_file`, `config`,
`input_size`, `facts.eval_size`, `slim` and `where`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Finding:
    """Something wrong or doubtful in the READMEs, at a line: a maintainer fixes the README, the harness
    imports no model for it (or says which reading it took)."""

    where: str  # file:line
    text: str


def cross_checked(found: list, findings: list[Finding]) -> tuple[list, list]:
    """The entries the READMEs' cross-checks leave; the others become findings.
    - One weights file under two configs: the config whose name the weights carry (else the one in the
      weights' home folder) is meant; a row pairing the weights with another config is a README slip.
    - One (weights, config) documented at a size other than the config's own eval size, in a table that does not
      document it at the config's own size, while another table does: the config evaluates at its own size."""
    by_weights: dict[str, set[str]] = {}
    for e, _, _ in found:
        by_weights.setdefault(e.weights_file, set()).add(e.config)
    dropped: set[int] = set()
    for i, (e, _, _) in enumerate(found):
        configs = by_weights[e.weights_file]
        if len(configs) < 2:
            continue
        named = [
            c
            for c in dict.fromkeys(o.config for o, _, _ in found if o.weights_file == e.weights_file)
            if PurePosixPath(c).stem == PurePosixPath(e.weights_file).stem
        ]
        if named and e.config not in named:
            dropped.add(i)
            findings.append(
                Finding(
                    e.where,
                    f"{e.weights_file} is paired with {e.config}, but it is the "
                    f"weights of {', '.join(named)} (one weights file under two configs)",
                )
            )
        elif len(named) > 1 and e.config != named[0]:  # two configs of the weights' name in two folders
            dropped.add(i)
            findings.append(
                Finding(
                    e.where,
                    f"{e.weights_file} is linked with {e.config} here and with {named[0]} (its "
                    "home README, taken): two configs of one name for one weights file",
                )
            )
    mis_sized: set[int] = set()
    for i, (e, _, _) in enumerate(found):
        own = e.facts.eval_size if e.facts else None
        if i in dropped or own is None or e.input_size in (None, own):
            continue
        same = [(o, t) for o, t, _ in found if o.config == e.config and o.weights_file == e.weights_file]
        if any(t is found[i][1] and o.input_size in (None, own) for o, t in same):
            continue  # its own table documents the config's own size too: a table of sizes (PP-YOLO's 608 ... 320)
        if home := [o for o, _ in same if o.input_size in (None, own)]:
            dropped.add(i)
            mis_sized.add(i)
            findings.append(
                Finding(
                    e.where,
                    f"{e.weights_file} with {e.config} documented at {e.input_size}, "
                    f"but the config evaluates at {own}, as {home[0].where} documents it",
                )
            )
    _sized_like_baseline(found, dropped, mis_sized, findings)
    return [f for i, f in enumerate(found) if i not in dropped], [f for i, f in enumerate(found) if i in dropped]


def _sized_like_baseline(found: list, dropped: set[int], mis_sized: set[int], findings: list[Finding]) -> None:
    """A compressed model documented at a size its config does not evaluate, in a table whose baseline row (the
    same config, plain weights) was found documented at that wrong size: the table's size column is the slip
    (the slim README's PP-YOLO MobileNetV3 table: 608, where the config and the model's own README say 320)."""
    wrong = {(e.config, id(t), e.input_size) for i, (e, t, _) in enumerate(found) if i in mis_sized}
    for i, (e, t, _) in enumerate(found):
        own = e.facts.eval_size if e.facts else None
        if i in dropped or not e.slim or own is None or (e.config, id(t), e.input_size) not in wrong:
            continue
        dropped.add(i)
        findings.append(
            Finding(
                e.where,
                f"{e.weights_file} ({e.slim}) documented at {e.input_size} beside a baseline row of {e.config} "
                f"found documented at that size too, but the config evaluates at {own}",
            )
        )
