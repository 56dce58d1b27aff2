"""PaddleDetection's model-zoo tables (configs/**/README*.md) read into zoo entries, and what was skipped.

Why read the README tables: they are the zoo maintainers already keep (OpenMMLab writes metafiles by hand,
detectron2 a MODEL_ZOO.md), and they are what users quote. The markdown is parsed with markdown-it-py (GFM
tables, inline links, HTML and math markup in cells), never with regexes over lines. What a column means is
data (readme.yaml: English and Chinese headers); which dataset a row was measured on comes from the model
itself: its config's EvalDataset must read COCO val2017's instances file (timm's `resolve_data_config`
idea: each model's facts come from the model), with headings naming another dataset as a second signal.

A row becomes an entry when it has a .pdparams link, a config present at the pin that evaluates on COCO
val2017, and a documented COCO val2017 AP; every other row is counted with the reason it was skipped.
The markup side (tokens → tables, header cells → column roles) is readme_tables.py; this module decides
what each row becomes.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from harness.core.errors import UsageError
from harness.core.files import is_component
from harness.zoo.kinds import KINDS
from harness.zoo.readme_tables import Cell, Column, Table, columns, normalise, number, size, tables, vocabulary

_GITHUB = re.compile(r"^https?://github\.com/PaddlePaddle/PaddleDetection/(?:tree|blob)/[^/]+/(configs/.+)$")


@dataclass
class Entry:
    """One importable model: what a zoo file's `models:` item holds."""

    name: str
    config: str
    weights: str
    expected: dict[str, float]
    labels: dict[str, str]
    table: str
    row: str
    input_size: int | None = None
    readme: str = ""  # where the row is (not written to the zoo: `table` names it)

    def as_model(self) -> dict:
        out: dict[str, Any] = {
            "name": self.name,
            "table": self.table,
            "config": self.config,
            "weights": self.weights,
            "labels": self.labels,
            "expected": self.expected,
        }
        if self.input_size is not None:
            out["input_size"] = self.input_size
        out["row"] = self.row
        return out


@dataclass
class Imported:
    """The outcome of reading some READMEs: entries, the tables they came from, and every row's fate."""

    entries: list[Entry] = field(default_factory=list)
    tables: dict[str, dict] = field(default_factory=dict)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (readme, row, reason)
    readmes: list[str] = field(default_factory=list)
    rows: int = 0
    duplicates: int = 0
    conflicts: dict[str, None] = field(default_factory=dict)  # a model documented twice with different values


# ---- rows → entries -----------------------------------------------------------------------------------------


def _config_path(link: str, readme: str) -> str | None:
    """A config link as a path inside the tree: relative to the README, or a GitHub URL into configs/."""
    if m := _GITHUB.match(link):
        return str(PurePosixPath(m.group(1)))
    if "://" in link or not link.endswith((".yml", ".yaml")):
        return None
    parts: list[str] = []
    for part in (PurePosixPath(readme).parent / link).parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def _weights(row: tuple[Cell, ...], cols: list[Column]) -> str | None:
    """The .pdparams link of a row: in its weights column first, else in any cell."""
    ordered = sorted(range(len(row)), key=lambda j: cols[j].role != "weights" if j < len(cols) else True)
    for j in ordered:
        for link in row[j].links:
            if link.split("?")[0].endswith(".pdparams"):
                return link
    return None


