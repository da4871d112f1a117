"""The local chunk cache: plain chunk bytes on local disk, with a small memory
layer in front, shared by every open file of the mount.

Why it looks the way it does (JuiceFS-style):

* One file per chunk, ``<dir>/ab/abcdef...`` (256 subdirectories), holding the
  plain bytes.  A file is written to a temp file in ``<dir>`` and renamed into
  place, so a crash never leaves a partial chunk under a final name; ``open``
  removes temp leftovers, unknown names and files of the wrong size.  Only
  bytes that passed the store's BLAKE3 check are written, and a disk hit is
  hashed again, so a chunk damaged on local disk is refetched, never served.
* The bound is in bytes (plain lengths), least recently used first out.  The
  LRU order lives in memory and survives restarts through file mtimes:
  ``open`` sorts by mtime, hits refresh the mtime at most once per
  ``TOUCH_INTERVAL`` per entry.
* Single-flight: concurrent ``get`` calls for one chunk share one load (one
  store fetch); an error reaches every waiter and is not remembered, so a
  later ``get`` tries again.
* Blocking work runs in worker threads behind capacity limiters; a memory
  hit is answered on the event loop without a thread hop.

Threading: the memory layer, the in-flight table, the prefetch queue and the
hit counters belong to the trio thread.  The disk table (``_disk``) is shared
with the workers and guarded by ``_lock``; every rename into and unlink from
the cache directory happens under that lock too, so an eviction can never
delete a file that a concurrent install has just put under the same name.
The trio thread only peeks at ``_disk`` (a dict lookup, atomic under the GIL)
and never waits for the lock on the hot path.
"""

from __future__ import annotations

import copy
import errno
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import trio

from ..store.codec import blob_id
from ..store.store import Store

log = logging.getLogger(__name__)

DEFAULT_MEMORY_BYTES = 32 << 20
DEFAULT_LIMIT_CAP = 10 << 30  # default_cache_limit never says more than this
DEFAULT_LIMIT_SHARE = 0.10  # ... nor more than this share of the free space
TOUCH_INTERVAL = 60.0  # refresh a cache file's mtime at most this often (seconds)
TOUCH_FLUSH_PERIOD = 5.0  # how often run() records memory hits on disk
PREFETCH_QUEUE = 1024  # prefetch requests waiting; more are dropped
WRITE_BEHIND_BYTES = 64 << 20  # chunk bytes waiting to be written to cache files
TMP_PREFIX = ".tmp-"
ID_HEX_LEN = 64


def default_cache_limit(directory: str) -> int:
    """10% of the free space of the filesystem holding ``directory``, at most 10 GiB.

    ``directory`` need not exist yet: its nearest existing ancestor is asked.
    """
    path = os.path.abspath(directory)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    return int(min(free * DEFAULT_LIMIT_SHARE, DEFAULT_LIMIT_CAP))


class _DiskEntry:
    __slots__ = ("size", "stamp")

    def __init__(self, size: int, stamp: float) -> None:
        self.size = size
        self.stamp = stamp  # the file's mtime as last set or seen (wall clock)


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


def _valid_hexid(name: str) -> bool:
    if len(name) != ID_HEX_LEN:
        return False
    try:
        int(name, 16)
    except ValueError:
        return False
    return name == name.lower()


