"""Alerts as GitHub issues, worded from the night's view: what the page calls new opens an issue, nothing else does.

Why issues: a regression should reach people without anyone opening the page, and an issue is where a team
already discusses, assigns and links a fix. What is said comes from the night's alerts (records/alerts.py, made
from the one rule of what is new tonight), so notify and the page never disagree:
- a *failure* alert that is new tonight (pass → fail, pass → error, a failing first night) opens an issue; while
  the model keeps failing its open issue is updated; the night it measures within tolerance again the issue is
  closed with that night and its numbers. A model that passes never gets a failure issue;
- a *speed* alert (a sustained slowdown beyond the model's own noise, on the same device and backend) opens an
  issue titled "Slower", updated while it lasts and closed when its fps is back;
- `--digest`: one issue per night listing every transition instead (new failures, fixed, slower), for teams that
  want one message, not N; the earlier nights' digests are closed as it opens.
How the harness finds its issues again: each carries the label (`LABEL`) and, in its body, a hidden marker naming
the model (`<!-- harness-notify model=NAME -->`, `... speed model=NAME`, `... digest run=RUN`); the open issues
with the label are listed (every page) and matched by marker, never by title. Idempotent by construction: `plan`
compares each issue's title and body with what tonight says and writes only what differs, and a closing comment
carries the night's own marker, so running the same night twice writes nothing the second time.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from harness.core.errors import UsageError
from harness.publish.github import GitHub, cut
from harness.publish.report import alert_line, environment, number
from harness.publish.view import Night
from harness.records.alerts import Alert, Number
from harness.records.results import Result

log = logging.getLogger("harness")

LABEL = "zoo-regression"
MARKER_RE = re.compile(r"<!-- harness-notify (?:(speed|digest) )?(?:model|run)=([A-Za-z0-9_.+-]+) -->")
MAX_TITLE = 200  # GitHub allows 256
MAX_VALUE = 80  # an environment value in a table cell (a commit, a version)
FOOTERS = {
    "failure": "_Opened and kept up to date by `harness notify`; it closes this issue on the night the model measures "
    "within tolerance again._",
    "speed": "_A speed alert, opened and kept up to date by `harness notify`; it closes this issue on the night the "
    "model's fps is back at its level._",
    "digest": "_Opened by `harness notify --digest`; the next night with a transition closes it._",
}

Verb = Literal["open", "update", "close", "keep"]
Key = tuple[str, str]  # (kind: failure, speed or digest; the model or the digest's night)
Links = Callable[[str, str], Sequence[tuple[str, str]]]  # (model, run id) -> [(what, URL)]


def marker(model: str, kind: str = "failure") -> str:
    if kind == "digest":
        return f"<!-- harness-notify digest run={model} -->"
    return f"<!-- harness-notify {'speed ' if kind == 'speed' else ''}model={model} -->"


def closed_marker(key: Key, run_id: str) -> str:
    kind, name = key
    return f"<!-- harness-notify closed {kind} model={name} run={run_id} -->"


@dataclass(frozen=True)
class Action:
    """One thing to do on GitHub: open or update an issue with `text` as its body, close one with `text` as the
    closing comment, or keep one as it is."""

    verb: Verb
    model: str
    title: str
    text: str = ""
    number: int | None = None
    kind: str = "failure"

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


def title(alert: Alert) -> str:
    """`Failing: MODEL (pass → fail: box_ap -1.20)`, `Slower: MODEL (fps 20.1 → 15.2, -24 %)`."""
    if alert.kind == "speed" and alert.speed is not None:
        st = alert.speed
        return cut(f"Slower: {alert.model} (fps {st.level.fps:.3g} → {st.after:.3g}, {st.change:+.0%})", MAX_TITLE)
    worst = [n for n in alert.numbers if n.status == "fail" and n.delta is not None]
    what = f"{worst[0].metric} {worst[0].delta:+.2f}" if worst else (alert.error or "").split(":")[0]
    how = "pass → " + alert.status if alert.new and alert.last_good else alert.status
    return cut(f"Failing: {alert.model} ({how}{': ' + what if what else ''})", MAX_TITLE)


def _numbers(alert: Alert) -> list[str]:
    base = f"last pass (`{alert.last_good}`)" if alert.last_good else "last pass"
    rows = [
        f"| {_cell(n.metric)} | {_num(n.tonight)} | {_num(n.documented)} | "
        f"{'–' if n.tolerance is None else f'± {n.tolerance:g}'} | {'–' if n.delta is None else f'{n.delta:+.2f}'} | "
        f"{_num(n.last_pass)} | {'–' if n.moved is None else f'{n.moved:+.2f}'} | {n.status or '–'} |"
        for n in alert.numbers
    ]
    head = [f"| metric | tonight | documented | tolerance | Δ documented | {base} | Δ last pass | verdict |"]
    return [*head, "|---|---|---|---|---|---|---|---|", *rows] if rows else []


def _environment(alert: Alert) -> list[str]:
    what = "the last pass" if alert.kind == "failure" else "the last night at its level"
    if not alert.last_good or not alert.compared or not alert.environment:
        return [f"**What changed since {what}**: {environment(alert)}."]
    rows = []
    for c in alert.environment:
        link = f" ([compare]({c.link}))" if c.link else ""
        rows.append(f"| {_cell(c.label)} | {_cell(c.text_of(c.before))} | {_cell(c.text_of(c.after))}{link} |")
    return [
        f"**What changed since {what}** (`{alert.last_good}`):",
        "",
        f"| field | `{alert.last_good}` | tonight (`{alert.run_id}`) |",
        "|---|---|---|",
        *rows,
        "",
        f"Compared: {', '.join(alert.compared)}; fields not named here were not recorded.",
    ]


def body(alert: Alert, links: Sequence[tuple[str, str]] = ()) -> str:
    """The issue's body, leading with what a maintainer needs: the transition and the model's page, the numbers
    against tolerance, the environment against the last good night with the compare link. Deterministic: the
    same alert gives the same bytes."""
    pages = " · ".join(f"[{what}]({url})" for what, url in links) or "no page is known for this night"
    speed = alert.kind == "speed" and alert.speed is not None
    lines = [
        marker(alert.model, alert.kind),
        f"{alert_line(alert)}",
        "",
        f"- night: `{alert.run_id}`; {'slower' if speed else alert.status} since `{alert.since}` "
        f"({alert.nights} night{'s' if alert.nights != 1 else ''})",
        f"- pages: {pages}",
        "",
        *(_numbers(alert) if not speed else []),
        *([f"Error: `{_cell(alert.error)}`", ""] if alert.error else [""] if not speed else []),
        *_environment(alert),
        "",
        FOOTERS[alert.kind],
        "",
    ]
    return "\n".join(lines)


def closing(rec: Result, key: Key) -> str:
    """The comment an issue is closed with: the night the model passed (or its speed came back), its numbers."""
    if key[0] == "speed":
        said = f"runs at {rec.fps:.3g} fps in night `{rec.run_id}`: back at its level" if rec.fps else "is timed again"
    else:
        nums = [number(n) for n in _rec_numbers(rec)]
        said = f"passes again in night `{rec.run_id}`: {', '.join(nums) or 'every documented metric'}"
    return "\n".join(
        [closed_marker(key, rec.run_id), f"**{rec.model}** {said}.", "", "Closed by `harness notify`.", ""]
    )


def _rec_numbers(rec: Result) -> Iterator[Number]:
    for name, v in rec.metrics.items():
        yield Number(name, v.measured, v.documented, v.tolerance, None, v.status)


def digest(night: Night, links: Links | None) -> tuple[str, str] | None:
    """(title, body) of the night's digest: every transition of the night, or None when nothing changed."""
    new = [a for a in night.alerts if a.new]
    fixed = night.summary.fixed
    if not new and not fixed:
        return None
    failures = sum(a.kind == "failure" for a in new)
    slower = len(new) - failures
    head = f"Nightly {night.run_id}: {failures} new failure{'s' if failures != 1 else ''}, {len(fixed)} fixed"
    lines = [marker(night.run_id, "digest"), f"**{head}**, {slower} slower.", ""]
    for a in new:
        pages = " · ".join(f"[{w}]({u})" for w, u in (links(a.model, a.run_id) if links else ()))
        lines.append(f"- {alert_line(a)}" + (f" ({pages})" if pages else ""))
    lines += [f"- **{f.model}**: fixed, passes again after {f.nights} nights (since {f.since})" for f in fixed]
    return cut(f"{head}, {slower} slower", MAX_TITLE), "\n".join([*lines, "", FOOTERS["digest"], ""])


