"""The daemon's HTTP listener (``--http ADDRESS:PORT``): hypercorn's trio
worker in the daemon's own event loop, serving the web console and
Prometheus' ``/metrics`` (:mod:`.console.app`).

By default it binds to loopback, where ``/metrics`` needs no token (the
figures hold no file data or names: counts by operation, store area and
job state).  Off loopback (an address the operator chose on purpose) every
request, ``/metrics`` included, needs a console token, and the traffic is
plain HTTP: put a TLS proxy in front.  ``metrics_auth`` (``auto``,
``token``, ``none``) overrides the rule for ``/metrics``."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import trio

from ..store.errors import InvalidArgument
from .console.api import ConsoleApi
from .console.app import HttpApp
from .console.tokens import ConsoleTokens
from .service import Service

log = logging.getLogger(__name__)

METRICS_AUTH = ("auto", "token", "none")


def parse_listen(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (an IP address or ``localhost``); InvalidArgument otherwise."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        number = int(port)
        if host != "localhost":
            ipaddress.ip_address(host)
    except ValueError:
        raise InvalidArgument(f"--http wants HOST:PORT (e.g. 127.0.0.1:8300), not {address!r}") from None
    if not sep or not 0 < number < 65536:
        raise InvalidArgument(f"--http wants HOST:PORT (e.g. 127.0.0.1:8300), not {address!r}")
    return host, number


def is_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def base_url(address: str) -> str:
    """The URL of the listener at ``address``, as a browser on this machine opens it."""
    host, port = parse_listen(address)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def loopback_hosts(port: int) -> set[str]:
    """The ``Host`` headers a loopback listener answers to."""
    return {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")}


def build_app(address: str, service: Service, tokens: ConsoleTokens, metrics_auth: str = "auto") -> HttpApp:
    host, port = parse_listen(address)
    loopback = is_loopback(host)
    if metrics_auth not in METRICS_AUTH:
        raise InvalidArgument(f"metrics_auth must be one of {', '.join(METRICS_AUTH)}, not {metrics_auth!r}")
    metrics_open = metrics_auth == "none" or (metrics_auth == "auto" and loopback)
    registry = service.metrics.registry if service.metrics is not None else None
    return HttpApp(ConsoleApi(service), tokens, registry, loopback_hosts(port) if loopback else None, metrics_open)


async def serve_http(address: str, app: HttpApp, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled."""
    from hypercorn.config import Config as HyperConfig   # only a daemon with --http needs it
    from hypercorn.trio import serve
    host, port = parse_listen(address)
    config = HyperConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("trunkfs.daemon.http.hypercorn")
    if not is_loopback(host):
        log.info("the console and /metrics listen off loopback on %s over plain HTTP: every request needs "
                 "a token; put a TLS proxy in front", address)
    log.info("serving the console and /metrics on %s", base_url(address))
    await serve(app, config, task_status=task_status)  # type: ignore[arg-type]
