"""The ASGI app of the daemon's HTTP listener: the console (its page,
static files, JSON API and live events) and Prometheus' ``/metrics``.

Who asks: a console request carries a token ``trunkfs console`` issued,
in the ``trunkfs_console`` cookie (set when the browser first opens the
printed URL, ``/?token=...``, which then redirects to drop it from the
address bar) or as ``Authorization: Bearer``.  Without a valid one every
API call is 401.  ``/metrics`` needs none when ``metrics_open`` (the
default on a loopback listener).  On a loopback listener the ``Host``
header must name loopback too, so a web page elsewhere cannot reach the
console through DNS rebinding."""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ...store.errors import TrunkError
from .api import RAW_WINDOW, ApiError, ConsoleApi, ENDPOINTS, param
from .previews import image_type
from .tokens import ConsoleTokens, Holder

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

COOKIE = "trunkfs_console"
STATIC_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
EVENT_PING = 15.0          # seconds between keep-alive comments of an event stream
READABLE_TTL = 5.0         # seconds an event stream trusts what it found of a repo's permission
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; "
                                 b"img-src 'self' blob: data:; connect-src 'self'; frame-ancestors 'none'; "
                                 b"base-uri 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
UNAUTHORIZED_PAGE = (b"<!doctype html><meta charset=utf-8><title>trunkfs console</title>"
                     b"<p>This console needs a token. Run <code>trunkfs console</code> and open the "
                     b"URL it prints.</p>\n")


