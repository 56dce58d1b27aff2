"""The PaddleDetection source tree the worker imports: the archive of the pinned commit, or a checkout.

Why source and not PyPI's paddledet: 2.6.0 cannot evaluate these models on any PyPI paddle
(docs/stacks.md). The pin is by content, as Nix pins unpacked sources rather than a tarball's bytes: after
extraction the harness computes the git tree id of the files (git's blob and tree hashing, modes
included) and refuses any tree but zoo.yaml's `tree:` before a single module is imported. The tar's pax
comment (`git get-tar-commit-id`) proves nothing: any tar writer can set it. GitHub does not keep its
archives' bytes stable either, so the archive is not pinned in zoo.lock: its content is the pin.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.core.errors import ArchiveError, UsageError
from harness.fetch.archive import unpack
from harness.fetch.artifacts import fetch
from harness.fetch.cache import cache_root
from harness.zoo.manifest import Model, Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceTree:
    root: Path  # the directory that holds ppdet/ and configs/
    commit: str | None  # None: a checkout whose commit could not be read
    origin: str  # "archive" or "checkout"
    archive_sha256: str | None = None
    tree: str | None = None  # git tree id of the files; for an archive, verified equal to the pin
    dirty: bool | None = None  # a git checkout with uncommitted changes, or untracked importable files
    untracked: tuple[str, ...] = ()  # the first untracked importable files of a checkout (they count as dirty)

    def config(self, model: Model) -> Path:
        """The model's real config file in this tree, its `_BASE_` chain checked to stay inside the tree."""
        path = self.root / model.config
        if not path.is_file():
            raise UsageError(
                f"{model.name}: config {model.config} not found in {self.root}",
                hint="check `config:` in zoo.yaml, or the PaddleDetection commit",
            )
        base_chain(path, self.root)
        return path

    def slim_config(self, model: Model) -> Path | None:
        """The model's PaddleSlim config in this tree (None: not a compressed model), checked as `config` is:
        a missing one is the same error, so a compressed model is never evaluated as its uncompressed self."""
        if model.slim is None:
            return None
        path = self.root / model.slim
        if not path.is_file():
            raise UsageError(
                f"{model.name}: slim config {model.slim} not found in {self.root}",
                hint="check `slim:` in zoo.yaml, or the PaddleDetection commit",
            )
        base_chain(path, self.root)  # DistillPrune's slim config has a _BASE_ (its teacher's config)
        return path

    def as_json(self) -> dict:
        return {
            "root": str(self.root),
            "commit": self.commit,
            "origin": self.origin,
            "archive_sha256": self.archive_sha256,
            "tree": self.tree,
            "dirty": self.dirty,
            "untracked": list(self.untracked),
        }


def _blob_id(path: Path, size: int) -> bytes:
    h = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest().encode()


def blob_id(path: Path) -> str:
    """git's blob id of a file's bytes (what `git hash-object FILE` prints): the impact map's file versions."""
    return _blob_id(path, path.stat().st_size).decode()


def tree_id(root: Path, skip: frozenset[str] = frozenset()) -> str | None:
    """git's tree id of the files under `root` (what `git add -A && git write-tree` would print): blobs
    hashed as git hashes them, modes 100644/100755/120000, entries sorted by dulwich as git sorts them.
    None for a directory without files (git has no empty trees). Names in `skip` are left out."""
    from dulwich.objects import ObjectID, Tree

    tree = Tree()
    with os.scandir(root) as entries:
        for e in entries:
            if e.name in skip:
                continue
            name, st = os.fsencode(e.name), e.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                target = os.fsencode(os.readlink(e.path))
                tree.add(
                    name,
                    0o120000,
                    ObjectID(
                        hashlib.sha1(b"blob %d\0" % len(target) + target, usedforsecurity=False).hexdigest().encode()
                    ),
                )
            elif stat.S_ISDIR(st.st_mode):
                if sub := tree_id(Path(e.path), skip):
                    tree.add(name, 0o040000, ObjectID(sub.encode()))
            elif stat.S_ISREG(st.st_mode):
                tree.add(
                    name,
                    0o100755 if st.st_mode & stat.S_IXUSR else 0o100644,
                    ObjectID(_blob_id(Path(e.path), st.st_size)),
                )
            else:
                raise ArchiveError(f"{e.path}: neither a file, a directory nor a symlink: git cannot hash it")
    return tree.id.decode() if tree.items() else None


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
                    "(--ppdet-root) or the archive it came from",
                )
            if not target.is_file():
                raise UsageError(
                    f"{path}: _BASE_ {base!r} not found ({target})",
                    hint="the PaddleDetection tree is incomplete; fetch the pinned source again",
                )
            todo.append(target)
    return seen


def _looks_like_ppdet(root: Path) -> bool:
    return (root / "ppdet" / "__init__.py").is_file() and (root / "configs").is_dir()


