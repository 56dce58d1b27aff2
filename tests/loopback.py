"""A real HTTP server on 127.0.0.1 that serves files the tests make, and misbehaves on request.

Nothing in the HTTP layer is mocked: the harness talks to this server over a real socket. Faults are
queued per path and consumed one per request, so a test reads like the story it tells:
`server.fault("/w.pdparams", Drop(after=1000), Status(500))` = first request dies after 1000 bytes of
body, the second gets a 500, the third is served normally (honouring Range).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import re
import select
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass(frozen=True)
class Drop:
    """Send headers for the whole body, then `after` bytes of it, then cut the connection."""

    after: int


@dataclass(frozen=True)
class Status:
    code: int


@dataclass(frozen=True)
class IgnoreRange:
    """Answer 200 with the whole body even when the client asked for a range."""


@dataclass(frozen=True)
class Serve:
    """Serve other bytes than the registered file for this one request (e.g. a changed file)."""

    body: bytes


@dataclass(frozen=True)
class LieLength:
    """Announce a Content-Length `delta` bytes off the truth, send the real body, close."""

    delta: int


@dataclass(frozen=True)
class Stall:
    """Send headers and `after` bytes, then go silent for `seconds` or until the client hangs up (its read
    timeout fired), whichever comes first; the request records which (`hung_up`)."""

    seconds: float
    after: int = 0


@dataclass(frozen=True)
class IgnoreIfRange:
    """Honour Range even when If-Range names another version: 206 with the *current* file's tail (and its
    own ETag), the splice a careless store makes after the file changed."""


@dataclass(frozen=True)
class Gzip:
    """Send the body gzip-compressed with Content-Encoding: gzip, although the client asked for identity."""


@dataclass(frozen=True)
class Endless:
    """No Content-Length; stream bytes until the client goes away (a body that never ends)."""


@dataclass(frozen=True)
class Trickle:
    """Send the body `bps` bytes per second: slow enough to be useless, fast enough to never time out."""

    bps: int = 2


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    if_range: str | None
    status: int
    sent: int  # body bytes written
    hung_up: bool | None = None  # a Stall: did the client close the connection before the stall ran out?
    stall_over: threading.Event = field(default_factory=threading.Event)  # set once `hung_up` is known


def _hang_up_within(conn: socket.socket, seconds: float) -> bool:
    """Wait until the client closes the connection (True: a readiness signal, not a guess at its timing) or
    `seconds` pass (False)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([conn], [], [], left)[0]:
            return False
        try:
            if not conn.recv(1, socket.MSG_PEEK):
                return True  # EOF: the client closed its end
        except OSError:
            return True  # reset by the client
        time.sleep(min(left, 0.05))  # bytes from the client (not a hang-up): keep waiting
    return False


class Loopback:
    def __init__(self) -> None:
        self.files: dict[str, bytes | Path] = {}
        self.faults: dict[str, list] = defaultdict(list)
        self.requests: list[Request] = []
        self.rate: dict[str, float] = {}  # bytes per second, per path (to make downloads overlap)
        # per path: after the first 64 KiB of a body, wait until the test sets the event (at most 60 s)
        self.hold: dict[str, threading.Event] = {}
        self.redirects: dict[str, str] = {}  # path -> Location (a path redirecting to itself is a loop)
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"server_state": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, content: bytes | Path) -> str:
        self.files[path] = content
        return self.url(path)

    def fault(self, path: str, *faults) -> None:
        self.faults[path].extend(faults)

    def gets(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path and r.method == "GET"]

    def __enter__(self) -> Loopback:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    server_state: Loopback
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # a client may hang up early
            super().handle()

    def do_GET(self) -> None:
        state = self.server_state
        path = self.path.split("?")[0]
        with state._lock:
            fault = state.faults[path].pop(0) if state.faults.get(path) else None
        rec = Request("GET", path, self.headers.get("Range"), self.headers.get("If-Range"), 0, 0)
        state.requests.append(rec)
        if isinstance(fault, Status):
            return self._reply(rec, fault.code, b"injected fault\n")
        if path in state.redirects:
            rec.status = 302
            self.send_response(302)
            self.send_header("Location", state.redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path not in state.files:
            return self._reply(rec, 404, b"not found\n")
        body = state.files[path]
        body = body.read_bytes() if isinstance(body, Path) else body
        if isinstance(fault, Serve):
            body = fault.body
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if isinstance(fault, Gzip | Endless | Trickle):
            return self._misbehave(rec, fault, body, etag)
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rec.range or "")
        honour = (
            m
            and not isinstance(fault, IgnoreRange)
            and (rec.if_range in (None, etag) or isinstance(fault, IgnoreIfRange))
        )
        if honour:
            start = int(m.group(1))
            if start >= len(body):
                rec.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        chunk = body[start:]
        rec.status = 206 if honour else 200
        self.send_response(rec.status)
        lie = fault.delta if isinstance(fault, LieLength) else 0
        self.send_header("Content-Length", str(len(chunk) + lie))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if honour:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        if isinstance(fault, LieLength):
            self.wfile.write(chunk)
            rec.sent = len(chunk)
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if isinstance(fault, Stall):
            self.wfile.write(chunk[: fault.after])
            self.wfile.flush()
            rec.sent = fault.after
            rec.hung_up = _hang_up_within(self.connection, fault.seconds)
            rec.stall_over.set()
            self.close_connection = True
            return
        if isinstance(fault, Drop):
            self.wfile.write(chunk[: fault.after])
            rec.sent = min(fault.after, len(chunk))
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        rate, gate = state.rate.get(path), state.hold.get(path)
        step = 64 * 1024
        for i in range(0, len(chunk), step):
            self.wfile.write(chunk[i : i + step])
            rec.sent += len(chunk[i : i + step])
            if gate is not None and i == 0:
                self.wfile.flush()
                gate.wait(60)  # the test opens the gate when it has seen what it waits for
            if rate:
                time.sleep(step / rate)

    def _misbehave(self, rec: Request, fault, body: bytes, etag: str) -> None:
        rec.status = 200
        self.send_response(200)
        self.send_header("ETag", etag)
        if isinstance(fault, Gzip):
            data = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            rec.sent = len(data)
            return
        self.close_connection = True
        if isinstance(fault, Trickle):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if isinstance(fault, Trickle):
                for i in range(0, len(body), fault.bps):
                    self.wfile.write(body[i : i + fault.bps])
                    self.wfile.flush()
                    rec.sent += fault.bps
                    time.sleep(1)
            else:
                while rec.sent < 1 << 34:  # 16 GiB: "forever" for a test, yet bounded
                    self.wfile.write(b"\0" * 65536)
                    rec.sent += 65536
        except OSError:  # the client hung up: that is the point
            return

    def _reply(self, rec: Request, code: int, body: bytes) -> None:
        rec.status = code
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
