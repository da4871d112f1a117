"""The daemon's HTTP listener (``--http ADDRESS:PORT``): an ASGI app on
hypercorn's trio worker, in the daemon's own event loop.  Today it serves
Prometheus' ``/metrics``; it binds to loopback only, where the figures
need no token (they hold no file data or names: counts by operation, store
area and job state)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..store.errors import InvalidArgument
from .metrics import DaemonMetrics

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def parse_listen(address: str) -> tuple[str, int]:
    """``HOST:PORT`` of a loopback address; InvalidArgument otherwise."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        number = int(port)
        loopback = ipaddress.ip_address(host).is_loopback if host != "localhost" else True
    except ValueError:
        raise InvalidArgument(f"--http wants HOST:PORT (e.g. 127.0.0.1:8300), not {address!r}") from None
    if not sep or not 0 < number < 65536:
        raise InvalidArgument(f"--http wants HOST:PORT (e.g. 127.0.0.1:8300), not {address!r}")
    if not loopback:
        raise InvalidArgument(f"--http {address}: only a loopback address is served (the metrics carry no "
                              "token); put a proxy in front to publish them")
    return host, number


class MetricsApp:
    """The ASGI app: ``GET /metrics``; anything else is 404, other methods 405."""

    def __init__(self, metrics: DaemonMetrics) -> None:
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            await _reply(send, 404, b"not found\n", "text/plain")
        elif scope["method"] not in ("GET", "HEAD"):
            await _reply(send, 405, b"method not allowed\n", "text/plain")
        else:
            body = await trio.to_thread.run_sync(generate_latest, self.metrics.registry)
            await _reply(send, 200, body if scope["method"] == "GET" else b"", CONTENT_TYPE_LATEST)


async def _reply(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def serve_http(address: str, metrics: DaemonMetrics,
                     task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled."""
    from hypercorn.config import Config as HyperConfig   # only a daemon with --http needs it
    from hypercorn.trio import serve
    host, port = parse_listen(address)
    config = HyperConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("trunkfs.daemon.http.hypercorn")
    log.info("serving /metrics on http://%s:%d", host, port)
    await serve(MetricsApp(metrics), config, task_status=task_status)  # type: ignore[arg-type]
