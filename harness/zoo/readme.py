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

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from harness.core.errors import UsageError
from harness.core.files import is_component
from harness.zoo.configs import EvalFacts, eval_facts, merged
from harness.zoo.identify import Known, Task, identify, known
from harness.zoo.kinds import KINDS
from harness.zoo.readme_checks import Finding, cross_checked
from harness.zoo.readme_tables import Cell, Column, Table, columns, normalise, number, size, tables, vocabulary

# A GitHub link into the tree; the branch may hold slashes (`tree/release/2.3/configs/...`).
_GITHUB = re.compile(r"^https?://github\.com/PaddlePaddle/PaddleDetection/(?:tree|blob)/.+?/(configs/.+)$")


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
    line_no: int = 0  # its line in the README
    dataset: Known | None = None  # None only in tests; the default dataset is `dataset.default`
    facts: EvalFacts | None = None
    slim: str | None = None  # a compressed model's PaddleSlim config (its row links it beside `config`)

    @property
    def where(self) -> str:
        return f"{self.readme}:{self.line_no}"

    @property
    def weights_file(self) -> str:
        return PurePosixPath(self.weights.split("?")[0]).name

    def as_model(self) -> dict:
        out: dict[str, Any] = {
            "name": self.name,
            "table": self.table,
            "config": self.config,
            **({"slim": self.slim} if self.slim else {}),
            "weights": self.weights,
            "labels": self.labels,
            "expected": self.expected,
        }
        if self.input_size is not None:
            out["input_size"] = self.input_size
        if self.dataset is not None and not self.dataset.default:
            out["dataset"] = self.dataset.name
        if self.facts is not None and self.facts.architecture:
            out["architecture"] = self.facts.architecture
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
    findings: list[Finding] = field(default_factory=list)
    dropped: int = 0  # rows the cross-checks turned into findings (not models, not skipped)
    slips: list[tuple[str, str]] = field(default_factory=list)  # those rows: (readme, row)
    resolved: list[Finding] = field(default_factory=list)  # config links found by file name, as a person would
    tasks: dict[str, tuple[str, str]] = field(default_factory=dict)  # skip reason -> (task key, label)
    # skip reasons of numbers scored only by a benchmark's server (a test split without public ground truth)
    server: set[str] = field(default_factory=set)


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
            numbers = table.numbers or (0,) * len(table.rows)
            for row, line, no in zip(table.rows, table.lines, numbers, strict=False):
                out.rows += 1
                verdict = _row(root, table, row, line, cols, out, no)
                if isinstance(verdict, str):
                    out.skipped.append((readme, line, verdict))
                else:
                    found.append((verdict, table, cols))
    found.sort(key=lambda f: PurePosixPath(f[0].config).parent != PurePosixPath(f[1].readme).parent)
    found, dropped = cross_checked(found, out.findings)
    out.dropped += len(dropped)
    out.slips.extend((e.readme, e.row) for e, _, _ in dropped)
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
    weights_stem = PurePosixPath(entry.weights.split("?")[0]).stem
    if entry.slim and weights_stem not in names and is_component(weights_stem):
        return weights_stem  # a compressed model: its config's name is the plain model's
    if stem not in names:
        return stem
    same_weights = any(e.weights == entry.weights for e in entries if e.config == entry.config)
    if not same_weights and weights_stem not in names and is_component(weights_stem):
        return weights_stem
    if entry.input_size is not None and (candidate := f"{stem}_{entry.input_size}") not in names:
        return candidate
    n = 2
    while f"{stem}_{n}" in names:
        n += 1
    return f"{stem}_{n}"


def _resolve(root: Path, config: str, readme: str, out: Imported, where: str) -> str | None:
    """The config a link names, as a person finds it: the path itself, else the one file of that name under the
    README's own folder (configs moved into a subfolder, the link kept). Several such files are a finding."""
    if (root / config).is_file():
        return config
    folder = root / PurePosixPath(readme).parent
    hits = sorted(str(p.relative_to(root)) for p in folder.rglob(PurePosixPath(config).name) if p.is_file())
    if len(hits) == 1:
        out.resolved.append(Finding(where, f"config link {config} (missing at the pin) taken as {hits[0]}"))
        return hits[0]
    if hits:
        out.findings.append(
            Finding(
                where,
                f"config link {config} is missing and {len(hits)} files of its name "
                f"are under {folder.relative_to(root)}: {', '.join(hits)}",
            )
        )
    return None


