"""This daemon's beacon: its record in the store's ``fleet/``, written at
start and every ``BEACON_INTERVAL`` seconds while it runs
(:mod:`trunkfs.store.fleet`)."""

from __future__ import annotations

import logging

import trio

from ..store.errors import TrunkError
from ..store.fleet import BEACON_INTERVAL, Beacon
from .workers import Workers

log = logging.getLogger(__name__)


class BeaconTask:
    def __init__(self, beacon: Beacon, workers: Workers, interval: float = BEACON_INTERVAL) -> None:
        self.beacon = beacon
        self.workers = workers
        self.interval = interval

    @property
    def daemon_id(self) -> str:
        return str(self.beacon.record["id"])

    async def _beat(self) -> None:
        try:
            await self.workers.run(self.beacon.beat)
        except TrunkError as exc:   # the store is unreachable for now: the next beat tries again
            log.warning("cannot write this daemon's fleet record: %s", exc)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._beat()
        task_status.started()
        while True:
            await trio.sleep(self.interval)
            await self._beat()
