"""The documentation as a reader meets it: the front page is short and starts with the two commands, every
relative link lands on a file (and a heading, when it names one), and no page points at the tracker's issue
numbers, which mean nothing to a reader of the repository.

Links and code are found with markdown-it-py (the parser `harness import` uses), so a `#12` inside a code
span or a block is left alone and a link is what a renderer makes a link, not what a regex guesses.
"""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = sorted([README, REPO / "CONTRIBUTING.md", *(REPO / "docs").glob("*.md")])
MAX_README_BYTES = 12 * 1024
FIRST_SCREEN = 40  # lines
# the main job, end to end and offline; the tests (what .ci/run ends with)
MAIN_JOB = "scripts/rehearse.sh"
ISSUE_REFERENCE = re.compile(r"#\d+|\bissues? \d", re.IGNORECASE)


def _md() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def _inline(tokens: list[Token]) -> list[Token]:
    """Every inline child token of a document (text, code spans, links), in order."""
    return [child for token in tokens if token.type == "inline" for child in token.children or []]


def _slug(text: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (letters, digits, `_`, `-` and spaces
    kept), each space a `-`."""
    kept = "".join(ch for ch in text.lower() if ch.isalnum() or ch in " _-")
    return kept.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a markdown file (a repeated slug gets `-1`, `-2`, ...)."""
    tokens = _md().parse(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    for opening, inline in pairwise(tokens):
        if opening.type != "heading_open":
            continue
        slug = _slug("".join(child.content for child in inline.children or []))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _relative_links(path: Path) -> list[str]:
    """The targets of the links and images of a page that point inside the repository."""
    targets = []
    for token in _inline(_md().parse(path.read_text(encoding="utf-8"))):
        target = token.attrGet("href") if token.type == "link_open" else token.attrGet("src")
        if token.type in ("link_open", "image") and isinstance(target, str):
            parts = urlsplit(target)
            if not parts.scheme and not parts.netloc and not target.startswith("mailto:"):
                targets.append(target)
    return targets


def _broken(page: Path, target: str) -> str | None:
    """Why a relative link of `page` does not resolve, or None."""
    parts = urlsplit(target)
    file = (page.parent / unquote(parts.path)).resolve() if parts.path else page
    if not file.exists():
        return f"{target}: no {file.relative_to(REPO) if file.is_relative_to(REPO) else file}"
    if parts.fragment and file.suffix == ".md" and parts.fragment not in _anchors(file):
        return f"{target}: {file.name} has no heading #{parts.fragment}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves_to_a_file_and_a_heading(page):
    broken = [why for target in _relative_links(page) if (why := _broken(page, target))]
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_link_checker_sees_a_broken_file_and_a_broken_anchor(tmp_path):
    """The checker itself: a page with a dead file link and a dead anchor is caught, a good one is not."""
    (tmp_path / "other.md").write_text("# Nightly on a GPU runner: `harness run`\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#nightly-on-a-gpu-runner-harness-run) [gone](nowhere.md) [bad](other.md#nightly)\n"
        "`[not a link](nowhere.md)` [web](https://example.org/x.md)\n"
    )
    assert _relative_links(page) == ["other.md#nightly-on-a-gpu-runner-harness-run", "nowhere.md", "other.md#nightly"]
    assert [_broken(page, t) is None for t in _relative_links(page)] == [True, False, False]


def test_the_readme_is_a_front_page():
    size = len(README.read_bytes())
    assert size <= MAX_README_BYTES, f"README.md is {size} bytes; at most {MAX_README_BYTES}: move detail to docs/"


def _test_command() -> str:
    """The test command as CI runs it: the script `.ci/run` hands over to."""
    last = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.startswith("exec ")][-1]
    return last.split()[1]


def test_the_two_commands_are_on_the_first_screen():
    """A code block in the README's first 40 lines runs the main job and the tests, as written."""
    tokens = _md().parse(README.read_text(encoding="utf-8"))
    lines = [
        line.split("#")[0].strip()
        for token in tokens
        if token.type == "fence" and token.map and token.map[1] <= FIRST_SCREEN
        for line in token.content.splitlines()
    ]
    assert MAIN_JOB in lines, f"`{MAIN_JOB}` is not a command line in a code block of the first {FIRST_SCREEN} lines"
    assert _test_command() in lines, f"`{_test_command()}` (.ci/run's) is not in the first {FIRST_SCREEN} lines"


def _prose(path: Path) -> list[str]:
    """The text a reader reads as prose: every inline text token, code spans and code blocks left out."""
    return [token.content for token in _inline(_md().parse(path.read_text(encoding="utf-8"))) if token.type == "text"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_page_names_tracker_issue_numbers(page):
    found = [hit.group(0) for text in _prose(page) for hit in ISSUE_REFERENCE.finditer(text)]
    assert not found, f"{page.name} refers to issue numbers {found}: say what the thing is instead"


def test_the_issue_pattern_sees_prose_and_spares_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("the trust work of issue 10 and #11\n\n`#12` in code\n\n```\nharness run  # 13\n```\n")
    assert [hit.group(0) for text in _prose(page) for hit in ISSUE_REFERENCE.finditer(text)] == ["issue 1", "#11"]