class HttpApp:
    def __init__(self, api: ConsoleApi | None, tokens: ConsoleTokens, registry: Any,
                 allowed_hosts: set[str] | None, metrics_open: bool) -> None:
        self.api = api
        self.tokens = tokens
        self.registry = registry
        self.allowed_hosts = allowed_hosts      # None: any Host (a listener off loopback)
        self.metrics_open = metrics_open

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.allowed_hosts is not None and headers.get("host", "").lower() not in self.allowed_hosts:
            await _reply(send, 421, b"misdirected request: this listener answers to loopback names only\n",
                         "text/plain")
            return
        path, method = scope["path"], scope["method"]
        if method not in ("GET", "HEAD"):
            await _reply(send, 405, b"method not allowed\n", "text/plain")
            return
        holder = self._holder(headers)
        if path == "/metrics":
            if not self.metrics_open and holder is None:
                await _reply(send, 401, b"a console token is needed (Authorization: Bearer)\n", "text/plain")
                return
            body = await trio.to_thread.run_sync(generate_latest, self.registry)
            await _reply(send, 200, body if method == "GET" else b"", CONTENT_TYPE_LATEST)
            return
        if self.api is None:
            await _reply(send, 404, b"not found\n", "text/plain")
            return
        params = _params(scope.get("query_string", b""))
        if path == "/":
            await self._index(send, params, holder)
        elif path.startswith("/static/"):
            await _static(send, path[len("/static/"):])
        elif path.startswith("/api/"):
            if holder is None:
                await _json(send, 401, {"error": {"code": "unauthorized", "message":
                                                  "no valid console token: run `trunkfs console`"}})
                return
            await self._api(scope, receive, send, path[len("/api/"):], params, holder)
        else:
            await _reply(send, 404, b"not found\n", "text/plain")

    def _holder(self, headers: dict[str, str]) -> Holder | None:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return self.tokens.holder(auth[7:].strip())
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return self.tokens.holder(value)
        return None

    async def _index(self, send: Send, params: dict[str, str], holder: Holder | None) -> None:
        token = params.get("token")
        if token is not None:
            if self.tokens.holder(token) is None:
                await _reply(send, 401, UNAUTHORIZED_PAGE, "text/html; charset=utf-8")
                return
            cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", b"/"), (b"set-cookie", cookie.encode()),
                                    (b"content-length", b"0"), (b"cache-control", b"no-store"),
                                    *SECURITY_HEADERS]})
            await send({"type": "http.response.body", "body": b""})
            return
        if holder is None:
            await _reply(send, 401, UNAUTHORIZED_PAGE, "text/html; charset=utf-8")
            return
        await _static(send, "index.html")

    async def _api(self, scope: dict, receive: Receive, send: Send, name: str,
                   params: dict[str, str], holder: Holder) -> None:
        assert self.api is not None
        try:
            if name == "events":
                await self._events(receive, send, holder, params)
                return
            if name == "raw":
                await self._raw(send, holder, params)
                return
            fn = ENDPOINTS.get(name)
            if fn is None:
                raise ApiError("not_found", f"no API endpoint {name!r}")
            result = await fn(self.api, holder, params)
        except ApiError as exc:
            await _json(send, exc.status, {"error": {"code": exc.code, "message": str(exc)}})
            return
        except TrunkError as exc:
            await _json(send, ApiError(exc.code, str(exc)).status,
                        {"error": {"code": exc.code, "message": str(exc)}})
            return
        await _json(send, 200, result)

    async def _raw(self, send: Send, holder: Holder, params: dict[str, str]) -> None:
        """A file's bytes: inline for an image the console previews, else a download."""
        assert self.api is not None
        api = self.api
        repo, ref, path = param(params, "repo"), param(params, "ref", "main"), param(params, "path")
        cid, entry = await api.file_at(holder, repo, ref, path)
        size = int(entry.get("size") or 0)
        first = await api.read_range(holder, repo, cid, path, 0, RAW_WINDOW)  # errors before the headers
        name = path.rstrip("/").rsplit("/", 1)[-1] or "file"
        mime = image_type(name)
        headers = [(b"content-length", str(size).encode()), (b"cache-control", b"private, max-age=60"),
                   *SECURITY_HEADERS]
        if mime is not None and params.get("download") != "1":
            headers.append((b"content-type", mime.encode()))
        else:
            quoted = urllib.parse.quote(name.encode("utf-8", "surrogateescape"), safe="")
            headers += [(b"content-type", b"application/octet-stream"),
                        (b"content-disposition", f"attachment; filename*=UTF-8''{quoted}".encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        offset, data = 0, first
        while True:
            offset += len(data)
            more = offset < size and len(data) == RAW_WINDOW
            await send({"type": "http.response.body", "body": data, "more_body": more})
            if not more:
                return
            try:
                data = await api.read_range(holder, repo, cid, path, offset, RAW_WINDOW)
            except ApiError as exc:   # the headers are gone: cut the body short, the browser sees it
                log.info("console download of %s:%s at %s stopped at byte %d: %s", repo, path, cid, offset, exc)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return

    async def _events(self, receive: Receive, send: Send, holder: Holder, params: dict[str, str]) -> None:
        """Server-sent events: new commits and job state changes of the repos
        the holder may read (``repo``: of that repo only), until the browser goes."""
        assert self.api is not None
        api = self.api
        only = params.get("repo") or None
        if only is not None and not await api.readable(holder, only):
            raise ApiError("permission_denied", f"repo {only!r}: not readable by uid {holder.uid}")
        known: dict[str, tuple[bool, float]] = {}

        async def may_read(repo: str | None) -> bool:
            if not repo:
                return False
            hit = known.get(repo)
            if hit is None or trio.current_time() - hit[1] > READABLE_TTL:
                hit = (await api.readable(holder, repo), trio.current_time())
                known[repo] = hit
            return hit[0]

        async def wanted(event: dict) -> bool:
            repos = [event.get("repo")] if event.get("type") == "commit" else \
                    [(event.get("input") or {}).get("repo"), event.get("output")]
            if only is not None and only not in repos:
                return False
            for repo in repos:
                if await may_read(repo):
                    return True
            return False
        events = api.service.events.subscribe(256)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store"),
                                *SECURITY_HEADERS]})
        await send({"type": "http.response.body", "body": b": connected\n\n", "more_body": True})
        async with trio.open_nursery() as nursery:
            async def gone() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                nursery.cancel_scope.cancel()
            nursery.start_soon(gone)
            async with events:
                while True:
                    with trio.move_on_after(EVENT_PING) as idle:
                        event = await events.receive()
                    if not self.tokens.valid(holder):     # revoked or expired: the stream ends
                        await send({"type": "http.response.body", "body": b"event: revoked\ndata: {}\n\n",
                                    "more_body": False})
                        nursery.cancel_scope.cancel()
                        return
                    if idle.cancelled_caught:
                        await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
                        continue
                    if await wanted(event):
                        body = f"event: {event.get('type', 'message')}\ndata: {_dumps(event)}\n\n"
                        await send({"type": "http.response.body", "body": body.encode(), "more_body": True})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _params(query: bytes) -> dict[str, str]:
    """The query's parameters; percent-escaped bytes that are not UTF-8 become
    PEP 383 surrogates, as names are everywhere (docs/names.md)."""
    text = query.decode("latin-1")
    return dict(urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="utf-8",
                                       errors="surrogateescape", max_num_fields=64))


def _dumps(obj: Any) -> str:
    """JSON for the browser: ASCII, so a lone surrogate travels as ``\\udcXX``."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True)


async def _json(send: Send, status: int, obj: Any) -> None:
    await _reply(send, status, _dumps(obj).encode(), "application/json", [(b"cache-control", b"no-store")])


async def _reply(send: Send, status: int, body: bytes, content_type: str,
                 extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
                            *SECURITY_HEADERS, *(extra or [])]})
    await send({"type": "http.response.body", "body": body})


async def _static(send: Send, name: str) -> None:
    """One of the files shipped in ``static/`` (names checked: no path ever leaves it)."""
    if not STATIC_NAME.match(name):
        await _reply(send, 404, b"not found\n", "text/plain")
        return
    ext = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    try:
        body = resources.files(__package__).joinpath("static", name).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        await _reply(send, 404, b"not found\n", "text/plain")
        return
    await _reply(send, 200, body, STATIC_TYPES.get(ext, "application/octet-stream"),
                 [(b"cache-control", b"no-cache")])