def _links(row: tuple[Cell, ...], cols: list[Column], readme: str) -> list[str]:
    """Config paths the row links, its config column first, never inside its weights column."""
    order = sorted(range(len(row)), key=lambda j: (j >= len(cols) or cols[j].role != "config", j))
    return [
        path
        for j in order
        for link in row[j].links
        if (path := _config_path(link, readme)) and (j >= len(cols) or cols[j].role != "weights")
    ]


def _documented(
    row: tuple[Cell, ...], cols: list[Column], task: Task
) -> tuple[dict[str, float], dict[str, str], int | None]:
    """The row's documented metrics (as the task's kind names them), its labels and its input size."""
    expected: dict[str, float] = {}
    labels: dict[str, str] = {}
    input_size = None
    for cell, col in zip(row, cols, strict=False):
        if col.role == "metric" and col.metric and (metric := task.metric_of(col.metric)):
            value = number(cell.text)
            if value is not None and 0 < value <= 100:
                expected.setdefault(metric, value)
        elif col.role == "size":
            input_size = size(cell.text)
            labels[col.title] = cell.text
        elif col.role in ("label", "fps", "metric") and cell.text and cell.text.strip("-— ") and not cell.links:
            labels[col.title] = cell.text
    return expected, labels, input_size


def _row(
    root: Path, table: Table, row: tuple[Cell, ...], line: str, cols: list[Column], out: Imported, no: int
) -> Entry | str:
    """An entry, or the reason the row is skipped (a maintainer should accept it)."""
    weights = _weights(row, cols)
    if weights is None:
        return "no .pdparams link"
    linked = _configs(root, table, row, cols, out, no)
    if isinstance(linked, str):
        return linked
    config, slim = linked
    facts = eval_facts(root / config, root)
    if facts is None or (facts.metric is None and facts.anno_path is None):
        return "the config defines no EvalDataset"
    found = identify(facts)
    if found.reason is not None or found.task is None or found.dataset is None:
        key = (found.task.task or found.task.metric) if found.task else "unknown"
        label = found.task.label if found.task else "a task the harness does not know"
        if found.server:
            out.server.add(found.reason or "not evaluated")
        return _task(out, found.reason or "not evaluated", key, label)
    if found.task.server_split and (split := _server_split(table, found.task.server_split)):
        server = (
            f"{found.task.label}: documented on a split without public ground truth (the table's heading: {split}; "
            "the benchmark's server scores it)"
        )
        out.server.add(server)
        return _task(out, server, found.task.task or found.task.metric, found.task.label)
    if found.dataset.default and (why := _not_coco(table, row, cols)):
        return why
    expected, labels, input_size = _documented(row, cols, found.task)
    kind = KINDS[found.task.kind or "box"]
    if not expected:  # AP, or only AP50 (Objects365's tables): any statistic of the kind is judged
        metric_cols = [c.title for c in cols if c.role == "metric"]
        return f"no documented {kind.label}" if metric_cols else f"no {kind.label} column"
    name, where = PurePosixPath(config).stem, (table.readme, no)
    return Entry(name, config, weights, expected, labels, "", line, input_size, *where, found.dataset, facts, slim)


def _configs(
    root: Path, table: Table, row: tuple[Cell, ...], cols: list[Column], out: Imported, no: int
) -> tuple[str, str | None] | str:
    """The row's config in the tree and its PaddleSlim config (None for a plain model), or why it has none."""
    links = _links(row, cols, table.readme)
    if not links:
        return "no config link"
    plain, slim = _compression(links)
    if not plain and slim is not None and (base := _slim_base(root, slim, table.readme, out, no)):
        plain = [base]
    if not plain:
        return _task(out, "a compressed model whose row links no model config beside its PaddleSlim config", *_SLIM)
    config = _resolve(root, plain[0], table.readme, out, f"{table.readme}:{no}")
    if config is None:
        return "config missing at the pin"
    if slim is None:
        return config, None
    found, why = _slim_checked(root, (config, slim), table.readme, out, no)
    if found is None:
        return why or "a compressed model whose PaddleSlim config is missing at the pin"
    return config, found


def _slim_base(root: Path, slim: str, readme: str, out: Imported, no: int) -> str | None:
    """For a row that links only its PaddleSlim config (PicoDet's sparse models): the config of the model it
    compresses (the slim config's `pretrain_weights`), when exactly one config of that name is in the tree."""
    slim_cfg = merged(root / slim, root) or {}
    stem = PurePosixPath(str(slim_cfg.get("pretrain_weights") or "").split("?")[0]).stem
    hits = sorted(str(p.relative_to(root)) for p in (root / "configs").rglob(f"{stem}.yml")) if stem else []
    if len(hits) != 1:
        return None
    out.resolved.append(
        Finding(
            f"{readme}:{no}",
            f"the row links only {slim}: its model config taken as {hits[0]}, "
            f"the config of its pretrain_weights {stem}.pdparams",
        )
    )
    return hits[0]