# ---- the plan and its execution -------------------------------------------------------------------------


def _same(text: str | None, other: str) -> bool:
    """Two bodies equal but for line endings and trailing blanks (GitHub may store either)."""
    return (text or "").replace("\r\n", "\n").rstrip() == other.replace("\r\n", "\n").rstrip()


def by_key(issues: Sequence[dict]) -> dict[Key, dict]:
    """The open alert issue of each (kind, model or night) (the oldest when someone made two), by the marker in
    its body."""
    out: dict[Key, dict] = {}
    for issue in sorted(issues, key=lambda i: i.get("number", 0)):
        found = MARKER_RE.search(issue.get("body") or "")
        if not found:
            continue
        key = (found[1] or "failure", found[2])
        if key in out:
            log.warning(
                "issue #%s: a second open alert of %s; #%s is kept up to date",
                issue.get("number"),
                cut(found[2], 80),
                out[key].get("number"),
            )
            continue
        out[key] = issue
    return out


def _write(key: Key, t: str, b: str, existing: dict[Key, dict], *, new: bool) -> Action | None:
    """Open (only when new tonight), update or keep the issue of `key`."""
    issue = existing.get(key)
    if issue is None:
        return Action("open", key[1], t, b, kind=key[0]) if new else None
    if issue.get("title") == t and _same(issue.get("body"), b):
        return Action("keep", key[1], t, number=issue["number"], kind=key[0])
    return Action("update", key[1], t, b, issue["number"], kind=key[0])


