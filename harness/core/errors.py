"""Exit codes and the error types that carry them.

Every error the harness raises on purpose is a `HarnessError`: it names the thing that is wrong and,
where there is one, the fix. The CLI prints `str(error)` and exits with `error.exit_code`, so the
exit code of a command is decided here, in one place, not scattered through the CLI.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # ok, or every verdict passed
    FAIL = 1  # a verdict failed: measured outside tolerance
    USAGE = 2  # bad command line, bad zoo.yaml, a policy refusal (--locked)
    ERROR = 3  # could not measure: download, integrity, archive, dataset, model errors
    UNAVAILABLE = 4  # an input is neither on this machine nor reachable (`harness rehearse` offline, no fixture)
    INTERRUPTED = 130  # SIGINT, as shells report it
    TERMINATED = 143  # SIGTERM (a CI cancelling the job), as shells report it


class HarnessError(Exception):
    """An expected failure with a message for people and an exit code for machines."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class UsageError(HarnessError):
    """The user asked for something that cannot be: fixable by changing the command or the files."""

    exit_code = ExitCode.USAGE


class ManifestError(UsageError):
    """zoo.yaml (or zoo.lock) is malformed; the message names the field path."""


class LockedError(UsageError):
    """`--locked` refused an artifact that has no recorded sha256."""


class ArtifactError(HarnessError):
    """An artifact could not be fetched (network, HTTP status, missing local file)."""


class IntegrityError(ArtifactError):
    """Fetched bytes are not the expected bytes (sha256 or size). Nothing was cached."""


class ArchiveError(ArtifactError):
    """An archive is unsafe to extract or is not the pinned commit."""


class LocalFault(HarnessError):
    """This machine failed (disk full, out of memory, a file gone), not the artifact: the bytes may be fine, so
    nothing is evicted from the cache and no pin is forgotten; running again after fixing the machine works."""


class DatasetError(HarnessError):
    """The dataset is missing, incomplete or laid out differently from what the zoo says."""


class DatasetRecordError(DatasetError):
    """A record of the annotation file is malformed or hostile (no integer id, a file name that leaves the image
    directory): the file must be corrected, so it is the input's error (exit 2), named by its record."""

    exit_code = ExitCode.USAGE


class DatasetUnavailable(DatasetError):
    """A dataset the zoo names no archive for (a licence, a form) and no `--data` root was given: it is neither on
    this machine nor fetchable (exit 4), and the message says where a person gets it."""

    exit_code = ExitCode.UNAVAILABLE


class StageError(HarnessError):
    """A model's pipeline stage failed: recorded in its result with the worker log's tail, never raised out."""

    def __init__(
        self, message: str, *, hint: str | None = None, log_tail: str | None = None, details: dict | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.log_tail = log_tail
        self.details = details
