"""The chunk cache shared by every open file of the mount: a memory layer of
plain chunk bytes in front of an optional disk layer (:mod:`.disk`), in
front of the store.

* Single-flight: concurrent ``get`` calls for one chunk share one load (one
  store fetch); an error reaches every waiter and is not remembered, so a
  later ``get`` tries again.
* Prefetch: ``run`` serves queued readahead requests with ``max_fetches``
  workers; a full queue drops requests (readahead is a hint).
* Blocking work runs in worker threads behind capacity limiters; a memory
  hit is answered on the event loop without a thread hop.
* The disk layer exists only when ``limit_bytes`` is above 0.  Without it
  nothing is written to disk: no cache files, no writer thread (a local
  store is read as fast as cache files would be; see ``daemon.wiring``).

Threading: the memory layer, the in-flight table, the prefetch queue, the
touched set and the hit counters belong to the trio thread.  The disk
layer guards its own state.
"""

from __future__ import annotations

import copy
import logging
import os
from collections import OrderedDict

import trio

from ..store.store import Store
from .disk import DiskCache, default_cache_limit, read_through, remove_cache_files

__all__ = ["ChunkCache", "default_cache_limit"]

log = logging.getLogger(__name__)

DEFAULT_MEMORY_BYTES = 32 << 20
TOUCH_FLUSH_PERIOD = 5.0  # how often run() records memory hits on disk
PREFETCH_QUEUE = 1024  # prefetch requests waiting; more are dropped


