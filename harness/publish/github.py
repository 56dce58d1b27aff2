"""A small client of GitHub's REST API: the few issue endpoints `harness notify` uses, and GitHub's manners.

Why not a GitHub library: the harness already depends on requests and tenacity (the downloads use them), and
five endpoints do not justify another dependency. What the client does for every call:
- 5xx answers and broken connections: retried with exponential backoff (tenacity), then one clear error;
- the rate limit (403/429 with `x-ratelimit-remaining: 0` or `retry-after`): waits until GitHub allows the next
  call, at most `max_wait_s` in all, then one clear error saying when the limit resets;
- pagination: follows the `Link: <...>; rel="next"` header;
- every other refusal (bad token, missing permission, unknown repository) is a usage error naming the fix.
Messages are one bounded line: GitHub's own message is cut, never echoed whole.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from harness.core.errors import HarnessError, UsageError
from harness.fetch.neterrors import summary

log = logging.getLogger("harness")

API_URL = "https://api.github.com"
TOKEN_ENV, REPO_ENV, API_ENV = "GITHUB_TOKEN", "GITHUB_REPOSITORY", "GITHUB_API_URL"
REPO_RE = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
MAX_TEXT = 200  # characters of GitHub's own message kept in an error
MAX_PAGES = 100  # 100 pages of 100 issues: far more open alerts than any zoo has models


def cut(text: object, limit: int = MAX_TEXT) -> str:
    """`text` as one line of at most `limit` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class GitHubError(HarnessError):
    """GitHub could not be talked to (5xx after retries, rate limit past the wait, network): exit 3."""


# refusals that no retry changes, by status: (what it means, the fix)
REFUSALS = {
    401: ("GitHub refused the token", f"set {TOKEN_ENV} to a valid token (in a workflow: secrets.GITHUB_TOKEN)"),
    403: (
        "the token may not do this",
        "give the token permission to write issues (a workflow job: `permissions: issues: write`; a fine-grained "
        "token: Issues read and write)",
    ),
    404: ("no such repository, or the token cannot see it", f"check --repo / {REPO_ENV} and the token's access"),
    410: ("the repository's issues are turned off", "turn issues on in the repository's settings"),
}


@dataclass(frozen=True)
class Policy:
    """How long the client insists: attempts and backoff for 5xx, the longest total wait for the rate limit."""

    attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    max_wait_s: float = 60.0
    timeout_s: float = 30.0


class _ServerError(Exception):
    """A 5xx answer: retried."""

    def __init__(self, resp: Any) -> None:
        super().__init__(f"{resp.status_code} {resp.reason}")
        self.resp = resp


def _message(resp: Any) -> str:
    """GitHub's own `message` of an error answer (or the start of its body), cut."""
    try:
        raw = resp.json()
    except ValueError:
        raw = None
    return cut(raw.get("message") if isinstance(raw, dict) and raw.get("message") else resp.text or resp.reason, 160)


def rate_limit_wait(resp: Any, now: float) -> float | None:
    """Seconds to wait before asking again when `resp` is GitHub's rate limit (primary: `x-ratelimit-remaining:
    0` until `x-ratelimit-reset`; secondary: `retry-after`), else None."""
    if resp.status_code not in (403, 429):
        return None
    headers = resp.headers
    if headers.get("retry-after", "").strip().isdigit():
        return float(headers["retry-after"])
    if headers.get("x-ratelimit-remaining") == "0":
        reset = headers.get("x-ratelimit-reset", "")
        return max(0.0, float(reset) - now) + 1.0 if reset.isdigit() else 60.0
    return 60.0 if resp.status_code == 429 else None