def plan(
    night: Night, existing: dict[Key, dict], *, links: Links | None = None, digest_only: bool = False
) -> list[Action]:
    """What to do: open an issue for each alert new tonight, update the open issue of an ongoing one, close the
    issue of a model that passes again (or whose speed is back); with `digest_only`, one issue for the night."""
    if digest_only:
        return _digest_plan(night, existing, links)
    out = []
    for a in night.alerts:
        act = _write(
            (a.kind, a.model), title(a), body(a, links(a.model, a.run_id) if links else ()), existing, new=a.new
        )
        out += [act] if act else []
    slow = {a.model for a in night.alerts if a.kind == "speed"}
    for rec in night.passing:
        out += _close(("failure", rec.model), rec, existing)
    for m in night.models:  # fps back at its level, on the device and backend it slowed down on
        if m.rec.carried is None and m.model not in slow and m.speed_known:
            out += _close(("speed", m.model), m.rec, existing)
    return out


def _close(key: Key, rec: Result, existing: dict[Key, dict]) -> list[Action]:
    issue = existing.get(key)
    if issue is None:
        return []
    name = cut(issue.get("title") or rec.model, MAX_TITLE)
    return [Action("close", key[1], name, closing(rec, key), issue["number"], kind=key[0])]


def _digest_plan(night: Night, existing: dict[Key, dict], links: Links | None) -> list[Action]:
    """The night's digest opened (or updated), the earlier nights' open digests closed."""
    said = digest(night, links)
    if said is None:
        return []
    key = ("digest", night.run_id)
    act = _write(key, *said, existing, new=True)
    out = [act] if act else []
    for (kind, run), issue in existing.items():
        if kind == "digest" and run != night.run_id:
            text = f"{closed_marker((kind, run), night.run_id)}\nSuperseded by the digest of night `{night.run_id}`.\n"
            out.append(Action("close", run, cut(issue.get("title") or run, MAX_TITLE), text, issue["number"], kind))
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
            act = Action("open", act.model, act.title, act.text, issue.get("number"), act.kind)
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
    night: Night,
    gh: GitHub | None,
    *,
    label: str = LABEL,
    links: Links | None = None,
    digest_only: bool = False,
    dry_run: bool = False,
) -> list[Action]:
    """The night's alerts on GitHub: the plan against the open issues (read through `gh`; without a client, in a
    dry run, as if none were open), carried out unless `dry_run`."""
    existing = by_key(gh.open_issues(label)) if gh is not None else {}
    actions = plan(night, existing, links=links, digest_only=digest_only)
    if dry_run or gh is None:
        return actions
    return apply(gh, actions, label)
