"""zoo.lock: sha256 and size of every URL, recorded on its first verified download.

Why: the real hashes cannot be known in advance here (no network), and a hash nobody wrote down protects
nothing. Trust on first use, written to a file that is committed next to zoo.yaml, turns the first good
download into the pin for every later one; `--locked` then refuses anything without a record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field

from harness.core.errors import ManifestError
from harness.core.files import atomic_write_json
from harness.zoo.manifest import Artifact, Sha256, validated

FORMAT = 1


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sha256: Sha256
    size: Annotated[int, Field(strict=True, gt=0)]


class _Lock(BaseModel):
    """zoo.lock is validated like zoo.yaml: a bad record is an error naming its field, never a reason to
    evict a good cache entry or a traceback."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal[1]
    artifacts: dict[str, _Record]


@dataclass(frozen=True)
class Pin:
    sha256: str | None
    size: int | None


class LockFile:
    """Read-modify-write of zoo.lock under a file lock, so parallel fetches never lose a record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mutex = FileLock(path.with_name(f".{path.name}.lock"))

    @classmethod
    def beside(cls, zoo_path: Path) -> LockFile:
        return cls(zoo_path.with_suffix(".lock"))

    def _records(self) -> dict[str, dict]:
        hint = f"restore it from version control, or delete {self.path} to re-record"
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ManifestError(f"{self.path}: cannot read: {exc.strerror}", hint=hint) from None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ManifestError(
                f"{self.path}: not a zoo.lock of format {FORMAT}: {exc or 'nested too deeply'}", hint=hint
            ) from None
        lock = validated(_Lock, data, str(self.path), hint)
        return {url: rec.model_dump() for url, rec in lock.artifacts.items()}

    def get(self, url: str) -> Pin | None:
        rec = self._records().get(url)
        return Pin(rec.get("sha256"), rec.get("size")) if rec else None

    def record(self, url: str, sha256: str, size: int) -> None:
        with self._mutex:
            records = self._records()
            if records.get(url) == {"sha256": sha256, "size": size}:
                return
            records[url] = {"sha256": sha256, "size": size}
            atomic_write_json(self.path, {"format": FORMAT, "artifacts": records})

    def forget(self, url: str) -> bool:
        """Drop the record of `url` (it was learned from bytes that later proved unusable)."""
        with self._mutex:
            records = self._records()
            if records.pop(url, None) is None:
                return False
            atomic_write_json(self.path, {"format": FORMAT, "artifacts": records})
            return True

    def pin(self, artifact: Artifact) -> Pin:
        """Expected sha256/size: zoo.yaml's own pin wins, else zoo.lock's, else unknown (`--locked` refuses
        an unknown sha256: harness.fetch.fetchplan's rule).

        Both present and different is an error: one of the two files is wrong and a person must decide.
        """
        recorded = self.get(artifact.url)
        if artifact.sha256 and recorded and recorded.sha256 and recorded.sha256 != artifact.sha256:
            raise ManifestError(
                f"{artifact.url}: zoo.yaml pins sha256 {artifact.sha256} but {self.path.name} records "
                f"{recorded.sha256}",
                hint=f"correct the wrong one, or delete the entry from {self.path}",
            )
        sha = artifact.sha256 or (recorded.sha256 if recorded else None)
        size = artifact.size or (recorded.size if recorded else None)
        return Pin(sha, size)
