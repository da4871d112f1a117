"""One trio scheduler pass less for every FUSE request.

pyfuse3's request loop (``pyfuse3.main``) runs a few tasks that take turns
reading ``/dev/fuse``.  Before each read a task takes pyfuse3's read lock, a
``trio.Lock``, and then waits for the descriptor to be readable.  Taking a
free trio lock is still a checkpoint: the task goes back through trio's
scheduler (an ``epoll_wait`` and a round of the run loop) before it even
waits for the descriptor.  That pass is a quarter of what a request costs
the daemon, and a small file written through a branch view takes twelve
requests (``docs/staging.md``).

pyfuse3 finds trio through its module attribute ``pyfuse3.trio``: the hook
``pyfuse3.asyncio`` uses to run it on asyncio.  :func:`lean_read_lock` puts
:data:`LEAN_TRIO` there for the time of the loop: trio itself, but for
``Lock``, which is :class:`LeanLock`, a lock that takes no checkpoint when
it is free.  The read lock is the only lock pyfuse3 makes, and everything
else of its loop (the count of waiting tasks that decides when to start or
end a task, the check that the session ended) stays as pyfuse3 wrote it.

pyfuse3 makes its read lock once per process, at the first request: the
swap must be in place before the loop starts (``mountfs.mount.serve_mount``),
and a process whose first loop ran without it keeps trio's lock.
"""

from __future__ import annotations

import contextlib
import logging
import types
from collections.abc import Iterator
from typing import Any

import pyfuse3
import trio

log = logging.getLogger(__name__)


class LeanLock:
    """A task lock for ``async with``: free, it is taken without a
    checkpoint; held, the others park until it is released (cancellation
    reaches them there).  Not reentrant, and with no owner check: what
    pyfuse3's read lock needs, not a general ``trio.Lock``."""

    __slots__ = ("held", "lot")

    def __init__(self) -> None:
        self.held = False
        self.lot = trio.lowlevel.ParkingLot()

    async def __aenter__(self) -> None:
        while self.held:
            await self.lot.park()
        self.held = True

    async def __aexit__(self, *exc_info: object) -> None:
        self.held = False
        self.lot.unpark()


class LeanTrio(types.ModuleType):
    """The trio module, but for its ``Lock``."""

    Lock = LeanLock

    def __getattr__(self, name: str) -> Any:
        return getattr(trio, name)


LEAN_TRIO = LeanTrio("trunkfs.mountfs.fuseloop.LEAN_TRIO")


@contextlib.contextmanager
def lean_read_lock(enabled: bool = True) -> Iterator[bool]:
    """Within the block pyfuse3 runs on :data:`LEAN_TRIO` (when ``enabled``
    and pyfuse3 runs on trio itself, not on ``pyfuse3.asyncio``); yields
    whether it does.  pyfuse3's trio is back afterwards."""
    current = getattr(pyfuse3, "trio", None)
    if not enabled or current is not trio:
        yield False
        return
    setattr(pyfuse3, "trio", LEAN_TRIO)
    try:
        yield True
    finally:
        setattr(pyfuse3, "trio", current)