def _server_split(table: Table, pattern: str) -> str | None:
    """The heading above the table that names a split scored only by the benchmark's server, if any."""
    return next((h for h in table.headings if re.search(pattern, h.lower())), None)


def _not_coco(table: Table, row: tuple[Cell, ...], cols: list[Column]) -> str | None:
    """The README's second signals against a config that reads COCO val2017: a heading or dataset column naming
    another dataset, or notes above the table saying the data were mixed."""
    if other := _other_dataset(table, row, cols):
        return f"not COCO val2017 (the table names {other})"
    if m := re.search(vocabulary()["mixed_data_notes"], table.notes):
        return f"unpublished data: the README's notes above the table say the data were mixed ({m.group(0)})"
    return None


_SLIM = ("slim", "PaddleSlim-compressed models")


def _compression(links: list[str]) -> tuple[list[str], str | None]:
    """The row's model configs, and its PaddleSlim config (prune, quantisation) when it links one: in its slim
    column (slim README tables) or beside the model's own in the config cell (PicoDet's quantised rows)."""
    slim = [link for link in links if link.startswith("configs/slim/") and not _distilled(link)]
    return [link for link in links if link not in slim], (slim[0] if slim else None)


def _slim_checked(
    root: Path, links: tuple[str, str], readme: str, out: Imported, no: int
) -> tuple[str | None, str | None]:
    """The slim config as found in the tree, or why a compressed row cannot be a model: its slim config is
    missing, or a README slip: the slim config compresses another model's weights (its `pretrain_weights`, for
    quantisation and pruning) than the config the row links, and that model's config is in the tree (a finding)."""
    config, slim = links
    where = f"{readme}:{no}"
    found = _resolve(root, slim, readme, out, where)
    if found is None:
        return None, _task(out, "a compressed model whose PaddleSlim config is missing at the pin", *_SLIM)
    slim_cfg = merged(root / found, root) or {}
    base = str(slim_cfg.get("pretrain_weights") or "")
    base_stem = PurePosixPath(base.split("?")[0]).stem
    if slim_cfg.get("slim") not in ("QAT", "Pruner") or not base_stem or base_stem == PurePosixPath(config).stem:
        return found, None
    meant = sorted(str(p.relative_to(root)) for p in (root / "configs").rglob(f"{base_stem}.yml"))
    if not meant:
        return found, None
    out.findings.append(
        Finding(
            where,
            f"{found} compresses {base_stem}.pdparams (its pretrain_weights), the weights of {', '.join(meant)}, "
            f"but the row links {config}",
        )
    )
    return (
        None,
        "a README slip: the compressed model's config is not the one its PaddleSlim config compresses (a finding)",
    )


def _distilled(link: str) -> bool:
    """A distillation config (configs/slim/distill/): it trains the student, whose own config evaluates it."""
    return link.startswith("configs/slim/distill/")


def _task(out: Imported, reason: str, key: str, label: str) -> str:
    """The reason, recorded with its task (a key of tasks.yaml where one is measured there, and its label)."""
    out.tasks[reason] = (key, label)
    return reason


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


def zoo_document(base: dict, result: Imported) -> dict:
    """A whole zoo file: `base`'s sources, dataset and tolerance with the imported tables, the datasets other
    than the default the models use (datasets.yaml's entries), and the models."""
    used = {e.table for e in result.entries}
    datasets: dict[str, dict] = {}
    for e in result.entries:
        if e.dataset is not None and not e.dataset.default and e.facts is not None:
            datasets.setdefault(e.dataset.name, e.dataset.zoo_entry(e.facts))
    default = next((k for k in known() if k.default), None)
    if "dataset" in base and default is not None and default.entry:  # COCO val2017 has COCO's 80 classes
        extra = {k: v for k, v in default.entry.items() if k not in base["dataset"]}
        base = {**base, "dataset": {**base["dataset"], **extra}}
    return {
        "version": 2,
        **{k: base[k] for k in ("sources", "dataset", "tolerance") if k in base},
        **({"datasets": dict(sorted(datasets.items()))} if datasets else {}),
        "tables": {k: v for k, v in result.tables.items() if k in used},
        "models": [e.as_model() for e in result.entries],
    }
