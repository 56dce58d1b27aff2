"""`harness notify RUN_DIR...`: tell people about tonight's transitions through GitHub issues: an issue for each
model the page calls new tonight (pass → fail or error, a failing first night, a sustained slowdown), updated
while it lasts, closed with a comment when the model passes again; or one digest issue a night (`--digest`).
Reads the run's result files and the history into the night's view (the page's); no model runs, no paddle."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands import options
from harness.core.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from harness.publish.notify import Action, Links

NAME = "notify"
HELP = "open, update or close a GitHub issue per model new tonight (or one digest), as the page says"
log = logging.getLogger("harness")

EPILOG = """\
environment:
  GITHUB_TOKEN       a token that may write the repository's issues (required unless --dry-run)
  GITHUB_REPOSITORY  OWNER/NAME when --repo is not given (GitHub Actions sets it)
  GITHUB_API_URL     the REST API's base URL (default: GitHub's; GitHub Enterprise sets its own)
  HARNESS_SITE_URL   --site-url when it is not given (empty: no links to the page)

what opens an issue: the page's "new" tonight and nothing else: a model that passed the night before (or had
no night before) and fails or errors tonight; a sustained slowdown (two nights or more beyond the model's own
fps noise, same device and backend) opens a "Slower" issue. Open issues are updated while the model fails and
closed on the night it measures within tolerance again (or its fps is back). A model that passes gets at most a
speed issue.

examples:
  harness notify runs/nightly-20261130 --dry-run              what it would open, update or close
  GITHUB_TOKEN=... harness notify runs/nightly-20261130 --repo me/zoo --history reports/history.jsonl
  harness notify runs/results-shard-* --history reports/history.jsonl --site-url https://me.github.io/zoo
  harness notify runs/nightly-20261130 --digest --dry-run     one issue for the night instead of one per model

exit codes: 0 done (whatever the verdicts), 2 usage (no token, bad repository, a token without permission),
3 GitHub could not be talked to (5xx after retries, rate limit past --max-wait, network)
"""


DONE = {"open": "opened", "update": "updated", "close": "closed", "keep": "unchanged"}
DRY = {"open": "to open", "update": "to update", "close": "to close", "keep": "unchanged"}


def add_parser(sub: options.Subparsers, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = options.command(sub, common, NAME, HELP, epilog=EPILOG)
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="directories written by verify or run")
    p.add_argument(
        "--history",
        type=Path,
        metavar="PATH",
        help="the history the regressions are judged against (default $HARNESS_HISTORY, else the first run "
        "directory's history.jsonl)",
    )
    p.add_argument("--repo", metavar="OWNER/NAME", help="the repository of the issues (default $GITHUB_REPOSITORY)")
    p.add_argument("--label", default="zoo-regression", help="the label marking the alerts (default %(default)s)")
    p.add_argument(
        "--site-url",
        metavar="URL",
        help="where the nightly's page is published, linked from the issues (default $HARNESS_SITE_URL)",
    )
    p.add_argument(
        "--max-wait",
        type=float,
        default=60.0,
        metavar="S",
        help="longest total wait for GitHub's rate limit before giving up (default %(default)g s)",
    )
    p.add_argument(
        "--digest",
        action="store_true",
        help="one issue per night listing every transition (new failures, fixed, slower) instead of one per model; "
        "the earlier nights' digests are closed",
    )
    p.add_argument("--dry-run", action="store_true", help="print what it would do; write nothing (no token needed)")
    p.set_defaults(func=main)
    return p


def _run_url() -> str | None:
    """This workflow run's page, when running in GitHub Actions."""
    server, repo, run = (os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server.rstrip('/')}/{repo}/actions/runs/{run}" if server and repo and run else None


def _links(site_url: str | None, run_url: str | None) -> Links:
    """Each alert's links: the site's pages (with --site-url): the model's page, its record of the night, the
    night's summary; and this workflow run."""
    from harness.publish.site import model_page, night_page, page_of

    site = site_url.rstrip("/") if site_url else None

    def links(model: str, run_id: str) -> list[tuple[str, str]]:
        out = [
            ("the model's page", f"{site}/{model_page(model)}"),
            ("tonight's record", f"{site}/{page_of(run_id, model)}"),
            ("the night", f"{site}/{night_page(run_id)}"),
        ]
        return (out if site else []) + ([("the workflow run", run_url)] if run_url else [])

    return links


def notify(
    runs: Sequence[Path],
    *,
    history: Path | None = None,
    repo: str | None = None,
    token: str | None = None,
    api_url: str | None = None,
    label: str = "zoo-regression",
    site_url: str | None = None,
    run_url: str | None = None,
    dry_run: bool = False,
    digest: bool = False,
    max_wait: float = 60.0,
) -> list[Action]:
    """What `harness notify` does: the actions done (or, with `dry_run`, planned) on the repository's issues."""
    from harness.publish import github, view
    from harness.publish import notify as alerts
    from harness.records import history as hist
    from harness.records.results import read

    if site_url is not None and not re.match(r"https?://", site_url):
        raise UsageError(f"--site-url {github.cut(site_url, 80)!r} is not an http(s) URL", hint="give the page's URL")
    if not label or "," in label or len(label) > 50:
        raise UsageError(
            f"--label {github.cut(label, 60)!r}: not one label", hint="a name of 1-50 characters, no comma"
        )
    if not token and not dry_run:
        raise UsageError(
            f"no token: ${github.TOKEN_ENV} is not set",
            hint=f"export {github.TOKEN_ENV}=<a token that may write this repository's issues> (in a workflow: "
            "`env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}` and `permissions: issues: write`), or pass --dry-run",
        )
    records = read(list(runs))
    path = history or hist.default_path(runs[0] / "history.jsonl")
    if not path.exists():
        log.warning("%s: no history; no regression can be judged (models that pass still close their alerts)", path)
    gh = None
    if token:
        if not repo:
            raise UsageError(f"no repository: neither --repo nor ${github.REPO_ENV}", hint="pass --repo OWNER/NAME")
        policy = github.Policy(max_wait_s=max_wait)
        gh = github.GitHub(repo, token, api_url or github.API_URL, policy)
    else:
        log.warning("no $%s: the open issues were not read; the dry run assumes none is open", github.TOKEN_ENV)
    night = view.of(records, hist.load(path), list(runs))
    links = _links(site_url, run_url)
    return alerts.notify(night, gh, label=label, links=links, digest_only=digest, dry_run=dry_run)


def main(args: argparse.Namespace) -> int:
    actions = notify(
        args.runs,
        history=args.history,
        repo=args.repo or os.environ.get("GITHUB_REPOSITORY"),
        token=os.environ.get("GITHUB_TOKEN"),
        api_url=os.environ.get("GITHUB_API_URL"),
        label=args.label,
        site_url=args.site_url or os.environ.get("HARNESS_SITE_URL") or None,
        run_url=_run_url(),
        dry_run=args.dry_run,
        digest=args.digest,
        max_wait=args.max_wait,
    )
    for act in actions:
        print(act.line(done=not args.dry_run))
        if args.dry_run and act.text:
            print("".join(f"    {line}\n" for line in act.text.splitlines()), end="")
    counts = Counter[str](a.verb for a in actions)
    words = DRY if args.dry_run else DONE
    said = ", ".join(f"{counts[verb]} {word}" for verb, word in words.items())
    print(f"notify{' (dry run, nothing written)' if args.dry_run else ''}: {said}", file=sys.stderr)
    return ExitCode.OK
