"""The prediction files PaddleDetection's eval wrote, checked against the metrics the zoo documents for the model:
which file serves which metric, and what an empty or a mismatched set of files means.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.errors import HarnessError
from harness.zoo import kinds


def _prefix(file: str) -> str:
    kind = kinds.by_file(file)
    assert kind is not None  # only files of kinds.prediction_files() are looked at
    return kind.prefix


def prediction_files(preds: Path, metrics: list[str]) -> dict[str, str]:
    """The prediction files ppdet wrote, checked against what the documented metrics need.

    Nothing written at all is a model that detected nothing: AP 0, not an error (the files the metrics need
    are written empty). Some predictions written but none for a documented metric (masks of a box-only
    model, say) is an error naming the metric: it would otherwise be "not measured" or 0 for a wrong reason.
    """
    found = {f: preds / f"{f}.json" for f in kinds.prediction_files() if (preds / f"{f}.json").exists()}
    for prefix in kinds.KINDS:
        if len(twins := sorted(p.name for k, p in found.items() if _prefix(k) == prefix)) > 1:
            raise HarnessError(
                f"PaddleDetection wrote {' and '.join(twins)}: two files of {prefix} predictions, and one result "
                "can be scored from only one of them",
                hint="check the model's config (its metric writes one prediction file per kind)",
            )
    needed = {m.split("_", 1)[0] for m in metrics}
    served = {_prefix(k) for k in found}
    if not found:
        for prefix in sorted(needed):
            file = kinds.KINDS[prefix].files[0]
            (preds / f"{file}.json").write_text("[]")
            found[file] = preds / f"{file}.json"
    elif missing := sorted(m for m in metrics if m.split("_", 1)[0] not in served):
        raise HarnessError(
            f"the documented {', '.join(missing)} cannot be measured: PaddleDetection wrote "
            f"{', '.join(sorted(p.name for p in found.values()))} and no "
            f"{' or '.join(sorted({m.split('_', 1)[0] for m in missing}))} predictions",
            hint="check the model's config and `expected:` in the zoo file",
        )
    return {k: str(p) for k, p in found.items()}