@dataclass
class GitHub:
    """One repository's issues through GitHub's REST API (or any server speaking it at `api_url`)."""

    repo: str
    token: str
    api_url: str = API_URL
    policy: Policy = field(default_factory=Policy)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        import requests

        if not REPO_RE.fullmatch(self.repo):
            raise UsageError(f"repository {cut(self.repo, 80)!r} is not OWNER/NAME", hint=f"set --repo or {REPO_ENV}")
        if not re.match(r"https?://", self.api_url):
            raise UsageError(f"{API_ENV} {cut(self.api_url, 80)!r} is not an http(s) URL", hint="unset it or fix it")
        self.api_url = self.api_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(
            {
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "res2net-zoo-harness",
            }
        )

    # ---- the endpoints ----------------------------------------------------------------------------------

    def open_issues(self, label: str) -> list[dict]:
        """Open issues (not pull requests) carrying `label`, every page."""
        url = f"{self.api_url}/repos/{self.repo}/issues"
        params = {"state": "open", "labels": label, "per_page": "100", "sort": "created", "direction": "asc"}
        return [i for i in self.pages(url, params) if "pull_request" not in i]

    def create_issue(self, title: str, body: str, labels: list[str]) -> dict:
        return self.call("POST", f"/repos/{self.repo}/issues", json={"title": title, "body": body, "labels": labels})

    def edit_issue(self, number: int, **fields: Any) -> dict:
        return self.call("PATCH", f"/repos/{self.repo}/issues/{number}", json=fields)

    def comments(self, number: int) -> list[dict]:
        return list(self.pages(f"{self.api_url}/repos/{self.repo}/issues/{number}/comments", {"per_page": "100"}))

    def comment(self, number: int, body: str) -> dict:
        return self.call("POST", f"/repos/{self.repo}/issues/{number}/comments", json={"body": body})

    # ---- the manners ------------------------------------------------------------------------------------

    def pages(self, url: str, params: dict[str, str] | None) -> Iterator[dict]:
        """Every item of a listing, following `Link: rel="next"` (the next URL carries the parameters)."""
        for _ in range(MAX_PAGES):
            resp = self.send("GET", url, params=params)
            items = resp.json()
            if not isinstance(items, list):
                raise GitHubError(f"GET {cut(url, 100)}: not a list of items", hint=f"check {API_ENV}")
            yield from items
            url, params = resp.links.get("next", {}).get("url"), None
            if not url:
                return
        raise GitHubError(f"GET {cut(url, 100)}: more than {MAX_PAGES} pages", hint="close some of those issues")

    def call(self, method: str, path: str, **kw: Any) -> dict:
        out = self.send(method, f"{self.api_url}{path}", **kw).json()
        return out if isinstance(out, dict) else {}

    def send(self, method: str, url: str, **kw: Any) -> Any:
        """One call: retried on 5xx, waiting out the rate limit within the policy, refused clearly otherwise."""
        waited = 0.0
        where = f"{method} {cut(url.removeprefix(self.api_url), 100)}"
        while True:
            resp = self._attempts(method, url, where, **kw)
            wait = rate_limit_wait(resp, self.clock())
            if wait is None:
                break
            if waited + wait > self.policy.max_wait_s:
                reset = datetime.fromtimestamp(self.clock() + wait, UTC).strftime("%H:%M:%S UTC")
                raise GitHubError(
                    f"{where}: GitHub's rate limit: the next call is allowed at {reset} (in {wait:.0f} s), past "
                    f"the {self.policy.max_wait_s:.0f} s this waits",
                    hint="run `harness notify` again after that time (it picks up where it stopped), or raise "
                    "--max-wait",
                )
            log.warning("%s: GitHub's rate limit; waiting %.0f s", where, wait)
            self.sleep(wait)
            waited += wait
        if resp.status_code >= 400:
            what, fix = REFUSALS.get(resp.status_code, ("GitHub refused the call", "see GitHub's message"))
            error = UsageError if resp.status_code in REFUSALS else GitHubError
            raise error(f"{where}: {resp.status_code}: {what} ({_message(resp)})", hint=fix)
        return resp

    def _attempts(self, method: str, url: str, where: str, **kw: Any) -> Any:
        """The answer of the first attempt that is not a 5xx or a broken connection."""
        import requests
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        p = self.policy
        retrying = Retrying(
            stop=stop_after_attempt(p.attempts),
            wait=wait_exponential(multiplier=p.backoff_s, max=p.max_backoff_s),
            retry=retry_if_exception_type((_ServerError, requests.ConnectionError, requests.Timeout)),
            sleep=self.sleep,
            before_sleep=lambda rs: log.warning(
                "%s: %s; retrying (attempt %d of %d)",
                where,
                cut(rs.outcome.exception() if rs.outcome else "?", 120),
                rs.attempt_number + 1,
                p.attempts,
            ),
            reraise=True,
        )
        tries = 0
        try:
            for attempt in retrying:
                with attempt:
                    tries += 1
                    resp = self.session.request(method, url, timeout=p.timeout_s, **kw)
                    if resp.status_code >= 500:
                        raise _ServerError(resp)
        except _ServerError as exc:
            raise GitHubError(
                f"{where}: GitHub answered {exc} {tries} times ({_message(exc.resp)})",
                hint="GitHub may be having an outage: run `harness notify` again later (it picks up where it stopped)",
            ) from None
        except requests.RequestException as exc:
            raise GitHubError(
                f"{where}: {summary(url, exc)} ({tries} attempts)",
                hint=f"check the network and {API_ENV}, then run `harness notify` again",
            ) from None
        return resp