class _Untagged(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # libyaml when built
    """Safe YAML that reads ppdet's tags (`!COCODataSet`) as the plain data under them (libyaml's parser where
    PyYAML has it: `harness import --all` reads ~2700 config files through their `_BASE_` chains)."""


def _untag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    assert isinstance(node, yaml.ScalarNode)  # the third and last kind of YAML node
    return loader.construct_scalar(node)


_Untagged.add_multi_constructor("!", _untag)


def eval_annotations(config: Path, root: Path, depth: int = 0) -> str | None:
    """The `EvalDataset.anno_path` a config ends up with through its `_BASE_` chain (the including file wins,
    later bases over earlier ones, as ppdet merges them)."""
    if depth > 32:
        return None
    try:
        st = config.stat()
    except OSError:
        return None
    facts = _config_facts(str(config), st.st_mtime_ns, st.st_size)
    if facts is None:
        return None
    bases, own = facts
    anno = None
    for base in bases:
        target = (config.parent / base).resolve()
        if target.is_relative_to(root.resolve()) and target.is_file():
            anno = eval_annotations(target, root, depth + 1) or anno
    return own or anno


@functools.lru_cache(maxsize=4096)
def _config_facts(path: str, mtime_ns: int, size: int) -> tuple[list[str], str | None] | None:
    """A config's `_BASE_` list and own `EvalDataset.anno_path`, parsed once per file version (the bases are
    shared by hundreds of configs); None when it is not a YAML mapping."""
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_Untagged) or {}  # a SafeLoader subclass
    except (OSError, yaml.YAMLError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    bases = data.get("_BASE_") or []
    ds = data.get("EvalDataset")
    own = str(ds["anno_path"]) if isinstance(ds, dict) and ds.get("anno_path") else None
    return [str(b) for b in ([bases] if isinstance(bases, str) else bases)], own


def _table_key(table: Table, taken: dict[str, dict]) -> str:
    """The table's name in the zoo: its folder under configs/, with the heading when the folder has several."""
    folder = str(PurePosixPath(table.readme).parent.relative_to("configs"))
    heading = table.headings[-1] if table.headings else None
    candidates = [folder, f"{folder}: {heading}", *(f"{folder}: {heading} ({n})" for n in range(2, 1000))]
    for key in candidates:
        if key not in taken or (taken[key]["readme"], taken[key]["heading"]) == (table.readme, heading):
            return key
    raise AssertionError("unreachable: a README with a thousand tables of one heading")


def _other_dataset(table: Table, row: tuple[Cell, ...], cols: list[Column]) -> str | None:
    pattern = vocabulary()["other_datasets"]
    for heading in table.headings:
        if m := re.search(pattern, heading.lower()):
            return m.group(0)
    for cell, col in zip(row, cols, strict=False):
        if normalise(col.title) in ("dataset", "数据集", "检测训练数据集") and (
            m := re.search(pattern, cell.text.lower())
        ):
            return m.group(0)
    return None


def read(root: Path, readmes: list[str]) -> Imported:
    """Read the tables of `readmes` (paths inside the PaddleDetection tree at `root`).

    Rows of a model's home README (the folder of its config) are taken first: they give the model its name,
    table and values; the same model in another README (a distillation table, a semi-supervised baseline)
    adds only metrics the home row lacks.
    """
    out = Imported()
    anno_file = vocabulary()["coco_val_annotations"]
    found: list[tuple[Entry, Table, list[Column]]] = []
    for readme in readmes:
        path = root / readme
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(
                f"{path}: cannot read: {exc}", hint="pass a README inside the PaddleDetection tree"
            ) from None
        out.readmes.append(readme)
        for table in tables(text, readme):
            cols = columns(table.header)
            for row, line in zip(table.rows, table.lines, strict=False):
                out.rows += 1
                verdict = _row(root, table, row, line, cols, anno_file)
                if isinstance(verdict, str):
                    out.skipped.append((readme, line, verdict))
                else:
                    found.append((verdict, table, cols))
    found.sort(key=lambda f: PurePosixPath(f[0].config).parent != PurePosixPath(f[1].readme).parent)
    seen: dict[tuple[str, str], list[Entry]] = {}  # (config, weights file name) -> entries, one per size
    for entry, table, cols in found:
        key = (entry.config, PurePosixPath(entry.weights.split("?")[0]).name)
        if (same := _same_model(entry, seen.get(key, []))) is not None:
            out.duplicates += 1
            out.conflicts.update(dict.fromkeys(_merge(same, entry)))
            continue
        entry.name = _unique(entry, out.entries)
        entry.table = _table_key(table, out.tables)
        out.tables.setdefault(entry.table, _table_record(table, cols))
        seen.setdefault(key, []).append(entry)
        out.entries.append(entry)
    return out


def _table_record(table: Table, cols: list[Column]) -> dict:
    """The zoo's `tables:` item (manifest.Table): the layout the report renders the table's models in."""
    first = {role: next((c.title for c in cols if c.role == role), None) for role in ("weights", "config")}
    return {
        "readme": table.readme,
        "heading": table.headings[-1] if table.headings else None,
        "columns": [c.title for c in cols],
        "metrics": {c.title: c.metric for c in cols if c.role == "metric"},
        **first,
        "fps": [c.title for c in cols if c.role == "fps"],
    }


def _same_model(entry: Entry, earlier: list[Entry]) -> Entry | None:
    """An entry already imported for the same config and weights file (one bucket is served under two host
    names) at the same size; a row without a size repeats whichever is there (README_cn, a "comprehensive
    metrics" table, a baseline row elsewhere)."""
    for other in earlier:
        if None in (entry.input_size, other.input_size) or entry.input_size == other.input_size:
            return other
    return None


def _merge(first: Entry, again: Entry) -> list[str]:
    """Metrics only the repeat documents are added (AP50, APs, ...); a value documented twice differently is
    reported, and the first stays."""
    conflicts = []
    for metric, value in again.expected.items():
        if metric not in first.expected:
            first.expected[metric] = value
        elif first.expected[metric] != value:
            conflicts.append(
                f"{first.name}: {metric} {first.expected[metric]} in {first.readme}, {value} in {again.readme}"
            )
    return conflicts


def _unique(entry: Entry, entries: list[Entry]) -> str:
    """The config stem; for a second checkpoint of one config its weights' stem; for one checkpoint documented
    at several input sizes, `<stem>_<size>`; a number as the last resort."""
    names = {e.name for e in entries}
    stem = PurePosixPath(entry.config).stem
    if stem not in names:
        return stem
    weights_stem = PurePosixPath(entry.weights.split("?")[0]).stem
    same_weights = any(e.weights == entry.weights for e in entries if e.config == entry.config)
    if not same_weights and weights_stem not in names and is_component(weights_stem):
        return weights_stem
    if entry.input_size is not None and (candidate := f"{stem}_{entry.input_size}") not in names:
        return candidate
    n = 2
    while f"{stem}_{n}" in names:
        n += 1
    return f"{stem}_{n}"


def _config_problem(root: Path, config: str, anno_file: str) -> str | None:
    """Why the row's config cannot evaluate the documented number here, or None."""
    if not (root / config).is_file():
        return "config missing at the pin"
    anno = eval_annotations(root / config, root)
    if anno is None:
        return "the config defines no EvalDataset"
    if not anno.endswith(anno_file):
        return f"not COCO val2017 (the config evaluates on {anno})"
    return None


def _row(root: Path, table: Table, row: tuple[Cell, ...], line: str, cols: list[Column], anno_file: str) -> Entry | str:
    """An entry, or the reason the row is skipped (a maintainer should accept it)."""
    weights = _weights(row, cols)
    if weights is None:
        return "no .pdparams link"
    order = sorted(range(len(row)), key=lambda j: (j >= len(cols) or cols[j].role != "config", j))
    config_links = [
        link
        for j in order
        for link in row[j].links
        if _config_path(link, table.readme) and (j >= len(cols) or cols[j].role != "weights")
    ]
    config = _config_path(config_links[0], table.readme) if config_links else None
    if config is None:
        return "no config link"
    if any(c.links for c, col in zip(row, cols, strict=False) if col.role == "slim"):
        return "a compressed model: its PaddleSlim config (prune, quantisation) is needed to evaluate it"
    if other := _other_dataset(table, row, cols):
        return f"not COCO val2017 (the table names {other})"
    expected: dict[str, float] = {}
    labels: dict[str, str] = {}
    input_size = None
    for cell, col in zip(row, cols, strict=False):
        if col.role == "metric" and col.metric:
            value = number(cell.text)
            if value is not None and 0 < value <= 100:
                expected.setdefault(col.metric, value)
        elif col.role == "size":
            input_size = size(cell.text)
            labels[col.title] = cell.text
        elif col.role in ("label", "fps") and cell.text and cell.text.strip("-— ") and not cell.links:
            labels[col.title] = cell.text
    if not any(k.headline in expected for k in KINDS.values()):
        metric_cols = [c.title for c in cols if c.role == "metric"]
        return "no documented COCO val2017 AP" if metric_cols else "no COCO val2017 AP column"
    if problem := _config_problem(root, config, anno_file):
        return problem
    return Entry(PurePosixPath(config).stem, config, weights, expected, labels, "", line, input_size, table.readme)


# ---- whole trees -----------------------------------------------------------------------------------------------


def find(root: Path, sources: list[str], every: bool) -> list[str]:
    """README paths inside the tree: `--all`, or each SOURCE as a README path or a folder of configs/."""
    if every:
        return sorted(str(p.relative_to(root)) for p in (root / "configs").rglob("README*.md"))
    found = []
    for src in sources:
        candidates = [src, f"configs/{src}/README.md", f"{src}/README.md"]
        hit = next((c for c in candidates if (root / c).is_file() and c.endswith(".md")), None)
        if hit is None:
            raise UsageError(
                f"{src}: no such README in {root}",
                hint="pass configs/<family>/README.md or a folder name such as ppyoloe",
            )
        found.append(str(PurePosixPath(hit)))
    return found


def coverage(result: Imported, commit: str | None) -> str:
    """The coverage report: READMEs, rows, models imported, rows skipped by reason."""
    reasons = Counter(re.sub(r" \(the (table names|config evaluates on) .*\)$", "", r) for _, _, r in result.skipped)
    detail = Counter(
        r.removeprefix("not COCO val2017 (").removesuffix(")")
        for _, _, r in result.skipped
        if r.startswith("not COCO val2017")
    )
    families = Counter(e.table.split(":")[0] for e in result.entries)
    lines = [
        "# PaddleDetection model-zoo tables: import coverage",
        "",
        f"`harness import --all` over `configs/**/README*.md` of PaddleDetection {commit or '(checkout)'}: a row "
        "is imported when it has a .pdparams link, a config present at the pin whose EvalDataset reads COCO "
        "val2017's instances file, and a documented COCO val2017 AP (box or mask). Every other row is counted "
        "below with its reason.",
        "",
        "| | count |",
        "|---|---|",
        f"| README files read | {len(result.readmes)} |",
        f"| table rows | {result.rows} |",
        f"| models imported (COCO val2017, weights, config, documented AP) | {len(result.entries)} |",
        f"| rows repeating an imported model (README_cn, a second table) | {result.duplicates} |",
        f"| rows skipped | {len(result.skipped)} |",
        "",
        *(
            [
                "## A model documented twice with different values (the first is kept)",
                "",
                *[f"- {c}" for c in result.conflicts],
                "",
            ]
            if result.conflicts
            else []
        ),
        "## Rows skipped, by reason",
        "",
        "| reason | rows |",
        "|---|---|",
        *[f"| {r} | {n} |" for r, n in reasons.most_common()],
        "",
        "Datasets named by skipped rows (heading, dataset column or the config's EvalDataset):",
        "",
        "| where | rows |",
        "|---|---|",
        *[f"| {r} | {n} |" for r, n in detail.most_common()],
        "",
        "## Models imported, by folder",
        "",
        "| folder | models |",
        "|---|---|",
        *[f"| {f} | {n} |" for f, n in sorted(families.items())],
        "",
    ]
    return "\n".join(lines)


def zoo_document(base: dict, result: Imported) -> dict:
    """A whole zoo file: `base`'s sources, dataset and tolerance with the imported tables and models."""
    used = {e.table for e in result.entries}
    return {
        "version": 2,
        **{k: base[k] for k in ("sources", "dataset", "tolerance") if k in base},
        "tables": {k: v for k, v in result.tables.items() if k in used},
        "models": [e.as_model() for e in result.entries],
    }
