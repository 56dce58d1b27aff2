"""zoo.yaml: the declarative description of the zoo, loaded into typed, validated objects.

Why pydantic: it reports every bad field with its location, which we turn into one line a person can act
on (`models[1].metrics.box_ap: expected a number`), and it refuses unknown keys, so a typo in a metric
name fails loudly instead of silently dropping a check. YAML is read with the safe loader only: a
`!!python/object` tag is an error, never an object.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.core.errors import ManifestError, UsageError
from harness.zoo.kinds import COCO_STATS, KINDS, of_metric
from harness.zoo.layouts import LAYOUTS

ZOO_ENV = "HARNESS_ZOO"
STACK_ENV = "HARNESS_STACK"

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Commit = Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")]
Points = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Tol = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Artifact(_Strict):
    """One downloadable file. `sha256`/`size` pin it; unpinned files are pinned in zoo.lock on first use."""

    url: str
    sha256: Sha256 | None = None
    size: Annotated[int, Field(gt=0)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, url: str) -> str:
        if "://" in url and not url.startswith(("http://", "https://", "file://")):
            raise ValueError("expected an http://, https:// or file:// URL, or a local path")
        return url


def _relative_path(path: str) -> str:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or not path:
        raise ValueError("expected a relative path inside the tree (no leading '/', no '..')")
    return path


class Source(_Strict):
    """A PaddleDetection source pin, by content: the worker imports only a tree whose git tree id is `tree`.

    `commit` names where the content comes from (the archive URL); `tree` proves it. A tar's pax comment
    that claims a commit is only a comment any tar writer can set; git's tree id of the extracted files
    (blobs and modes, as git hashes them) is the same on every machine for the same content only.
    """

    repository: str
    commit: Commit
    tree: Commit = Field(description="git tree id of the commit: `git rev-parse <commit>^{tree}`")
    paddle: str = Field(description="paddlepaddle version this pin is known to work with")
    archive: Artifact | None = None

    def archive_artifact(self) -> Artifact:
        """GitHub's archive of the commit unless the zoo names another (a mirror, a local file)."""
        return self.archive or Artifact(url=f"{self.repository.rstrip('/')}/archive/{self.commit}.tar.gz")


