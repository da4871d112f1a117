"""Events for ``trunkfs watch``: new commits and job state changes, handed to
every subscriber in the order they happen."""

from __future__ import annotations

import logging

import trio

log = logging.getLogger(__name__)


class EventBus:
    def __init__(self) -> None:
        self._watchers: set[trio.MemorySendChannel[dict]] = set()

    def publish(self, event: dict) -> None:
        """Hand an event to every watcher; a watcher that lags loses events, not us."""
        for chan in list(self._watchers):
            try:
                chan.send_nowait(event)
            except trio.WouldBlock:
                log.info("a watcher is too slow; dropping an event for it")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._watchers.discard(chan)

    def subscribe(self, size: int = 1000) -> trio.MemoryReceiveChannel[dict]:
        send, recv = trio.open_memory_channel[dict](size)
        self._watchers.add(send)
        return recv
