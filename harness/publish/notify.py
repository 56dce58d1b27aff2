"""Alerts as GitHub issues: one open issue per regressed model, kept up to date, closed when the model passes.

Why issues: a regression should reach people without anyone opening the page, and an issue is where a team
already discusses, assigns and links a fix. How the harness finds its own issues again: each carries the label
(`LABEL`) and, in its body, a hidden HTML comment naming the model (`<!-- harness-notify model=NAME -->`); the
open issues with the label are listed (every page) and matched by that comment, never by title.

Idempotent by construction: `plan` compares each issue's title and body with what tonight's alert says and
writes only what differs, and a closing comment carries the night's own hidden marker, so running the same night
twice (a retried job) writes nothing the second time. The facts come from `records.alerts` (one `Alert` per
regressed model); this module only words them and talks to GitHub.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from harness.core.errors import UsageError
from harness.publish.github import GitHub, cut
from harness.records.alerts import Alert, Links, Moved, passing_again
from harness.records.results import HistoryEntry, Result

log = logging.getLogger("harness")

LABEL = "zoo-regression"
MARKER_RE = re.compile(r"<!-- harness-notify model=([A-Za-z0-9_.+-]+) -->")
MAX_TITLE = 200  # GitHub allows 256
MAX_VALUE = 80  # an environment value in a table cell (a commit, a version)
FOOTER = "_Opened and kept up to date by `harness notify`; it closes this issue when the model passes again._"

Verb = Literal["open", "update", "close", "keep"]


def marker(model: str) -> str:
    return f"<!-- harness-notify model={model} -->"


def closed_marker(model: str, run_id: str) -> str:
    return f"<!-- harness-notify closed model={model} run={run_id} -->"


@dataclass(frozen=True)
class Action:
    """One thing to do on GitHub: open or update an issue with `text` as its body, close one with `text` as the
    closing comment, or keep one as it is."""

    verb: Verb
    model: str
    title: str
    text: str = ""
    number: int | None = None

    def line(self, *, done: bool) -> str:
        """What was (or would be) done, in one bounded line."""
        past = {"open": "opened", "update": "updated", "close": "closed", "keep": "unchanged"}
        verb = past[self.verb] if done or self.verb == "keep" else f"would {self.verb}"
        number = f" #{self.number}" if self.number is not None else ""
        return cut(f"{verb}{number}: {self.title}", 240)


# ---- the words ------------------------------------------------------------------------------------------


def _cell(value: object) -> str:
    """A value as a markdown table cell: one line, bounded, its pipes escaped."""
    return cut(value, MAX_VALUE).replace("|", "\\|")


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _tolerance(m: Moved) -> str:
    return "fps −10 %" if m.metric == "fps" else "–" if m.tolerance is None else f"± {m.tolerance:g}"


def title(alert: Alert) -> str:
    return cut(f"Regression: {alert.model} ({', '.join(alert.metrics)})", MAX_TITLE)


def _environment(alert: Alert) -> list[str]:
    if not alert.compared:
        return ["The environment of these nights is not recorded: no environment diff is known."]
    if not alert.environment:
        return [
            f"No change in what both nights recorded ({', '.join(alert.compared)}); "
            "fields not named here were not recorded."
        ]
    rows = [f"| {_cell(c.field)} | {_cell(c.before)} | {_cell(c.after)} |" for c in alert.environment]
    return [
        f"| field | last pass (`{alert.last_pass}`) | tonight (`{alert.run_id}`) |",
        "|---|---|---|",
        *rows,
        "",
        f"Compared: {', '.join(alert.compared)}; fields not named here were not recorded.",
    ]


def body(alert: Alert) -> str:
    """The issue's body: what moved (Δ against the last pass, the README's value), since when, the environment
    diff against the last pass, links. Deterministic: the same alert gives the same bytes."""
    since = f"run `{alert.since}`" + (f" (finished {alert.since_finished})" if alert.since_finished else "")
    links = " · ".join(f"[{what}]({url})" for what, url in alert.links) or "no page is known for this night"
    return "\n".join(
        [
            marker(alert.model),
            f"**{alert.model}** moved against its last passing night (run `{alert.last_pass}`).",
            "",
            "| metric | tonight | last pass | Δ | documented | tolerance |",
            "|---|---|---|---|---|---|",
            *(
                f"| {m.metric} | {_num(m.measured)} | {_num(m.before)} | {m.delta:+.2f} | {_num(m.documented)} "
                f"| {_tolerance(m)} |"
                for m in alert.moved
            ),
            "",
            f"- tonight: run `{alert.run_id}`, verdict **{alert.status}**",
            f"- since: {since}, the first night after the last pass",
            f"- links: {links}",
            "",
            "### Environment: last pass against tonight",
            "",
            *_environment(alert),
            "",
            FOOTER,
            "",
        ]
    )


def closing(rec: Result) -> str:
    """The comment an issue is closed with: the night the model passed, and its numbers."""
    numbers = ", ".join(
        f"{name} {_num(v.measured)} (documented {v.documented:g} ± {v.tolerance:g})" for name, v in rec.metrics.items()
    )
    return "\n".join(
        [
            closed_marker(rec.model, rec.run_id),
            f"**{rec.model}** passes again in run `{rec.run_id}`: {numbers or 'every documented metric'}.",
            "",
            "Closed by `harness notify`.",
            "",
        ]
    )


# ---- the plan and its execution -------------------------------------------------------------------------


def _same(text: str | None, other: str) -> bool:
    """Two bodies equal but for line endings and trailing blanks (GitHub may store either)."""
    return (text or "").replace("\r\n", "\n").rstrip() == other.replace("\r\n", "\n").rstrip()


def by_model(issues: Sequence[dict]) -> dict[str, dict]:
    """The open alert issue of each model (the oldest when someone made two), by the marker in its body."""
    out: dict[str, dict] = {}
    for issue in sorted(issues, key=lambda i: i.get("number", 0)):
        found = MARKER_RE.search(issue.get("body") or "")
        if not found:
            continue
        if found[1] in out:
            log.warning(
                "issue #%s: a second open alert of %s; #%s is kept up to date",
                issue.get("number"),
                cut(found[1], 80),
                out[found[1]].get("number"),
            )
            continue
        out[found[1]] = issue
    return out


def plan(alerts: Sequence[Alert], passing: Sequence[Result], existing: dict[str, dict]) -> list[Action]:
    """What to do: open an issue for a new regression, update one whose words changed, keep one that says the
    same, close the issue of a model that passes again."""
    out = []
    for a in alerts:
        t, b = title(a), body(a)
        issue = existing.get(a.model)
        if issue is None:
            out.append(Action("open", a.model, t, b))
        elif issue.get("title") == t and _same(issue.get("body"), b):
            out.append(Action("keep", a.model, t, number=issue["number"]))
        else:
            out.append(Action("update", a.model, t, b, issue["number"]))
    for rec in passing:
        if (issue := existing.get(rec.model)) is not None:
            name = cut(issue.get("title") or rec.model, MAX_TITLE)
            out.append(Action("close", rec.model, name, closing(rec), issue["number"]))
    return out


def apply(gh: GitHub, actions: Sequence[Action], label: str = LABEL) -> list[Action]:
    """Do each action on GitHub; returns them as done (an opened issue with its number)."""
    done = []
    for act in actions:
        if act.verb == "open":
            issue = gh.create_issue(act.title, act.text, [label])
            labels = {lab.get("name") if isinstance(lab, dict) else lab for lab in issue.get("labels", [])}
            if label not in labels:
                raise UsageError(
                    f"issue #{issue.get('number')} of {cut(act.model, 80)} was opened without the label {label!r}: "
                    "later runs could not find it",
                    hint="give the token permission to label issues (write access to issues), then close that "
                    "issue by hand",
                )
            act = Action("open", act.model, act.title, act.text, issue.get("number"))
        elif act.verb == "update" and act.number is not None:
            gh.edit_issue(act.number, title=act.title, body=act.text)
        elif act.verb == "close" and act.number is not None:
            first = act.text.splitlines()[0]
            if not any(first in (c.get("body") or "") for c in gh.comments(act.number)):
                gh.comment(act.number, act.text)
            gh.edit_issue(act.number, state="closed", state_reason="completed")
        done.append(act)
    return done


def notify(
    records: list[Result],
    history: list[HistoryEntry],
    gh: GitHub | None,
    *,
    label: str = LABEL,
    links: Links | None = None,
    dry_run: bool = False,
) -> list[Action]:
    """The night's alerts on GitHub: the plan against the open issues (read through `gh`; without a client, in a
    dry run, as if none were open), carried out unless `dry_run`."""
    from harness.records.alerts import alerts as alerts_of

    found = alerts_of(history, records, links=links)
    existing = by_model(gh.open_issues(label)) if gh is not None else {}
    actions = plan(found, passing_again(records, found), existing)
    if dry_run or gh is None:
        return actions
    return apply(gh, actions, label)