class Dataset(_Strict):
    """A dataset models are evaluated on: where its archives are, its layout on disk, what it must hold.

    `classes` (a count or the list in order) is what a model's config must agree with; `homepage` is where a
    person gets it when no archive can be named (a licence to accept, a form); `files` names further files
    the layout needs inside the root, by role (a VOC label list, a keypoint model's person boxes)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=100)]
    layout: str = "coco"
    images: Artifact | None = None  # None: no archive is known; `homepage` says where to get it (`--data`)
    annotations: Artifact | None = None  # None: the annotation file is in the images archive (or the root)
    image_dir: str = "val2017"
    annotation_file: str = "annotations/instances_val2017.json"
    classes: Annotated[int, Field(ge=1)] | list[str] | None = None
    homepage: str | None = None
    files: dict[str, str] = {}

    @field_validator("image_dir", "annotation_file")
    @classmethod
    def _inside(cls, path: str) -> str:
        return _relative_path(path)

    @field_validator("files")
    @classmethod
    def _files_inside(cls, files: dict[str, str]) -> dict[str, str]:
        for path in files.values():
            _relative_path(path)
        return files

    @field_validator("layout")
    @classmethod
    def _known_layout(cls, layout: str) -> str:
        if layout not in LAYOUTS:
            raise ValueError(f"{layout!r} is not a dataset layout: expected one of {', '.join(LAYOUTS)}")
        return layout

    @model_validator(mode="after")
    def _complete(self) -> Dataset:
        row = LAYOUTS[self.layout]
        if self.images is None and not self.homepage:
            raise ValueError("a dataset needs `images:` (its archive) or `homepage:` (where a person gets it)")
        if missing := [role for role in row.files if role not in self.files]:
            raise ValueError(f"a {self.layout} dataset needs files: {', '.join(missing)}")
        return self

    @property
    def num_classes(self) -> int | None:
        return len(self.classes) if isinstance(self.classes, list) else self.classes


# A metric is `<kind>_<stat>` in AP points (box_ap, mask_ap, box_ap50, ...): a kind of kinds.KINDS and one of its
# statistics. scoring.py computes every one of them; a model is judged on those it documents.
STATS = COCO_STATS


def _metric(name: str) -> str:
    if of_metric(name) is None:
        kinds = ", ".join(KINDS)
        raise ValueError(
            f"{name!r} is not a metric: expected <kind>_<stat>, a kind of {kinds} (box_ap, mask_ap50, ...)"
        )
    return name


def _tolerance_key(name: str) -> str:
    return name if name == "default" else _metric(name)


Metric = Annotated[str, AfterValidator(_metric)]
ToleranceKey = Annotated[str, AfterValidator(_tolerance_key)]


class Table(_Strict):
    """A README table the models come from: its columns as written, and what the harness knows of them.

    The report renders a model in its table's own layout: label columns from the model's labels, metric
    columns from its expectations (documented) and the measurement, speed columns the README leaves empty
    with the harness's measured fps (the seed's "Inf time (fps)").
    """

    readme: str | None = None  # path inside the PaddleDetection tree
    heading: str | None = None
    columns: list[str] = Field(min_length=1)
    metrics: dict[str, Metric] = {}  # column -> metric
    weights: str | None = None  # the download column
    config: str | None = None  # the config column
    fps: list[str] = []  # documented speed columns


# The version 1 layout (the seed zoo.yaml before `harness import`): the res2net table's columns and fields.
V1_TABLE = {
    "columns": [
        "Backbone",
        "Type",
        "Image/gpu",
        "Lr schd",
        "Inf time (fps)",
        "Box AP",
        "Mask AP",
        "Download",
        "Configs",
    ],
    "metrics": {"Box AP": "box_ap", "Mask AP": "mask_ap"},
    "weights": "Download",
    "config": "Configs",
    "fps": ["Inf time (fps)"],
}
V1_LABELS = {"backbone": "Backbone", "type": "Type", "images_per_gpu": "Image/gpu", "schedule": "Lr schd"}


class Model(_Strict):
    """One model: its config in PaddleDetection, its weights, what its README documents, how it is shown."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=200)]
    config: str
    weights: Artifact
    expected: dict[Metric, Points] = Field(min_length=1)  # documented COCO val2017 values, judged
    labels: dict[str, str | int | float] = {}  # the README's other cells, as written (test-dev numbers too)
    table: str | None = None  # key of the zoo's `tables`
    input_size: Annotated[int, Field(ge=32, le=4096)] | None = None  # the README documents this size
    row: str | None = None  # the README row as written
    tolerance: dict[ToleranceKey, Tol] = {}
    dataset: str | None = None  # a name of the zoo's `datasets`; None: the zoo's `dataset`
    # A compressed model's PaddleSlim config (quantisation, pruning), in the tree like `config`: the model is
    # built from `config`, then transformed by it, as `tools/eval.py --slim_config` does, before its weights load
    slim: str | None = None
    # the config's `architecture:` through its _BASE_ chain (FasterRCNN, PPYOLOE, DETR): the model's family on the
    # pages and in the reports, known without paddle (the importer writes it)
    architecture: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_v1(cls, data: Any) -> Any:
        """Version 1 fields (type, backbone, images_per_gpu, schedule, metrics) as labels and expectations."""
        if not isinstance(data, dict) or not ({"metrics", *V1_LABELS} & set(data)):
            return data
        data = dict(data)
        labels = {V1_LABELS[k]: data.pop(k) for k in list(data) if k in V1_LABELS}
        metrics = data.pop("metrics", None)
        if isinstance(metrics, dict):
            data["expected"] = {k: v for k, v in metrics.items() if v is not None}
        elif metrics is not None:
            data["expected"] = metrics  # let validation name the wrong type
        data["labels"] = {**labels, **(data.get("labels") or {})}
        data.setdefault("table", "zoo")
        return data

    @field_validator("config", "slim")
    @classmethod
    def _inside(cls, path: str | None) -> str | None:
        return None if path is None else _relative_path(path)

    @field_validator("name")
    @classmethod
    def _one_component(cls, name: str) -> str:
        if name in (".", ".."):  # the name is a directory of every run: `..` would be the run's parent
            raise ValueError(f"{name!r} is not a model name (it names a directory, not a model)")
        return name

    def documented(self) -> dict[str, float]:
        """The metrics this model is judged on, by name."""
        return dict(self.expected)