class ChunkCache:
    """Size-bounded LRU cache of plain chunk bytes on local disk plus memory."""

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
        # Foreground gets may fetch as many chunks at once again as the
        # prefetch workers, so readahead never makes a reader queue behind it.
        self._fetch_limiter = trio.CapacityLimiter(2 * max_fetches)
        self._disk_limiter = trio.CapacityLimiter(max(4, os.cpu_count() or 4))
        # shared with worker threads, under _lock
        self._lock = threading.Lock()
        self._disk: OrderedDict[bytes, _DiskEntry] = OrderedDict()
        self._disk_bytes = 0
        self._evictions = 0
        self._write_errors = 0
        self._warned_errnos: set[int] = set()
        self._corrupt = 0
        # Cache files are written behind the reader by one thread: a read
        # returns as soon as its chunk is verified.  When more than
        # WRITE_BEHIND_BYTES wait to be written, new chunks are not cached.
        self._write_behind_enabled = write_behind
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="trunkfs-cache-write")
        self._writes: set[Future] = set()
        self._wb_lock = threading.Lock()
        self._write_backlog = 0
        self._write_skipped = 0
        # trio thread only
        self._mem: OrderedDict[bytes, bytes] = OrderedDict()
        self._mem_bytes = 0
        self._touched: set[bytes] = set()
        self._inflight: dict[bytes, _Flight] = {}
        self._queued: set[bytes] = set()
        self._send, self._recv = trio.open_memory_channel(PREFETCH_QUEUE)
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
        """Scan the directory and rebuild the LRU order from file mtimes.

        Synchronous (run it in a thread).  Removes temp leftovers of a crash,
        files whose name is not a chunk id of this store and files whose size
        is not the chunk's size, then evicts down to the limit.
        """
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        t0 = time.monotonic()
        found: list[tuple[float, bytes, int]] = []
        removed = {"temp": 0, "unknown": 0, "damaged": 0}
        for entry in os.scandir(self.directory):
            if entry.name.startswith(TMP_PREFIX) and entry.is_file(follow_symlinks=False):
                self._remove_quietly(entry.path)
                removed["temp"] += 1
        for i in range(256):
            sub = os.path.join(self.directory, f"{i:02x}")
            os.makedirs(sub, mode=0o700, exist_ok=True)
            for entry in os.scandir(sub):
                kind = self._check_file(entry, sub, found)
                if kind is not None:
                    self._remove_quietly(entry.path)
                    removed[kind] += 1
        found.sort()
        victims: list[bytes] = []
        with self._lock:
            self._disk.clear()
            self._disk_bytes = 0
            for mtime, bid, size in found:
                self._disk[bid] = _DiskEntry(size, mtime)
                self._disk_bytes += size
            victims = self._evict_locked()
        if any(removed.values()):
            log.info("chunk cache %s: removed %d temp leftovers, %d unknown and %d damaged files",
                     self.directory, removed["temp"], removed["unknown"], removed["damaged"])
        log.info("chunk cache %s: %d chunks, %d of %d bytes (%d evicted to fit), scanned in %.2fs",
                 self.directory, len(self._disk), self._disk_bytes, self.limit, len(victims),
                 time.monotonic() - t0)
        self._opened = True

    def _check_file(self, entry: os.DirEntry, sub: str,
                    found: list[tuple[float, bytes, int]]) -> str | None:
        """Record a good cache file in ``found``; else say why it must go."""
        name = entry.name
        if name.startswith(TMP_PREFIX):
            return "temp"
        if not entry.is_file(follow_symlinks=False):
            return None if entry.is_dir(follow_symlinks=False) else "unknown"
        if not _valid_hexid(name) or name[:2] != os.path.basename(sub):
            return "unknown"
        bid = bytes.fromhex(name)
        loc = self.store.index.blob(bid)
        if loc is None:
            return "unknown"
        st = entry.stat(follow_symlinks=False)
        if st.st_size != loc.plain_len:
            return "damaged"
        found.append((st.st_mtime, bid, st.st_size))
        return None

    def close(self) -> None:
        """Record pending LRU touches on disk and drop the memory layer.

        The store belongs to the caller and stays open.
        """
        if self._closed:
            return
        self._closed = True
        self._writer.shutdown(wait=True)
        if self._opened:
            self._apply_touches(self._take_touched())
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
                nursery.start_soon(self._touch_loop)
                task_status.started()
        finally:
            self._running = False
            touched = self._take_touched()
            if touched and self._opened:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._apply_touches, touched,
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
            if chunk_id in self._disk:
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
        if bid in self._disk:
            data = await trio.to_thread.run_sync(self._read_disk, bid, limiter=self._disk_limiter)
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
        await trio.to_thread.run_sync(self.flush_writes)

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

    async def _touch_loop(self) -> None:
        while True:
            await trio.sleep(TOUCH_FLUSH_PERIOD)
            touched = self._take_touched()
            if touched:
                await trio.to_thread.run_sync(self._apply_touches, touched,
                                              limiter=self._disk_limiter)

    # -- worker-thread side --------------------------------------------------

    def _path(self, bid: bytes) -> str:
        h = bid.hex()
        return os.path.join(self.directory, h[:2], h)

    def _read_disk(self, bid: bytes) -> bytes | None:
        """A cached chunk's bytes, verified; None when absent or damaged."""
        with self._lock:
            entry = self._disk.get(bid)
            size = entry.size if entry is not None else -1
        if entry is None:
            return None
        path = self._path(bid)
        try:
            with open(path, "rb", buffering=0) as f:
                data = f.read()
                if len(data) == size and blob_id(data) == bid:
                    now = time.time()
                    if now - entry.stamp > TOUCH_INTERVAL:
                        os.utime(f.fileno())
                        entry.stamp = now
                    with self._lock:
                        if bid in self._disk:
                            self._disk.move_to_end(bid)
                    return data
        except FileNotFoundError:
            log.debug("cache file %s vanished; fetching from the store", path)
            with self._lock:
                self._forget_locked(bid, unlink=False)
            return None
        except OSError as exc:
            log.warning("cannot read cache file %s (%s); fetching from the store", path, exc)
            with self._lock:
                self._forget_locked(bid, unlink=True)
            return None
        log.warning("cache file %s is damaged (%d bytes, expected %d, or wrong hash); "
                    "removed, fetching from the store", path, len(data), size)
        with self._lock:
            self._corrupt += 1
            self._forget_locked(bid, unlink=True)
        return None

    def _fetch(self, bid: bytes, touched: set[bytes]) -> bytes:
        """Read a chunk from the store (verified there) and cache it on disk."""
        if touched:  # first, so that this install's eviction spares recent hits
            self._apply_touches(touched)
        data = self.store.read_blob(bid)
        if not isinstance(data, bytes):
            data = bytes(data)
        self._write_behind(bid, data)
        return data

    def _write_behind(self, bid: bytes, data: bytes) -> None:
        if not self._write_behind_enabled:
            self._try_install(bid, data)
            return
        # its own lock: _lock may be held by an install waiting on the disk
        with self._wb_lock:
            if self._write_backlog + len(data) > WRITE_BEHIND_BYTES or self._closed:
                self._write_skipped += 1
                return
            self._write_backlog += len(data)
            fut = self._writer.submit(self._try_install, bid, data)
            self._writes.add(fut)

        def done(f: Future) -> None:
            with self._wb_lock:
                self._writes.discard(f)
                self._write_backlog -= len(data)
        fut.add_done_callback(done)

    def flush_writes(self) -> None:
        """Wait until every cache file written behind a read is on disk."""
        with self._wb_lock:
            pending = list(self._writes)
        for fut in pending:
            fut.result()

    def _try_install(self, bid: bytes, data: bytes) -> None:
        """Write a cache file; a failure (disk full ...) only costs the caching."""
        if len(data) > self.limit:
            return
        try:
            self._install(bid, data)
        except OSError as exc:
            code = exc.errno or 0
            with self._lock:
                self._write_errors += 1
                first = code not in self._warned_errnos
                self._warned_errnos.add(code)
            if first:
                what = "the disk is full" if code in (errno.ENOSPC, errno.EDQUOT) else str(exc)
                log.warning("cannot write to the chunk cache %s: %s; reads go on without "
                            "caching until a write succeeds", self.directory, what)
            return
        if self._warned_errnos:
            with self._lock:
                self._warned_errnos.clear()
            log.info("chunk cache %s is writable again", self.directory)

    def _install(self, bid: bytes, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=self.directory)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            path = self._path(bid)
            with self._lock:
                os.replace(tmp, path)
                tmp = ""
                self._forget_locked(bid, unlink=False)
                self._disk[bid] = _DiskEntry(len(data), time.time())
                self._disk_bytes += len(data)
                self._evict_locked()
        finally:
            if tmp:
                self._remove_quietly(tmp)

    def _evict_locked(self) -> list[bytes]:
        """Remove least recently used files until the bound holds (under _lock)."""
        victims = []
        while self._disk_bytes > self.limit and self._disk:
            bid, entry = self._disk.popitem(last=False)
            self._disk_bytes -= entry.size
            self._evictions += 1
            victims.append(bid)
            self._remove_quietly(self._path(bid))
        return victims

    def _forget_locked(self, bid: bytes, *, unlink: bool) -> None:
        entry = self._disk.pop(bid, None)
        if entry is not None:
            self._disk_bytes -= entry.size
            if unlink:
                self._remove_quietly(self._path(bid))

    def _apply_touches(self, ids: set[bytes]) -> None:
        """Move recently hit chunks to the young end and refresh stale mtimes."""
        now = time.time()
        stale = []
        with self._lock:
            for bid in ids:
                entry = self._disk.get(bid)
                if entry is None:
                    continue
                self._disk.move_to_end(bid)
                if now - entry.stamp > TOUCH_INTERVAL:
                    entry.stamp = now
                    stale.append(bid)
        for bid in stale:
            try:
                os.utime(self._path(bid))
            except OSError:
                pass  # evicted meanwhile, or a read-only disk: only the order on restart suffers

    @staticmethod
    def _remove_quietly(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove cache file %s: %s", path, exc)

    # -- figures -------------------------------------------------------------

    def stats(self) -> dict:
        """Counters for ``trunkfs status``; cheap, takes no lock."""
        return {
            "directory": self.directory,
            "size": self._disk_bytes,
            "limit": self.limit,
            "entries": len(self._disk),
            "hits": self._memory_hits + self._disk_hits,
            "memory_hits": self._memory_hits,
            "disk_hits": self._disk_hits,
            "misses": self._misses,
            "fetches": self._fetches,
            "fetched_bytes": self._fetched_bytes,
            "prefetched": self._prefetched,
            "prefetch_dropped": self._prefetch_dropped,
            "prefetch_pending": self._pending,
            "evictions": self._evictions,
            "write_errors": self._write_errors,
            "write_skipped": self._write_skipped,
            "damaged": self._corrupt,
            "memory_bytes": self._mem_bytes,
            "memory_entries": len(self._mem),
            "memory_limit": self.memory_limit,
        }