def top(extracted: Path) -> Path:
    """The tree inside an extracted archive: GitHub's archives hold one directory, `<repo>-<commit>/`."""
    entries = list(extracted.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else extracted


def _tree_check(url: str, pin: Source):
    def check(extracted: Path) -> None:
        inner = top(extracted)
        try:
            found = tree_id(inner)
        except RecursionError:
            found = "unhashable (nested too deeply)"
        if found != pin.tree:
            raise ArchiveError(
                f"{url}: its files have git tree {found}, zoo.yaml pins tree {pin.tree} (commit {pin.commit}); "
                "nothing was extracted or imported",
                hint="the archive is not the pinned source (a tar's commit comment proves nothing): fetch it from "
                "its origin, or correct `tree:` in zoo.yaml with `git rev-parse <commit>^{tree}`",
            )
        if not _looks_like_ppdet(inner):
            raise ArchiveError(
                f"{url}: the archive holds no PaddleDetection tree (ppdet/, configs/)",
                hint="point the source's archive at a PaddleDetection archive",
            )

    return check


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


SHOW_UNTRACKED = 20
_IMPORTABLE = (".py", ".pyc", ".pyo", ".so", ".pyd", ".pth")


def _untracked_importable(root: Path) -> tuple[str, ...]:
    """Files git does not track that an import could pick up: untracked (ignored ones too: a `.gitignore` does
    not stop `import paddle` finding `paddle.py`) modules, extensions and `.pth` files, bytecode outside
    `__pycache__` (the worker keeps its bytecode elsewhere, so a `__pycache__` is never read)."""
    out = _git(root, "status", "--porcelain", "-z", "--untracked-files=all", "--ignored=matching")
    if out is None:
        return ("(git status failed: the checkout's files cannot be accounted for)",)
    found = []
    for entry in out.split("\0"):
        code, path = entry[:2], entry[3:]
        if code not in ("??", "!!") or "__pycache__/" in f"/{path}":
            continue
        package = path.endswith("/") and (root / path / "__init__.py").is_file()  # an ignored directory, whole
        if path.endswith(_IMPORTABLE) or package:
            found.append(path)
    return tuple(sorted(found))


def checkout(root: Path, pin: Source) -> SourceTree:
    """A local PaddleDetection tree (`--ppdet-root`): used in place; its own commit and tree id are recorded,
    with a warning when they differ from the pin (git's for a git checkout, else computed from the files)."""
    root = root.expanduser().resolve()
    if not _looks_like_ppdet(root):
        raise UsageError(
            f"--ppdet-root {root}: not a PaddleDetection tree (no ppdet/__init__.py or configs/)",
            hint="pass the directory that holds ppdet/ and configs/",
        )
    commit = tree = dirty = None
    untracked: tuple[str, ...] = ()
    if (root / ".git").exists():
        commit = _git(root, "rev-parse", "HEAD") or None
        tree = _git(root, "rev-parse", "HEAD^{tree}") or None
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
        untracked = _untracked_importable(root)
        dirty = None if status is None else bool(status) or bool(untracked)
        if untracked:
            log.warning(
                "%s has untracked files Python can import (the worker puts the checkout first on sys.path): %s",
                root,
                ", ".join(untracked[:SHOW_UNTRACKED]),
            )
    else:
        log.info("hashing the files of %s (git tree id; not a git checkout)", root)
        tree = tree_id(root, skip=frozenset({".git", "__pycache__"}))
    if tree != pin.tree or dirty:
        log.warning(
            "PaddleDetection at %s is commit %s (tree %s%s), the zoo pins %s (tree %s): results record the former",
            root,
            commit or "unknown",
            tree,
            ", with uncommitted changes" if dirty else "",
            pin.commit,
            pin.tree,
        )
    return SourceTree(root, commit, "checkout", tree=tree, dirty=dirty, untracked=untracked[:SHOW_UNTRACKED])


def prepare(pin: Source, *, root: Path | None = None, **fetch_kw) -> SourceTree:
    """Fetch the pinned source's archive and extract it once into `src/PaddleDetection/<tree id>`, refusing it
    unless its files have the pinned git tree id. An extraction is reused only for the same archive bytes and
    while every file is as extracted (archive.intact)."""
    artifact = pin.archive_artifact()
    got = fetch(artifact.url, sha256=artifact.sha256, size=artifact.size, root=root, **fetch_kw)
    dest = (root or cache_root()) / "src" / "PaddleDetection" / pin.tree
    unpack(
        artifact,
        got.path,
        dest,
        None,
        "harness fetch",
        root=root,
        check=_tree_check(artifact.url, pin),
        tag={"archive_sha256": got.sha256, "tree": pin.tree},
        verify=bool(fetch_kw.get("verify")),
    )
    return SourceTree(top(dest), pin.commit, "archive", got.sha256, tree=pin.tree)
