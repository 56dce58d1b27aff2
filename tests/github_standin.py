"""A stand-in for GitHub: a real HTTP server on 127.0.0.1 that speaks the few REST endpoints `harness notify`
uses, keeping one repository's issues in memory.

Why a stand-in: GitHub itself cannot be had in the tests (no network, no repository to write to). Nothing in
the HTTP layer is mocked: the harness's client talks to this server over a real socket, with its real headers
and JSON. Spoken, as GitHub documents them:
  GET   /repos/O/R/issues?state=&labels=&per_page=&page=   issues and pull requests, `Link: rel="next"` pages
  POST  /repos/O/R/issues                                  {title, body, labels} -> 201 and the issue
  PATCH /repos/O/R/issues/N                                {title?, body?, state?, state_reason?}
  GET   /repos/O/R/issues/N/comments                       (paged the same way)
  POST  /repos/O/R/issues/N/comments                       {body} -> 201
A request without `Authorization: Bearer <token>` gets 401. Page sizes are capped at `page_size` so that a
handful of issues spans several pages. Faults are queued and consumed one per request, whatever the path:
`RateLimited(primary=True, wait=1)` answers 403 with `x-ratelimit-remaining: 0` and a reset `wait` seconds
ahead, `RateLimited(primary=False, wait=1)` 429 with `retry-after`, `Status(502)` a bare 5xx.
`drop_labels` drops the labels of a new issue, as GitHub does for a token that may not set them.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TOKEN = "test-token"
REPO = "zoo-owner/zoo"


@dataclass(frozen=True)
class RateLimited:
    primary: bool = True
    wait: int = 1


@dataclass(frozen=True)
class Status:
    code: int


class GitHubStandIn:
    def __init__(self, page_size: int = 100) -> None:
        self.issues: list[dict] = []
        self.comments: dict[int, list[dict]] = {}
        self.faults: list[RateLimited | Status] = []
        self.requests: list[tuple[str, str]] = []  # (method, path with query), faults included
        self.page_size = page_size
        self.drop_labels = False
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"state": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> GitHubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fault(self, *faults: RateLimited | Status) -> None:
        self.faults.extend(faults)

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]

    def add_issue(self, title: str, body: str, labels: list[str], *, pull_request: bool = False) -> dict:
        """An issue (or pull request) made by someone else, before the test."""
        with self.lock:
            return self._create({"title": title, "body": body, "labels": labels}, pull_request=pull_request)

    def _create(self, raw: dict, pull_request: bool = False) -> dict:
        number = len(self.issues) + 1
        labels = [] if self.drop_labels else [{"name": n} for n in raw.get("labels") or []]
        issue = {"number": number, "title": raw["title"], "body": raw.get("body"), "state": "open", "labels": labels}
        if pull_request:
            issue["pull_request"] = {"url": f"{self.base}/repos/{REPO}/pulls/{number}"}
        self.issues.append(issue)
        self.comments[number] = []
        return issue


class _Handler(BaseHTTPRequestHandler):
    state: GitHubStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send(self, code: int, payload: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def _fault(self) -> bool:
        s = self.state
        with s.lock:
            fault = s.faults.pop(0) if s.faults else None
        if isinstance(fault, Status):
            self._send(fault.code, {"message": "Server Error " * 50})  # a long message: the client must cut it
        elif isinstance(fault, RateLimited) and fault.primary:
            reset = str(int(time.time()) + fault.wait)
            headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}
            self._send(403, {"message": "API rate limit exceeded for installation"}, headers)
        elif isinstance(fault, RateLimited):
            self._send(429, {"message": "You have exceeded a secondary rate limit"}, {"retry-after": str(fault.wait)})
        return fault is not None

    def _route(self, method: str) -> None:
        s = self.state
        s.requests.append((method, self.path))
        body = self._body() if method in ("POST", "PATCH") else {}
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, {"message": "Bad credentials"})
        if self._fault():
            return None
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if parts[:3] != ["repos", *REPO.split("/")] or len(parts) < 4 or parts[3] != "issues":
            return self._send(404, {"message": "Not Found"})
        with s.lock:
            if len(parts) == 4:
                return self._list(parse_qs(url.query)) if method == "GET" else self._send(201, s._create(body))
            issue = next((i for i in s.issues if str(i["number"]) == parts[4]), None)
            if issue is None:
                return self._send(404, {"message": "Not Found"})
            if len(parts) == 5 and method == "PATCH":
                issue.update({k: v for k, v in body.items() if k in ("title", "body", "state", "state_reason")})
                return self._send(200, issue)
            if len(parts) == 6 and parts[5] == "comments":
                if method == "GET":
                    return self._page(s.comments[issue["number"]], parse_qs(url.query))
                s.comments[issue["number"]].append({"id": len(s.comments[issue["number"]]) + 1, "body": body["body"]})
                return self._send(201, s.comments[issue["number"]][-1])
        return self._send(404, {"message": "Not Found"})

    def _list(self, query: dict[str, list[str]]) -> None:
        state = query.get("state", ["open"])[0]
        wanted = {n for n in query.get("labels", [""])[0].split(",") if n}
        found = [
            i
            for i in self.state.issues
            if (state == "all" or i["state"] == state) and wanted <= {lab["name"] for lab in i["labels"]}
        ]
        self._page(found, query)

    def _page(self, items: list[dict], query: dict[str, list[str]]) -> None:
        size = min(int(query.get("per_page", ["30"])[0]), self.state.page_size)
        page = int(query.get("page", ["1"])[0])
        chunk = items[(page - 1) * size : page * size]
        headers = {}
        if page * size < len(items):
            rest = {k: v[0] for k, v in query.items() if k != "page"}
            q = "&".join(f"{k}={v}" for k, v in rest.items())
            headers["Link"] = f'<{self.state.base}{urlsplit(self.path).path}?{q}&page={page + 1}>; rel="next"'
        self._send(200, chunk, headers)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PATCH(self) -> None:
        self._route("PATCH")
