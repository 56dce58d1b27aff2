"""What a night ran on, as the history keeps it, and the difference between two nights.

Why: when a model regresses, the first question is what changed since the last night it passed (asv shows the
commit range of a step, PyTorch's HUD the commit). A history line carries its night's environment (paddle, the
PaddleDetection tree, the harness commit, CUDA, driver and device, the dataset's and zoo file's digests), so the
answer comes from the history alone, without the run directories of earlier nights. Which fields there are, what
they are called on a page and which of them link to a compare view is data (FIELDS), not code.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.schema import Strict


class NightEnv(Strict):
    """One model's environment in one night (history.environment_of builds it from a result and its run.json).
    None: not recorded (an older history line, or a model that failed before the fact was known)."""

    paddle: str | None = None
    ppdet_repository: str | None = None
    ppdet_commit: str | None = None
    ppdet_tree: str | None = None
    harness: str | None = None  # the harness's version
    harness_commit: str | None = None
    cuda: str | None = None
    driver: str | None = None
    device_name: str | None = None
    dataset_sha256: str | None = None  # the annotations the model was scored against
    zoo_sha256: str | None = None


@dataclass(frozen=True)
class Field:
    """A field of NightEnv as pages and issues name it; `short`: how many characters of a digest to show."""

    name: str
    label: str
    short: int = 0


FIELDS = [
    Field("paddle", "paddle"),
    Field("ppdet_tree", "PaddleDetection tree", 12),
    Field("ppdet_commit", "PaddleDetection commit", 12),
    Field("harness_commit", "harness commit", 12),
    Field("harness", "harness version"),
    Field("cuda", "CUDA"),
    Field("driver", "driver"),
    Field("device_name", "device"),
    Field("dataset_sha256", "dataset sha256", 12),
    Field("zoo_sha256", "zoo file sha256", 12),
]
LABELS = {f.name: f.label for f in FIELDS}


@dataclass(frozen=True)
class Change:
    """One environment field that differs between two nights; `link`: the PaddleDetection compare view when
    the tree's commit changed (GitHub's `compare/A...B`)."""

    field: str
    label: str
    before: str | None
    after: str | None
    link: str | None = None

    def text_of(self, value: str | None) -> str:
        """One side of the change as people read it: a digest cut to its field's length."""
        short = next((f.short for f in FIELDS if f.name == self.field), 0)
        return "not recorded" if value is None else (value[:short] if short else value)

    def text(self) -> str:
        return f"{self.label}: {self.text_of(self.before)} → {self.text_of(self.after)}"


def diff(before: NightEnv, after: NightEnv) -> list[Change]:
    """The fields that differ between two nights, in FIELDS' order. A field recorded on one night only (an
    older history line) is no change: nothing is known to have changed. A change of PaddleDetection's commit
    (its tree with it) is one change, linking GitHub's compare view of the two commits; a tree that changed under
    the same commit (a patched checkout) is its own."""
    out = []
    for f in FIELDS:
        a, b = getattr(before, f.name), getattr(after, f.name)
        if a is None or b is None or a == b:
            continue
        if (
            f.name == "ppdet_tree"
            and None not in (before.ppdet_commit, after.ppdet_commit)
            and (before.ppdet_commit != after.ppdet_commit)
        ):
            continue  # the tree follows the commit: the commit's change says it (a dirty tree alone shows)
        link = None
        if f.name in ("ppdet_tree", "ppdet_commit") and before.ppdet_commit and after.ppdet_commit:
            repo = after.ppdet_repository or before.ppdet_repository
            link = compare_url(repo, before.ppdet_commit, after.ppdet_commit)
        out.append(Change(f.name, f.label, a, b, link))
    return out


def compare_url(repository: str | None, before: str, after: str) -> str | None:
    """GitHub's compare view of two commits of a repository given by its https URL; None for another host."""
    if not repository or not repository.startswith("https://github.com/"):
        return None
    return f"{repository.removesuffix('.git').rstrip('/')}/compare/{before}...{after}"
