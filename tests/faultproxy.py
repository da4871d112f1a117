"""A fault-injecting HTTP proxy for the S3 tests: it forwards raw HTTP/1.1
to an upstream server (moto) and, when told to, lets a request reach the
server and then drops its response (closes the client's connection without
a reply), as a network that fails after the write landed would; or holds
replies back for a while, as a slow endpoint would.

Every client connection gets its own upstream connection, so keep-alive
works; a request or response body is framed by Content-Length or chunked
encoding (a response with neither ends when the upstream closes).

Run it in a thread of the test process with :func:`running`::

    with running(s3_endpoint) as proxy:
        proxy.drop_reply("PUT", "refs/r/main", header="If-Match")
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, cast
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)


@dataclass
class DropRule:
    """Drop the reply of the next request with this method whose (unquoted)
    path contains ``path_part`` and that carries header ``header`` (any
    value; None: any request)."""

    method: str
    path_part: str
    header: str | None = None
    times: int = 1
    #: run after the reply is dropped, before the client's connection closes
    then: Callable[[], None] | None = None

    def matches(self, method: str, path: str, headers: dict[str, str]) -> bool:
        return (method == self.method and self.path_part in path
                and (self.header is None or self.header.lower() in headers))


@dataclass
class DelayRule:
    """Hold back, for ``seconds``, the replies of requests with this method
    whose (unquoted) path contains ``path_part``."""

    method: str
    path_part: str
    seconds: float

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and self.path_part in path


@dataclass
class Exchange:
    """One request the proxy forwarded, and what came of it."""

    method: str
    path: str
    headers: dict[str, str]
    status: int
    dropped: bool = False


@dataclass
class _State:
    rules: list[DropRule] = field(default_factory=list)
    delays: list[DelayRule] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stripped: set[str] = field(default_factory=set)   # request headers removed (lower case)


def _read_head(stream: IO[bytes]) -> list[bytes] | None:
    """The start line and header lines of a message, or None at a clean EOF."""
    lines: list[bytes] = []
    while True:
        line = stream.readline(65537)
        if not line:
            if lines:
                raise ConnectionError("connection closed inside a message head")
            return None
        if line in (b"\r\n", b"\n"):
            if lines:
                return lines
            continue  # tolerate blank lines between messages
        lines.append(line)


def _headers(lines: list[bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        out[name.strip().lower()] = value.strip()
    return out


def _read_body(stream: IO[bytes], headers: dict[str, str], until_close: bool) -> bytes:
    """A message body in its framing on the wire (chunked stays chunked)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            size_line = stream.readline(65537)
            if not size_line:
                raise ConnectionError("connection closed inside a chunked body")
            out += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    trailer = stream.readline(65537)
                    out += trailer
                    if trailer in (b"\r\n", b"\n", b""):
                        return bytes(out)
            out += stream.read(size + 2)
    if "content-length" in headers:
        length = int(headers["content-length"])
        data = stream.read(length)
        if len(data) != length:
            raise ConnectionError("connection closed inside a body")
        return data
    return stream.read() if until_close else b""


