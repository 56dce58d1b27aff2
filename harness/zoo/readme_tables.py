"""PaddleDetection README markdown read into tables, and what each column of a table means.

Why a module of its own: this is the markup side of `harness import` (readme.py), the part that knows
markdown-it-py's tokens and the column vocabulary (readme.yaml) but nothing of configs, weights or the zoo.
Cells come back as plain text plus link targets, as a reader sees them (HTML, bold and math markup dropped),
and a header cell's role (config, weights, size, fps, metric, label) is matched against the vocabulary, never
hard-coded; readme.py then decides, row by row, what becomes a zoo entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

VOCABULARY = Path(__file__).with_name("readme.yaml")


@dataclass(frozen=True)
class Cell:
    text: str  # plain text: markup removed, as a reader sees it
    links: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    readme: str  # path inside the tree, e.g. configs/res2net/README.md
    headings: tuple[str, ...]  # the headings above the table, outermost first
    header: tuple[Cell, ...]
    rows: tuple[tuple[Cell, ...], ...]
    lines: tuple[str, ...]  # each row as written in the file
    numbers: tuple[int, ...] = ()  # each row's line number in the file (1-based)
    notes: str = ""  # the paragraphs since the last section heading (h1, h2) above the table


@dataclass
class Column:
    title: str  # as written (plain text)
    role: str  # config | weights | size | fps | metric | label
    metric: str | None = None


# ---- markdown → tables ------------------------------------------------------------------------------------


def _cell(inline) -> Cell:
    """Plain text and link targets of one inline token (markup such as <sup>, **, $ is dropped)."""
    parts: list[str] = []
    links: list[str] = []
    for child in inline.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "link_open":
            links.append(str(child.attrs.get("href", "")))
        elif child.type in ("html_inline", "softbreak", "hardbreak"):
            parts.append(" ")
            links += re.findall(r'href="([^"]+)"', child.content)
    text = re.sub(r"\s+", " ", "".join(parts)).strip()
    return Cell(text, tuple(links))


def tables(text: str, readme: str) -> list[Table]:
    """Every table of a markdown file with the headings above it."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    lines = text.splitlines()
    found: list[Table] = []
    headings: list[tuple[int, str]] = []
    notes: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "heading_open":
            level = int(tok.tag[1])
            headings = [h for h in headings if h[0] < level] + [(level, _cell(tokens[i + 1]).text)]
            if level <= 2:
                notes = []
        elif tok.type == "paragraph_open":
            notes.append(_cell(tokens[i + 1]).text)
        elif tok.type == "table_open":
            header: list[Cell] = []
            rows: list[tuple[Cell, ...]] = []
            raw: list[str] = []
            numbers: list[int] = []
            current: list[Cell] = []
            in_head = True
            while tokens[i].type != "table_close":
                t = tokens[i]
                if t.type == "tr_open":
                    current = []
                    if not in_head and t.map:
                        raw.append(lines[t.map[0]].strip())
                        numbers.append(t.map[0] + 1)
                elif t.type == "tr_close":
                    if in_head:
                        header = current
                    else:
                        rows.append(tuple(current))
                elif t.type == "thead_close":
                    in_head = False
                elif t.type == "inline":
                    current.append(_cell(t))
                i += 1
            found.append(
                Table(
                    readme,
                    tuple(h for _, h in headings),
                    tuple(header),
                    tuple(rows),
                    tuple(raw),
                    tuple(numbers),
                    " ".join(notes),
                )
            )
        i += 1
    return found


# ---- columns, values ----------------------------------------------------------------------------------------


@cache
def vocabulary() -> dict:
    return yaml.safe_load(VOCABULARY.read_text(encoding="utf-8"))


def normalise(header: str) -> str:
    """`Box AP<sup>val<br>0.5:0.95` (as plain text `Box AP val 0.5:0.95`), `$AP^{val}_{50}$` -> comparable."""
    text = re.sub(r"[$^_{}*\\]", " ", header).lower()
    return re.sub(r"\s+", " ", text).strip()


def columns(header: tuple[Cell, ...]) -> list[Column]:
    out = []
    for cell in header:
        key = normalise(cell.text)
        for rule in vocabulary()["columns"]:
            if re.search(rule["match"], key):
                out.append(Column(cell.text, rule["role"], rule.get("metric")))
                break
        else:
            out.append(Column(cell.text, "label"))
    return out


def number(text: str) -> float | None:
    """The documented value of a cell: `40.6`, `**46.5**`, `41.1<sup>*</sup>`; None for `-`, `----`, text."""
    m = re.match(r"^\s*\**\s*(\d+(?:\.\d+)?)", text)
    return float(m.group(1)) if m else None


def size(text: str) -> int | None:
    """A square input size: `640`, `320*320`, `640x640`, `[608, 608]`. A non-square one (`1333x800`,
    `800*1333`) is left a label: READMEs write it as w×h or h×w, and a guess would change the geometry."""
    nums = [int(n) for n in re.findall(r"\d+", text)]
    if not nums or len(nums) > 2 or any(n < 32 or n > 4096 for n in nums) or len(set(nums)) != 1:
        return None
    return nums[0]
