"""Events for ``trunkfs watch``: new commits and job state changes, handed to
every subscriber in the order they happen."""

from __future__ import annotations

import logging

import trio

log = logging.getLogger(__name__)


class EventBus:
    def __init__(self) -> None:
        self._watchers: set[trio.MemorySendChannel[dict]] = set()
        self.subscriptions = 0    # subscribe() calls so far: the head watcher lists at a new one

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
        self.subscriptions += 1
        return recv

    def watching(self) -> bool:
        """Whether anyone listens now (watchers that hung up are dropped here)."""
        for chan in list(self._watchers):
            if chan.statistics().open_receive_channels == 0:
                self._watchers.discard(chan)
        return bool(self._watchers)