class FaultProxy:
    """The proxy's control side: rules to set, and what it saw."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._state = _State()
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                proxy._serve_connection(self.connection, cast(IO[bytes], self.rfile))

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy",
                                        daemon=True)

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    # -- control ---------------------------------------------------------------

    def ignore_conditions(self) -> None:
        """From now on, strip If-Match and If-None-Match from every request:
        the endpoint then behaves as one that does not enforce conditional writes."""
        with self._state.lock:
            self._state.stripped = {"if-match", "if-none-match"}

    def drop_reply(self, method: str, path_part: str, header: str | None = None,
                   times: int = 1, then: Callable[[], None] | None = None) -> None:
        """Forward the next ``times`` matching requests, then drop their
        replies; ``then`` runs after each drop (another writer's move)."""
        with self._state.lock:
            self._state.rules.append(DropRule(method, path_part, header, times, then))

    def delay_replies(self, method: str, path_part: str, seconds: float) -> None:
        """From now on, hold back every reply to a matching request for
        ``seconds`` (the request reaches the server at once)."""
        with self._state.lock:
            self._state.delays.append(DelayRule(method, path_part, seconds))

    def _delay_of(self, method: str, path: str) -> float:
        with self._state.lock:
            return sum(d.seconds for d in self._state.delays if d.matches(method, path))

    def exchanges(self, method: str | None = None, path_part: str = "") -> list[Exchange]:
        """The forwarded requests so far, optionally only those matching."""
        with self._state.lock:
            return [e for e in self._state.exchanges
                    if (method is None or e.method == method) and path_part in e.path]

    @property
    def dropped(self) -> int:
        with self._state.lock:
            return sum(e.dropped for e in self._state.exchanges)

    @property
    def pending_rules(self) -> int:
        with self._state.lock:
            return sum(r.times for r in self._state.rules)

    def _take_rule(self, method: str, path: str, headers: dict[str, str]) -> DropRule | None:
        with self._state.lock:
            for rule in self._state.rules:
                if rule.matches(method, path, headers):
                    rule.times -= 1
                    if rule.times == 0:
                        self._state.rules.remove(rule)
                    return rule
        return None

    # -- forwarding ------------------------------------------------------------

    def _serve_connection(self, client: socket.socket, rfile: IO[bytes]) -> None:
        with contextlib.ExitStack() as stack:
            upstream: socket.socket | None = None
            up_rfile: IO[bytes] | None = None
            while True:
                try:
                    head = _read_head(rfile)
                    if head is None:
                        return
                    headers = _headers(head)
                    if headers.get("expect", "").lower() == "100-continue":
                        # answer it here, so the body comes before we forward
                        client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                        head = [line for line in head
                                if not line.lower().startswith(b"expect:")]
                    body = _read_body(rfile, headers, until_close=False)
                except (ConnectionError, OSError, ValueError):
                    return
                with self._state.lock:
                    stripped = set(self._state.stripped)
                if stripped:
                    head = [head[0]] + [line for line in head[1:]
                                        if line.split(b":", 1)[0].strip().lower().decode("latin-1")
                                        not in stripped]
                method, target = head[0].decode("latin-1").split()[:2]
                path = unquote(urlsplit(target).path)
                drop = self._take_rule(method, path, headers)
                if upstream is None:
                    upstream = stack.enter_context(socket.create_connection(self.upstream, 30))
                    up_rfile = stack.enter_context(upstream.makefile("rb"))
                assert up_rfile is not None
                try:
                    upstream.sendall(b"".join(head) + b"\r\n" + body)
                    reply_head = _read_head(up_rfile)
                    if reply_head is None:
                        return
                    reply_headers = _headers(reply_head)
                    status = int(reply_head[0].split()[1])
                    no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
                    reply_body = b"" if no_body else _read_body(
                        up_rfile, reply_headers, until_close=True)
                except (ConnectionError, OSError, ValueError) as exc:
                    log.info("fault proxy: upstream failed for %s %s: %s", method, path, exc)
                    return
                with self._state.lock:
                    self._state.exchanges.append(
                        Exchange(method, path, headers, status, drop is not None))
                if drop is not None:
                    log.info("fault proxy: dropped the %d reply to %s %s", status, method, path)
                    if drop.then is not None:
                        drop.then()
                    with contextlib.suppress(OSError):
                        client.shutdown(socket.SHUT_RDWR)
                    return
                delay = self._delay_of(method, path)
                if delay:
                    time.sleep(delay)
                try:
                    client.sendall(b"".join(reply_head) + b"\r\n" + reply_body)
                except OSError:
                    return
                if reply_headers.get("connection", "").lower() == "close":
                    return


@contextlib.contextmanager
def running(upstream: str) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` in front of ``upstream``, serving in a thread
    until the block ends."""
    proxy = FaultProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.close()