class Zoo(_Strict):
    version: Literal[1, 2]
    notice: str | None = None  # printed by verify and in reports (the rehearsal zoo says its weights are random)
    sources: dict[str, Source] = Field(min_length=1)
    dataset: Dataset  # the default: models that name none are evaluated on it
    datasets: dict[str, Dataset] = {}  # further datasets by name
    tolerance: dict[ToleranceKey, Tol]
    tables: dict[str, Table] = {}
    models: list[Model] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _v1_table(cls, data: Any) -> Any:
        """A version 1 zoo's models are shown in the seed table's layout."""
        if isinstance(data, dict) and data.get("version") == 1 and "tables" not in data:
            data = {**data, "tables": {"zoo": V1_TABLE}}
        if isinstance(data, dict) and isinstance(data.get("datasets"), dict):  # a dataset's name is its key
            named = {k: {"name": k, **v} if isinstance(v, dict) else v for k, v in data["datasets"].items()}
            data = {**data, "datasets": named}
        return data

    @model_validator(mode="after")
    def _unique_and_complete(self) -> Zoo:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate model names: {', '.join(dupes)}")
        if "default" not in self.tolerance:
            raise ValueError("tolerance.default is required (per-metric values may override it)")
        unknown = sorted({m.table for m in self.models if m.table and m.table not in self.tables})
        if unknown:
            raise ValueError(f"models name tables that `tables` does not define: {', '.join(unknown)}")
        if renamed := sorted(k for k, d in self.datasets.items() if d.name != k):
            raise ValueError(f"datasets whose name differs from their key: {', '.join(renamed)}")
        if self.dataset.name in self.datasets and self.datasets[self.dataset.name] != self.dataset:
            raise ValueError(f"datasets.{self.dataset.name} differs from `dataset`, which has the same name")
        known = {self.dataset.name, *self.datasets}
        if unknown := sorted({m.dataset for m in self.models if m.dataset and m.dataset not in known}):
            raise ValueError(
                f"models name datasets that `datasets` does not define: {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        return self

    def model(self, name: str) -> Model:
        """The model called `name`; an unknown name gets the closest names in the error."""
        for m in self.models:
            if m.name == name:
                return m
        names = [m.name for m in self.models]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.3)
        close += [n for n in names if name and name in n and n not in close]
        hint = f"did you mean: {', '.join(close)}?" if close else f"known models: {', '.join(names)}"
        raise UsageError(f"unknown model {name!r}", hint=f"{hint} (`harness list` shows the zoo)")

    def select(self, names: list[str] | None) -> list[Model]:
        return [self.model(n) for n in names] if names else list(self.models)

    def source(self, stack: str | None = None) -> tuple[str, Source]:
        """The source pin of `stack` (default: $HARNESS_STACK, else the first listed)."""
        stack = stack or os.environ.get(STACK_ENV) or next(iter(self.sources))
        if stack not in self.sources:
            raise UsageError(f"unknown stack {stack!r}", hint=f"use one of: {', '.join(self.sources)}")
        return stack, self.sources[stack]

    def tolerance_for(self, model: Model, metric: str) -> float:
        """Most specific wins: model's metric, model's default, zoo's metric, zoo's default."""
        for tol in (model.tolerance, self.tolerance):
            for key in (metric, "default"):
                if key in tol:
                    return tol[key]
        raise AssertionError("unreachable: tolerance.default is required")

    def table_of(self, model: Model) -> Table | None:
        return self.tables.get(model.table) if model.table else None

    def dataset_of(self, model: Model) -> Dataset:
        """The dataset `model` is evaluated on (the zoo's default unless it names another)."""
        return self.named_dataset(model.dataset) if model.dataset else self.dataset

    def named_dataset(self, name: str) -> Dataset:
        if name == self.dataset.name:
            return self.dataset
        if name in self.datasets:
            return self.datasets[name]
        known = ", ".join(sorted({self.dataset.name, *self.datasets}))
        raise UsageError(f"unknown dataset {name!r}", hint=f"the zoo's datasets: {known}")

    def datasets_of(self, models: list[Model]) -> list[Dataset]:
        """The datasets `models` are evaluated on, each once, in first-use order."""
        out: dict[str, Dataset] = {}
        for m in models:
            ds = self.dataset_of(m)
            out.setdefault(ds.name, ds)
        return list(out.values())


