"""``trunkfs daemon``: open the store, serve the control socket, stop cleanly.

One trio event loop; SIGTERM and SIGINT (or ``trunkfs umount``) stop it.
The state directory is locked so that two daemons never share an index.
"""

from __future__ import annotations

import fcntl
import logging
import os
import resource
import signal
import sys

import trio

from ..mountfs.mount import check_mountpoint, mount_options, serve_mount
from ..store.backends.factory import open_backend
from ..store.errors import TrunkError
from ..store.store import Store
from .config import Config
from .gctune import tune_gc
from .malloc import pin_mmap_threshold, trim
from .server import ControlServer
from .service import Service
from .wiring import build_operations, build_service

log = logging.getLogger(__name__)


def _lock_state(state: str) -> int:
    os.makedirs(state, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(state, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise TrunkError(f"another trunkfs daemon is using the state directory {state}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def open_store(config: Config) -> Store:
    backend = open_backend(config.store, s3_endpoint=config.s3_endpoint, s3_region=config.s3_region)
    os.makedirs(config.tmp_dir, exist_ok=True)
    store = Store(backend, config.index_path, config.tmp_dir,
                  compression_level=config.compression_level,
                  pack_size=config.pack_size_mib * 1024 * 1024,
                  tree_cache_bytes=config.tree_cache_bytes())
    try:
        return store.open()
    except BaseException:
        store.close()
        raise


async def serve(config: Config, store: Store) -> None:
    mountpoint = check_mountpoint(config.mount) if config.mount else None
    service = await build_service(config, store, mountpoint)
    try:
        await _serve(config, service, mountpoint)
    finally:
        service.cache.close()
        service.staging.close()


async def _serve(config: Config, service: Service, mountpoint: str | None) -> None:
    server = ControlServer(service, config.socket, config.socket_group,
                           max_per_uid=config.max_connections_per_uid,
                           idle_timeout=float(config.idle_timeout))
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.cache.run)
            if config.http:
                from .console.tokens import ConsoleTokens
                from .http import base_url, build_app, serve_http
                from .metrics import DaemonMetrics
                service.metrics = DaemonMetrics(service)
                service.console = ConsoleTokens(float(config.console_token_hours) * 3600)
                service.console_url = base_url(config.http)
                app = build_app(config.http, service, service.console, config.metrics_auth)
                await nursery.start(serve_http, config.http, app)
            await nursery.start(server.serve)
            nursery.start_soon(_trim_periodically)
            await nursery.start(service.jobs.run)
            await nursery.start(service.staging.run)
            if service.beacon is not None:
                await nursery.start(service.beacon.run)
            if service.headwatch is not None:
                await nursery.start(service.headwatch.run)
            if mountpoint is not None:
                ops = build_operations(config, service)
                if service.metrics is not None:
                    service.metrics.fuse = ops.opstats

                async def mount_then_stop(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                    await serve_mount(ops, mountpoint, mount_options(config.allow_other),
                                      lean_loop=config.request_loop == "lean", task_status=task_status)
                    nursery.cancel_scope.cancel()  # unmounted from outside: the daemon stops too
                await nursery.start(mount_then_stop)
            log.info("trunkfs daemon ready (pid %d, store %s)", os.getpid(), config.store)

            async def stop_on_request() -> None:
                await service.stop_requested.wait()
                log.info("stop requested through the control socket")
                nursery.cancel_scope.cancel()
            nursery.start_soon(stop_on_request)
            async for signum in signals:
                log.info("received %s, stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def _raise_fd_limit() -> None:
    """Open files, open handles and packs each hold a descriptor: take the
    hard limit rather than the shell's usual 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# Libraries whose DEBUG lines carry secrets: botocore logs request headers
# (Authorization, the signature, the security token) and the strings it signs.
QUIET_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")


def setup_logging(level_name: str) -> None:
    """The daemon's log on stderr at ``level_name``; the loggers of
    ``QUIET_LOGGERS`` never below INFO, so DEBUG logs no credentials."""
    level = getattr(logging, level_name.upper(), logging.INFO)
    if not isinstance(level, int):
        level = logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))


TRIM_INTERVAL = 10.0   # seconds between hand-backs of the heap's free pages


async def _trim_periodically() -> None:
    """What reads and writes freed goes back to the kernel every few
    seconds (commits trim as they end): the daemon's RSS, and the peak of
    whatever comes next, start from what it holds, not from what it once held."""
    while True:
        await trio.sleep(TRIM_INTERVAL)
        await trio.to_thread.run_sync(trim)


def run_daemon(config: Config) -> int:
    setup_logging(config.log_level)
    _raise_fd_limit()
    pin_mmap_threshold()
    tune_gc()
    try:
        lock_fd = _lock_state(config.state)
    except (TrunkError, OSError) as exc:
        log.error("%s", exc)
        return 1
    try:
        store = open_store(config)
    except (TrunkError, OSError) as exc:
        log.error("cannot open the store %s: %s", config.store, exc)
        os.close(lock_fd)
        return 1
    try:
        trio.run(serve, config, store)
    except TrunkError as exc:
        log.error("%s", exc)
        return 1
    finally:
        store.close()
        os.close(lock_fd)
    log.info("trunkfs daemon stopped")
    return 0
