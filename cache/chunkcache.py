"""The chunk cache shared by every open file of the mount: a memory layer of
plain chunk bytes in front of an optional disk layer (:mod:`.disk`), in
front of the store.

* Single-flight: concurrent ``get`` calls for one chunk share one load (one
  store fetch); an error reaches every waiter and is not remembered, so a
  later ``get`` tries again.
* Prefetch: ``run`` serves queued readahead batches with ``max_fetches``
  workers (the daemon's cap on readahead requests in flight), each batch in
  one coalesced store read; a full queue drops batches (readahead is a hint).
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
from collections.abc import Iterator

import trio

from ..store.store import Store
from .disk import DiskCache, default_cache_limit, read_through, remove_cache_files
from .readahead import BATCH_BYTES, INITIAL_WINDOW, MAX_WINDOW, SequentialReadahead

__all__ = ["ChunkCache", "default_cache_limit"]

log = logging.getLogger(__name__)

DEFAULT_MEMORY_BYTES = 96 << 20
TOUCH_FLUSH_PERIOD = 5.0  # how often run() records memory hits on disk
PREFETCH_QUEUE = 256  # readahead batches waiting; more are dropped


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
                 memory_bytes: int = DEFAULT_MEMORY_BYTES, max_fetches: int = 4,
                 readahead_bytes: int = MAX_WINDOW, request_bytes: int = BATCH_BYTES,
                 write_behind: bool = True) -> None:
        if limit_bytes < 0 or memory_bytes < 0 or max_fetches < 1 or readahead_bytes < 0 or request_bytes < 1:
            raise ValueError("cache limits and readahead must be >= 0, max_fetches and request_bytes >= 1")
        self.store = store
        self.directory = os.path.abspath(directory)
        self.limit = int(limit_bytes)
        self.memory_limit = int(memory_bytes)
        self.max_fetches = max_fetches
        # what is read ahead waits in the memory layer: the window never
        # outgrows half of it, so that it cannot evict what it fetched
        self.readahead_bytes = min(readahead_bytes, self.memory_limit // 2)
        self.request_bytes = request_bytes
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
        self._prefetch_limiter = trio.CapacityLimiter(max_fetches)
        self._send, self._recv = trio.open_memory_channel[dict[bytes, _Flight]](PREFETCH_QUEUE)
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
        self._prefetch_batches = 0
        self._delivered_bytes = 0

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
            while True:   # batches nobody will load now: their waiters load for themselves
                try:
                    self._release(self._recv.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                self._pending -= 1
            touched = self._take_touched()
            if touched and self._opened and self.disk is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self.disk.touch, touched,
                                                  limiter=self._disk_limiter)

    # -- reading -------------------------------------------------------------

    def readahead(self, ids: list[bytes], lengths: list[int]) -> SequentialReadahead | None:
        """The readahead policy for one open file of these chunks (None when
        readahead is off, or the file is one chunk): batches by pack."""
        if self.readahead_bytes < 1 or len(ids) < 2:
            return None
        index = self.store.index

        def pack_of(i: int) -> bytes | None:
            loc = index.blob(ids[i])
            return loc.pack_id if loc is not None else None
        return SequentialReadahead(lengths, initial=min(INITIAL_WINDOW, self.readahead_bytes),
                                   maximum=self.readahead_bytes, batch=self.request_bytes, group=pack_of)

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
        """Several chunks, in the order asked: memory hits at once, and every
        other one through the disk layer or in one coalesced read of the store
        (``Store.read_blobs``: neighbours in a pack in one request), each
        remembered here as :meth:`get` remembers; a chunk another task is
        loading is waited for (single-flight)."""
        if not self._opened or self._closed:
            raise RuntimeError("the chunk cache is not open")
        found: dict[bytes, bytes] = {}
        flights, theirs = self._claim(chunk_ids, found)
        if flights:
            found.update(await self._load_batch(flights, self._fetch_limiter))
        for bid in theirs:
            found[bid] = await self.get(bid)
        return [found[bid] for bid in chunk_ids]

    def plan(self, chunks: list, group: int = 8) -> Iterator[tuple[list[bytes], list[list[bytes]], int]]:
        """A whole file read in order, ``group`` chunks at a time (``get``,
        ``cat``, pipeline inputs): for each group, its chunk ids, the
        readahead batches to queue first (the mount's policy) and its bytes."""
        bids = [bytes.fromhex(c[0]) for c in chunks]
        lengths = [int(c[1]) for c in chunks]
        ahead = self.readahead(bids, lengths) if len(bids) > group else None
        offset = 0
        for start in range(0, len(bids), group):
            size = sum(lengths[start:start + group])
            batches = ahead.on_read(offset, size) if ahead is not None else []
            yield bids[start:start + group], [[bids[i] for i in b] for b in batches], size
            offset += size

    async def read_group(self, ids: list[bytes], ahead: list[list[bytes]], size: int) -> list[bytes]:
        """One group of :meth:`plan`: queue its readahead, then its chunks."""
        for batch in ahead:
            self.prefetch(batch)
        self.delivered(size)
        return await self.get_many(ids)

    def read_file_from_thread(self, entry: dict) -> Iterator[bytes]:
        """A committed file's bytes, chunk by chunk, through this cache, for
        a worker thread the trio loop started (pipeline inputs copied out of
        the store)."""
        for ids, ahead, size in self.plan(entry.get("chunks") or []):
            yield from trio.from_thread.run(self.read_group, ids, ahead, size)

    def _claim(self, chunk_ids: list[bytes], found: dict[bytes, bytes] | None) -> tuple[dict[bytes, _Flight], list[bytes]]:
        """Split ``chunk_ids`` into memory hits (put in ``found``; skipped
        when ``found`` is None), chunks another task loads, and the rest,
        for which this task now holds a flight."""
        flights: dict[bytes, _Flight] = {}
        theirs: list[bytes] = []
        for bid in dict.fromkeys(chunk_ids):
            data = self._mem.get(bid)
            if data is not None:
                if found is not None:
                    self._mem.move_to_end(bid)
                    self._memory_hits += 1
                    found[bid] = data
            elif bid in self._inflight:
                theirs.append(bid)
            else:
                flights[bid] = self._inflight[bid] = _Flight()
        return flights, theirs

    async def _load_batch(self, flights: dict[bytes, _Flight], limiter: trio.CapacityLimiter,
                          *, ahead: bool = False) -> dict[bytes, bytes]:
        """Load the chunks of ``flights`` (held by this task) in one go:
        disk hits, the rest in one coalesced store read; settle every flight.
        A reader's load counts hits and misses; a readahead's (``ahead``)
        counts what it prefetched."""
        bids = list(flights)
        got: dict[bytes, bytes] = {}
        try:
            loaded = await trio.to_thread.run_sync(self._fetch_many, bids, self._take_touched(), ahead,
                                                   limiter=limiter)
            for bid, (data, fetched) in zip(bids, loaded):
                flights[bid].data, flights[bid].source = data, "store" if fetched else "disk"
                self._remember(bid, data)
                got[bid] = data
                if fetched:
                    self._fetches += 1
                    self._fetched_bytes += len(data)
                if ahead:
                    self._prefetched += fetched
                elif fetched:
                    self._misses += 1
                else:
                    self._disk_hits += 1
            return got
        except Exception as exc:
            for flight in flights.values():
                flight.error = exc
            raise
        finally:
            for bid, flight in flights.items():
                if self._inflight.get(bid) is flight:
                    del self._inflight[bid]
                flight.done.set()

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
        """Queue chunks to load in the background as one batch (one
        coalesced store request where they neighbour in a pack); never blocks.

        Chunks in memory or loading are skipped; the others are claimed at
        once, so a reader that reaches one waits for this batch instead of
        fetching it again.  When the queue is full the batch is dropped
        (readahead is a hint).  Call from the trio thread while ``run`` runs.
        """
        if self._closed or not self._running:
            return
        flights, _ = self._claim(chunk_ids, None)
        if not flights:
            return
        try:
            self._send.send_nowait(flights)
        except trio.WouldBlock:
            self._prefetch_dropped += 1
            log.debug("prefetch queue full; dropped a readahead batch")
            self._release(flights)
            return
        self._pending += 1

    def _release(self, flights: dict[bytes, _Flight]) -> None:
        """Give up flights without loading: their waiters load for themselves."""
        for bid, flight in flights.items():
            if self._inflight.get(bid) is flight:
                del self._inflight[bid]
            flight.done.set()

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
        async for flights in self._recv:
            try:
                if self._closed:
                    self._release(flights)
                    continue
                await self._load_batch(flights, self._prefetch_limiter, ahead=True)
                self._prefetch_batches += 1
            except Exception as exc:  # the reader's own get() reports it
                log.debug("readahead of %d chunks failed: %s", len(flights), exc)
            finally:
                self._release(flights)   # no-op when loaded; cancelled: waiters load themselves
                self._pending -= 1
                if self._pending == 0 and self._idle is not None:
                    self._idle.set()

    def delivered(self, nbytes: int) -> None:
        """Count bytes handed to a reader (against the bytes fetched)."""
        self._delivered_bytes += nbytes

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

    def _fetch_many(self, bids: list[bytes], touched: set[bytes], ahead: bool) -> list[tuple[bytes, bool]]:
        """Chunks through the disk layer, each with whether it came from the store."""
        if self.disk is not None and touched:
            self.disk.touch(touched)
        return read_through(self.disk, self.store, bids, ahead=ahead)

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
            "prefetch_batches": self._prefetch_batches,
            "delivered_bytes": self._delivered_bytes,
            "evictions": disk["evictions"],
            "write_errors": disk["write_errors"],
            "write_skipped": disk["write_skipped"],
            "damaged": disk["damaged"],
            "memory_bytes": self._mem_bytes,
            "memory_entries": len(self._mem),
            "memory_limit": self.memory_limit,
        }
