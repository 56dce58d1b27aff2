"""One line for a network failure: which host, and why, instead of requests' and urllib3's nested reprs.

requests wraps urllib3's MaxRetryError, which wraps a NewConnectionError, which was raised from the socket's
own error: printed as it is, a refused connection is four lines' worth of `HTTPConnectionPool(host=...)`.
The cause that matters is at the bottom of that chain; `summary` finds it and says it in one line, e.g.
`cannot reach 127.0.0.1:9: connection refused`. `unresolvable` tells the retry policy that the host name
does not resolve, which another attempt a second later will not change.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

_MAX = 200  # characters: a message stays one bounded line whatever the exception carries


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything below it: __cause__, __context__, urllib3's `.reason`, exceptions in `.args`."""
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo and len(seen) < 32:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        nested = [e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ())]
        todo.extend(n for n in nested if isinstance(n, BaseException))


def _dns(exc: BaseException) -> bool:
    import urllib3.exceptions

    return isinstance(exc, socket.gaierror | urllib3.exceptions.NameResolutionError)


def unresolvable(exc: BaseException) -> bool:
    """The host name does not resolve (DNS said no, or cannot say): not worth a retry."""
    return any(_dns(e) for e in causes(exc))


def _where(url: str) -> tuple[str, str]:
    """(host, host:port) of `url`, the port the connection used (80/443 when the URL names none)."""
    parts = urlsplit(url)
    host = parts.hostname or parts.netloc or url
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return host, host
    return host, f"{host}:{port}"


def _strerror(exc: BaseException) -> str:
    """An OS error's own words (`Name or service not known`), lower-cased to sit inside a sentence."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).splitlines()[0].lower()


def _rules() -> list[tuple[Callable[[BaseException], bool], Callable[[str, str, BaseException], str]]]:
    """(does this cause match, its sentence from host, host:port, the cause), most specific first."""
    import urllib3.exceptions as u3

    return [
        (lambda e: isinstance(e, socket.gaierror), lambda h, hp, e: f"cannot resolve {h}: {_strerror(e)}"),
        (lambda e: isinstance(e, u3.NameResolutionError), lambda h, hp, e: f"cannot resolve {h}"),
        (lambda e: isinstance(e, ConnectionRefusedError), lambda h, hp, e: f"cannot reach {hp}: connection refused"),
        (lambda e: isinstance(e, u3.ConnectTimeoutError), lambda h, hp, e: f"cannot reach {hp}: connect timed out"),
        (lambda e: isinstance(e, u3.ReadTimeoutError | TimeoutError), lambda h, hp, e: f"{hp}: read timed out"),
        (lambda e: isinstance(e, ConnectionResetError), lambda h, hp, e: f"{hp}: connection reset"),
        (lambda e: isinstance(e, u3.ProtocolError), lambda h, hp, e: f"{hp}: connection broken"),
        (
            lambda e: isinstance(e, OSError) and bool(e.strerror),
            lambda h, hp, e: f"cannot reach {hp}: {_strerror(e)}",
        ),
    ]


def summary(url: str, exc: BaseException) -> str:
    """One line, at most a couple of hundred characters, naming the host and the reason."""
    host, where = _where(url)
    chain = list(causes(exc))
    for matches, say in _rules():
        for e in chain:
            if matches(e):
                return say(host, where, e)[:_MAX]
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return lines[0][:_MAX]
