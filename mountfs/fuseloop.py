"""One trio scheduler pass less for every FUSE request.

pyfuse3's request loop (``pyfuse3.main``) runs a few tasks that take turns
reading ``/dev/fuse``.  Before each read a task takes a ``trio.Lock`` and
then waits for the descriptor to be readable.  Taking an uncontended trio
lock is still a checkpoint: the task goes back through trio's scheduler
(an ``epoll_wait`` and a round of the run loop) before it even waits for
the descriptor.  That pass costs 12-15 µs of CPU on this project's
2-core test machine, a quarter of a request through a minimal pyfuse3 file
system, and a small file written through a branch view takes twelve
requests (``docs/staging.md``).

:func:`faster_waits` replaces the coroutine pyfuse3 calls for that wait,
``pyfuse3._wait_fuse_readable``, with one that keeps the same rule (one
task at a time waits on the descriptor; the others park until it has read)
without the extra pass.  The name is private to pyfuse3, so the change is
made only for the pyfuse3 versions it was read against and tested with
(:data:`KNOWN_VERSIONS`); with any other, pyfuse3's own loop runs as it is.

What the replacement does not do that pyfuse3's does: count its waiting
tasks (``active_readers``, a C attribute).  pyfuse3 uses that count to
start another task when none is waiting and to end surplus idle ones; with
it at zero it starts tasks up to ``max_tasks`` and keeps them, parked.
The session's end is seen as before: by cancellation (the daemon cancels
the loop before it unmounts), by ``ClosedResourceError`` (pyfuse3's
``terminate``), or by the read that finds the device gone (an unmount from
outside), which ends each task's loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import pyfuse3
import trio

log = logging.getLogger(__name__)

#: pyfuse3 versions whose ``_wait_fuse_readable`` and session loop this was read against
KNOWN_VERSIONS = frozenset({"3.5.0"})


def fuse_device_fds() -> set[int]:
    """The descriptors of this process open on ``/dev/fuse``."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "/dev/fuse":
                found.add(int(name))
        except OSError:     # closed meanwhile
            continue
    return found


class SingleWaiter:
    """What pyfuse3's read lock does, without its checkpoint: one task at a
    time waits for ``fd`` to be readable; the others park until it returns."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.waiting = False
        self.lot = trio.lowlevel.ParkingLot()

    async def wait(self) -> bool:
        """True when ``fd`` is readable (read it before the next checkpoint),
        False when the session ended."""
        while self.waiting:
            await self.lot.park()
        self.waiting = True
        try:
            await trio.lowlevel.wait_readable(self.fd)
        except trio.ClosedResourceError:
            log.debug("FUSE descriptor %d about to be closed", self.fd)
            return False
        finally:
            self.waiting = False
            self.lot.unpark()
        return True


@contextlib.contextmanager
def faster_waits(fds_before: set[int] | None) -> Iterator[bool]:
    """Within the block, pyfuse3's loop waits through a :class:`SingleWaiter`
    on the session's descriptor: the one ``/dev/fuse`` descriptor opened
    since ``fds_before`` was taken (call ``pyfuse3.init`` in between).
    Yields whether it does; pyfuse3's own wait is back afterwards.  With
    ``fds_before`` None, pyfuse3's loop runs as it is."""
    if fds_before is None:
        yield False
        return
    version = getattr(pyfuse3, "__version__", "?")
    original = getattr(pyfuse3, "_wait_fuse_readable", None)
    new = fuse_device_fds() - fds_before
    if version not in KNOWN_VERSIONS or original is None or len(new) != 1:
        log.info("pyfuse3 %s: its own request loop runs unchanged (new /dev/fuse descriptors: %s)",
                 version, sorted(new))
        yield False
        return
    waiter = SingleWaiter(new.pop())
    setattr(pyfuse3, "_wait_fuse_readable", waiter.wait)
    try:
        yield True
    finally:
        setattr(pyfuse3, "_wait_fuse_readable", original)
