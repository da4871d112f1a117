"""Blocking work off the event loop: store calls (RocksDB, file and network
I/O, hashing) run in worker threads under a CapacityLimiter.

The daemon has two of them (daemon/wiring.py): ``workers`` for the mount's
operations and the socket's quick calls, and ``bulk`` for work whose size a
client chooses (the ingest of ``put``, the stream of ``get``, commits,
``fsck``).  However many large transfers run, the mount and a ``trunkfs ls``
never wait behind them.  Pipelines have a limiter of their own as well
(:class:`~trunkfs.pipelines.scheduler.JobScheduler`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")


class Workers:
    def __init__(self, threads: int = 8) -> None:
        self.limiter = trio.CapacityLimiter(threads)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a worker thread."""
        return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs),
                                             limiter=self.limiter)