# ---- loading -------------------------------------------------------------------------------------


def default_zoo_path() -> Path:
    """$HARNESS_ZOO, else ./zoo.yaml, else the zoo.yaml shipped in the wheel or the checkout."""
    if env := os.environ.get(ZOO_ENV):
        return Path(env)
    package = Path(__file__).resolve().parents[1]  # harness/: the wheel ships zoo.yaml there, a checkout beside it
    for candidate in (Path("zoo.yaml"), package / "zoo.yaml", package.parent / "zoo.yaml"):
        if candidate.is_file():
            return candidate
    raise UsageError("no zoo.yaml found", hint="pass --zoo PATH or set HARNESS_ZOO")


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int) or not str(part).isidentifier():  # list indices, URLs as mapping keys
            out += f"[{part!r}]" if isinstance(part, str) else f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


_MESSAGES = {
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "string_type": "expected a string",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "list_type": "expected a list",
    "missing": "required field is missing",
    "extra_forbidden": "unknown field (check the spelling)",
}


def _message(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind == "string_pattern_mismatch":
        return f"{err['input']!r} does not match {err['ctx']['pattern']}"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    return msg.replace("Input should be", "expected", 1)


def _model_name(loc: tuple[int | str, ...], data: Any) -> str:
    """` (model NAME)` for `models[i]...` paths: an index alone is hard to find in a long file."""
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        try:
            return f" (model {data['models'][loc[1]]['name']})"
        except (KeyError, IndexError, TypeError):
            pass
    return ""


M = TypeVar("M", bound=BaseModel)


def validated(cls: type[M], data: Any, origin: str, hint: str | None = None) -> M:
    """`data` as a `cls`, or one ManifestError with a line per problem, each naming its field path."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            key = bool(loc) and loc[-1] == "[key]"  # a mapping's key is wrong, not its value
            loc = loc[:-1] if key else loc
            lines.append(f"{_loc(loc)}: {'key ' if key else ''}{_message(err)}{_model_name(loc, data)}")
        raise ManifestError(f"{origin}: " + "\n".join(lines), hint=hint or f"edit {origin}") from None
    except RecursionError:
        raise ManifestError(f"{origin}: nested too deeply", hint=hint or f"edit {origin}") from None


def parse_zoo(data: Any, origin: str = "zoo.yaml") -> Zoo:
    return validated(Zoo, data, origin)


def load_zoo(path: str | Path | None = None) -> tuple[Zoo, Path]:
    """Read and validate a zoo file; every problem is a `ManifestError` (exit code 2)."""
    path = Path(path) if path else default_zoo_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}", hint="pass --zoo PATH") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}", hint=f"edit {path}") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ManifestError(f"{path}: not valid YAML: nested too deeply", hint=f"edit {path}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a mapping at the top level", hint=f"edit {path}")
    return parse_zoo(data, origin=str(path)), path.resolve()
