"""A Dask worker plugin that opens the store on every worker as it joins.

A worker's first batch would otherwise pay for importing trunkfs and
opening the store (its RocksDB index, its chunk cache): a fraction of a
second that a job of short datums on fresh workers feels.  The daemon
registers this plugin when it connects, so workers that are there and
workers that join later get ready in a background thread, before their
first task.  Registering it again (another daemon, a reconnect) replaces
it under the same name.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from .remote import open_on_worker

log = logging.getLogger(__name__)

PLUGIN_NAME = "trunkfs-store"


class StoreWarmup(WorkerPlugin):
    """Opens the store named by ``options`` on a worker, in the background."""

    name = PLUGIN_NAME

    def __init__(self, options: dict) -> None:
        self.options = options

    def setup(self, worker: Any) -> None:
        threading.Thread(target=self._open, name="trunkfs-warmup", daemon=True).start()

    def _open(self) -> None:
        try:
            open_on_worker(self.options)
        except Exception as exc:   # the first batch reports it, with the worker's name
            log.warning("cannot open the trunkfs store %s on this worker: %s", self.options.get("url"), exc)
