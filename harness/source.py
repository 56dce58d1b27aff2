"""The PaddleDetection source tree the worker imports: the archive of the pinned commit, or a checkout.

Why source and not PyPI's paddledet: 2.6.0 cannot evaluate these models on any PyPI paddle (DESIGN.md).
The commit is proven from the archive itself: `git archive` writes the commit id into the tar's pax
header, so a pin can be checked without a pre-recorded hash (which cannot be learned offline).
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.archive import extract, tar_commit_id
from harness.artifacts import cache_root, fetch_artifact
from harness.errors import ArchiveError, UsageError
from harness.lockfile import LockFile
from harness.manifest import Model, Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceTree:
    root: Path  # the directory that holds ppdet/ and configs/
    commit: str | None  # None: a checkout whose commit could not be read
    origin: str  # "archive" or "checkout"
    archive_sha256: str | None = None

    def config(self, model: Model) -> Path:
        """The model's real config file in this tree, its `_BASE_` chain checked to stay inside the tree."""
        path = self.root / model.config
        if not path.is_file():
            raise UsageError(f"{model.name}: config {model.config} not found in {self.root}",
                             hint="check `config:` in zoo.yaml, or the PaddleDetection commit")
        base_chain(path, self.root)
        return path

    def as_json(self) -> dict:
        return {"root": str(self.root), "commit": self.commit, "origin": self.origin,
                "archive_sha256": self.archive_sha256}


class _AnyTags(yaml.SafeLoader):
    """Safe YAML that reads ppdet's custom tags (e.g. `!COCODataSet`) as plain data: only `_BASE_` matters."""


_AnyTags.add_multi_constructor("!", lambda loader, suffix, node: None)


def base_chain(config: Path, root: Path) -> list[Path]:
    """Every file a config pulls in through `_BASE_` (ppdet resolves them relative to the including file);
    one that resolves outside `root`, or does not exist, is refused before ppdet reads anything."""
    root = root.resolve()
    seen: list[Path] = []
    todo = [config.resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.append(path)
        try:
            data = yaml.load(path.read_text(), Loader=_AnyTags) or {}  # a SafeLoader subclass
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"{path}: not a readable config: {exc}") from None
        bases = data.get("_BASE_", []) if isinstance(data, dict) else []
        for base in [bases] if isinstance(bases, str) else bases:
            target = (path.parent / str(base)).resolve()
            if not target.is_relative_to(root):
                raise UsageError(
                    f"{path.relative_to(root) if path.is_relative_to(root) else path}: _BASE_ {base!r} points "
                    f"outside the PaddleDetection tree ({target})",
                    hint="configs may only include files of the same PaddleDetection tree; check the tree "
                    "(--ppdet-root) or the archive it came from")
            if not target.is_file():
                raise UsageError(f"{path}: _BASE_ {base!r} not found ({target})",
                                 hint="the PaddleDetection tree is incomplete; fetch the pinned source again")
            todo.append(target)
    return seen


def _looks_like_ppdet(root: Path) -> bool:
    return (root / "ppdet" / "__init__.py").is_file() and (root / "configs").is_dir()


def _commit_check(url: str, commit: str):
    def check(path: Path) -> None:
        found = tar_commit_id(path)
        if found != commit:
            raise ArchiveError(
                f"{url}: archive is commit {found or 'unknown (no commit id in the tar header)'}, "
                f"zoo.yaml pins {commit}; nothing was cached",
                hint="point the source's archive at the pinned commit, or change the pin",
            )
    return check


def checkout(root: Path, pin: Source) -> SourceTree:
    """A local PaddleDetection tree (`--ppdet-root`): its own commit is used and recorded, pin or not."""
    root = root.expanduser().resolve()
    if not _looks_like_ppdet(root):
        raise UsageError(f"--ppdet-root {root}: not a PaddleDetection tree (no ppdet/__init__.py or configs/)",
                         hint="pass the directory that holds ppdet/ and configs/")
    commit = None
    if (root / ".git").exists():
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
        commit = out.stdout.strip() or None if out.returncode == 0 else None
    if commit != pin.commit:
        log.warning("PaddleDetection at %s is commit %s, the zoo pins %s: results record the former",
                    root, commit or "unknown", pin.commit)
    return SourceTree(root, commit, "checkout")


def prepare(pin: Source, lock: LockFile | None, *, root: Path | None = None, locked: bool = False,
            **fetch_kw) -> SourceTree:
    """Fetch the pinned archive (verified, commit-checked) and extract it once into the cache."""
    artifact = pin.archive_artifact()
    got = fetch_artifact(artifact, lock, locked=locked, root=root,
                         check=_commit_check(artifact.url, pin.commit), **fetch_kw)
    dest = extract(got.path, (root or cache_root()) / "src" / "PaddleDetection" / pin.commit)
    tops = [p for p in dest.iterdir() if p.is_dir()]
    tree = tops[0] if len(tops) == 1 else dest
    if not _looks_like_ppdet(tree):
        raise ArchiveError(f"{artifact.url}: the archive holds no PaddleDetection tree (ppdet/, configs/)",
                           hint="point the source's archive at a PaddleDetection archive")
    return SourceTree(tree, pin.commit, "archive", got.sha256)