class _Flight:
    """One load of one chunk that concurrent callers wait on."""

    __slots__ = ("done", "data", "source", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.data: bytes | None = None
        self.source = ""  # "disk" or "store"
        self.error: Exception | None = None


def _fresh(error: Exception) -> Exception:
    """A copy of ``error`` for one more waiter, so that tracebacks do not pile
    up on one shared exception object."""
    try:
        return copy.copy(error)
    except Exception:  # an exception type that cannot be copied
        return error


class ChunkCache:
    """Chunk bytes from memory, from local disk (when ``limit_bytes`` > 0) or
    from the store.

    ``write_behind`` (the default) writes cache files in the disk layer's own
    thread after a read returns; off, the fetching thread writes them.
    """

    def __init__(self, store: Store, directory: str, limit_bytes: int, *,
                 memory_bytes: int = DEFAULT_MEMORY_BYTES, max_fetches: int = 8,
                 write_behind: bool = True) -> None:
        if limit_bytes < 0 or memory_bytes < 0 or max_fetches < 1:
            raise ValueError("cache limits must be >= 0 and max_fetches >= 1")
        self.store = store
        self.directory = os.path.abspath(directory)
        self.limit = int(limit_bytes)
        self.memory_limit = int(memory_bytes)
        self.max_fetches = max_fetches
        self.disk: DiskCache | None = (
            DiskCache(store, self.directory, self.limit, write_behind=write_behind)
            if self.limit > 0 else None)
        # Foreground gets may fetch as many chunks at once again as the
        # prefetch workers, so readahead never makes a reader queue behind it.
        self._fetch_limiter = trio.CapacityLimiter(2 * max_fetches)
        self._disk_limiter = trio.CapacityLimiter(max(4, os.cpu_count() or 4))
        self._mem: OrderedDict[bytes, bytes] = OrderedDict()
        self._mem_bytes = 0
        self._touched: set[bytes] = set()
        self._inflight: dict[bytes, _Flight] = {}
        self._queued: set[bytes] = set()
        self._send, self._recv = trio.open_memory_channel[bytes](PREFETCH_QUEUE)
        self._pending = 0  # prefetch requests queued or running
        self._idle: trio.Event | None = None
        self._running = False
        self._opened = False
        self._closed = False
        self._memory_hits = 0
        self._disk_hits = 0
        self._misses = 0
        self._fetches = 0
        self._fetched_bytes = 0
        self._prefetched = 0
        self._prefetch_dropped = 0

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        """Open the disk layer (scan its files, rebuild the LRU order), or,
        without one, remove what an earlier disk cache left in the directory.

        Synchronous (run it in a thread).
        """
        if self.disk is not None:
            self.disk.open()
        else:
            removed = remove_cache_files(self.directory)
            if removed:
                log.info("chunk cache %s: no disk layer; removed %d files of an earlier one",
                         self.directory, removed)
        self._opened = True

    def close(self) -> None:
        """Finish the cache files being written, record pending LRU touches on
        disk and drop the memory layer.  The store belongs to the caller and
        stays open."""
        if self._closed:
            return
        self._closed = True
        if self.disk is not None:
            self.disk.close()
            if self._opened:
                self.disk.touch(self._take_touched())
        self._mem.clear()
        self._mem_bytes = 0

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve prefetch requests (``max_fetches`` at once) and record memory
        hits in file mtimes, until cancelled."""
        if self._running:
            raise RuntimeError("ChunkCache.run is already running")
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(self.max_fetches):
                    nursery.start_soon(self._prefetch_worker)
                if self.disk is not None:
                    nursery.start_soon(self._touch_loop, self.disk)
                task_status.started()
        finally:
            self._running = False
            touched = self._take_touched()
            if touched and self._opened and self.disk is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self.disk.touch, touched,
                                                  limiter=self._disk_limiter)

    # -- reading -------------------------------------------------------------

    async def get(self, chunk_id: bytes) -> bytes:
        """The plain bytes of a chunk, from memory, local disk or the store.

        Raises the store's IntegrityError or ObjectMissing when the chunk
        cannot be read; nothing is cached then.  A full cache disk does not
        fail a read.
        """
        data = self._mem.get(chunk_id)
        if data is not None:  # fast path: no thread, no checkpoint
            self._mem.move_to_end(chunk_id)
            self._memory_hits += 1
            if self.disk is not None and chunk_id in self.disk:
                self._touched.add(chunk_id)
            return data
        if not self._opened or self._closed:
            raise RuntimeError("the chunk cache is not open")
        data, source = await self._obtain(chunk_id)
        if source == "store":
            self._misses += 1
        elif source == "disk":
            self._disk_hits += 1
        else:
            self._memory_hits += 1
        return data

    async def get_many(self, chunk_ids: list[bytes]) -> list[bytes]:
        """Several chunks, in the order asked: memory hits at once, disk hits
        read, and every other one in one coalesced read of the store
        (``Store.read_blobs``: neighbours in a pack in one request), each
        remembered here as :meth:`get` remembers; a chunk another task is
        loading is waited for (single-flight).  The socket's ``read``."""
        if not self._opened or self._closed:
            raise RuntimeError("the chunk cache is not open")
        found: dict[bytes, bytes] = {}
        mine: list[bytes] = []
        theirs: list[bytes] = []
        for bid in dict.fromkeys(chunk_ids):
            data = self._mem.get(bid)
            if data is not None:
                self._mem.move_to_end(bid)
                self._memory_hits += 1
                found[bid] = data
            elif bid in self._inflight:
                theirs.append(bid)
            else:
                mine.append(bid)
        flights = {bid: _Flight() for bid in mine}
        self._inflight.update(flights)
        try:
            if mine:
                loaded = await trio.to_thread.run_sync(self._fetch_many, mine, self._take_touched(),
                                                       limiter=self._fetch_limiter)
                for bid, (data, fetched) in zip(mine, loaded):
                    flights[bid].data, flights[bid].source = data, "store" if fetched else "disk"
                    self._remember(bid, data)
                    found[bid] = data
                    if not fetched:
                        self._disk_hits += 1
                    else:
                        self._misses += 1
                        self._fetches += 1
                        self._fetched_bytes += len(data)
        except Exception as exc:
            for flight in flights.values():
                flight.error = exc
            raise
        finally:
            for bid, flight in flights.items():
                if self._inflight.get(bid) is flight:
                    del self._inflight[bid]
                flight.done.set()
        for bid in theirs:
            found[bid] = await self.get(bid)
        return [found[bid] for bid in chunk_ids]

    async def _obtain(self, bid: bytes) -> tuple[bytes, str]:
        """Load ``bid`` once however many tasks ask at the same time."""
        while True:
            flight = self._inflight.get(bid)
            if flight is None:
                break
            await flight.done.wait()
            if flight.data is not None:
                return flight.data, flight.source
            if flight.error is not None:
                raise _fresh(flight.error)
            # the loading task was cancelled: try again, maybe as the loader
            data = self._mem.get(bid)
            if data is not None:
                return data, "memory"
        flight = self._inflight[bid] = _Flight()
        try:
            data, source = await self._load(bid)
            flight.data, flight.source = data, source
            self._remember(bid, data)
            return data, source
        except Exception as exc:
            flight.error = exc
            raise
        finally:
            if self._inflight.get(bid) is flight:
                del self._inflight[bid]
            flight.done.set()

    async def _load(self, bid: bytes) -> tuple[bytes, str]:
        disk = self.disk
        if disk is not None and bid in disk:
            data = await trio.to_thread.run_sync(disk.read, bid, limiter=self._disk_limiter)
            if data is not None:
                return data, "disk"
        touched = self._take_touched()
        data = await trio.to_thread.run_sync(self._fetch, bid, touched, limiter=self._fetch_limiter)
        self._fetches += 1
        self._fetched_bytes += len(data)
        return data, "store"

    def _remember(self, bid: bytes, data: bytes) -> None:
        """Put a chunk into the memory layer, evicting the least recently used."""
        if len(data) > self.memory_limit or bid in self._mem:
            return
        self._mem[bid] = data
        self._mem_bytes += len(data)
        while self._mem_bytes > self.memory_limit:
            _, old = self._mem.popitem(last=False)
            self._mem_bytes -= len(old)

    def _take_touched(self) -> set[bytes]:
        touched, self._touched = self._touched, set()
        return touched

    # -- prefetch ------------------------------------------------------------

    def prefetch(self, chunk_ids: list[bytes]) -> None:
        """Queue chunks to load in the background (by ``run``); never blocks.

        Chunks already in memory, loading or queued are skipped; when the
        queue is full the rest is dropped (readahead is a hint).  Call from
        the trio thread.
        """
        if self._closed:
            return
        for bid in chunk_ids:
            if bid in self._mem or bid in self._inflight or bid in self._queued:
                continue
            try:
                self._send.send_nowait(bid)
            except trio.WouldBlock:
                self._prefetch_dropped += 1
                log.debug("prefetch queue full; dropped a readahead request")
                return
            self._queued.add(bid)
            self._pending += 1

    async def wait_idle(self) -> None:
        """Return once every queued prefetch has finished and its cache file
        is written (needs ``run``)."""
        while self._pending:
            if self._idle is None or self._idle.is_set():
                self._idle = trio.Event()
            await self._idle.wait()
        if self.disk is not None:
            await trio.to_thread.run_sync(self.disk.flush_writes)

    async def _prefetch_worker(self) -> None:
        async for bid in self._recv:
            self._queued.discard(bid)
            try:
                if bid not in self._mem and not self._closed:
                    _, source = await self._obtain(bid)
                    if source == "store":
                        self._prefetched += 1
            except Exception as exc:  # the reader's own get() reports it
                log.debug("readahead of chunk %s failed: %s", bid.hex(), exc)
            finally:
                self._pending -= 1
                if self._pending == 0 and self._idle is not None:
                    self._idle.set()

    async def _touch_loop(self, disk: DiskCache) -> None:
        while True:
            await trio.sleep(TOUCH_FLUSH_PERIOD)
            touched = self._take_touched()
            if touched:
                await trio.to_thread.run_sync(disk.touch, touched, limiter=self._disk_limiter)

    # -- worker-thread side --------------------------------------------------

    def _fetch(self, bid: bytes, touched: set[bytes]) -> bytes:
        """Read a chunk from the store (verified there) and keep it on disk."""
        disk = self.disk
        if disk is not None and touched:  # first, so that this add's eviction spares recent hits
            disk.touch(touched)
        data = self.store.read_blob(bid)
        if not isinstance(data, bytes):
            data = bytes(data)
        if disk is not None:
            disk.add(bid, data)
        return data

    def _fetch_many(self, bids: list[bytes], touched: set[bytes]) -> list[tuple[bytes, bool]]:
        """Chunks through the disk layer, each with whether it came from the store."""
        if self.disk is not None and touched:
            self.disk.touch(touched)
        return read_through(self.disk, self.store, bids)

    def flush_writes(self) -> None:
        """Wait until every cache file written behind a read is on disk."""
        if self.disk is not None:
            self.disk.flush_writes()

    # -- figures -------------------------------------------------------------

    def stats(self) -> dict:
        """Counters for ``trunkfs status``; cheap, takes no lock."""
        disk = self.disk.stats() if self.disk is not None else {
            "size": 0, "entries": 0, "evictions": 0, "write_errors": 0, "write_skipped": 0,
            "damaged": 0}
        return {
            "directory": self.directory,
            "size": disk["size"],
            "limit": self.limit,
            "entries": disk["entries"],
            "hits": self._memory_hits + self._disk_hits,
            "memory_hits": self._memory_hits,
            "disk_hits": self._disk_hits,
            "misses": self._misses,
            "fetches": self._fetches,
            "fetched_bytes": self._fetched_bytes,
            "prefetched": self._prefetched,
            "prefetch_dropped": self._prefetch_dropped,
            "prefetch_pending": self._pending,
            "evictions": disk["evictions"],
            "write_errors": disk["write_errors"],
            "write_skipped": disk["write_skipped"],
            "damaged": disk["damaged"],
            "memory_bytes": self._mem_bytes,
            "memory_entries": len(self._mem),
            "memory_limit": self.memory_limit,
        }
