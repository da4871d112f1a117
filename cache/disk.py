"""The disk layer of the chunk cache: plain chunk bytes in local files,
bounded in bytes, least recently used first out.

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
* Write-behind: cache files are written by one thread of this layer, so a
  read returns as soon as its chunk is verified.  When more than
  ``WRITE_BEHIND_BYTES`` wait to be written, new chunks are not cached.

Threading: the table of cached files (``_disk``) is shared by the worker
threads and guarded by ``_lock``; every rename into and unlink from the
cache directory happens under that lock too, so an eviction can never
delete a file that a concurrent install has just put under the same name.
``__contains__`` only peeks at the table (a dict lookup, atomic under the
GIL), so the event loop never waits for the lock on the hot path.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

from ..store.codec import blob_id
from ..store.store import Store

log = logging.getLogger(__name__)

DEFAULT_LIMIT_CAP = 10 << 30  # default_cache_limit never says more than this
DEFAULT_LIMIT_SHARE = 0.10  # ... nor more than this share of the free space
TOUCH_INTERVAL = 60.0  # refresh a cache file's mtime at most this often (seconds)
WRITE_BEHIND_BYTES = 64 << 20  # chunk bytes waiting to be written to cache files
TMP_PREFIX = ".tmp-"
ID_HEX_LEN = 64
_HEXID = re.compile(r"[0-9a-f]{64}")
_SUBDIR = re.compile(r"[0-9a-f]{2}")


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


def remove_cache_files(directory: str) -> int:
    """Remove the chunk and temp files an earlier disk cache left in
    ``directory`` (when the cache runs without a disk layer now); returns how
    many.  Touches nothing else: other names are not the cache's."""
    removed = 0
    try:
        top = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in top:
        if entry.name.startswith(TMP_PREFIX) and entry.is_file(follow_symlinks=False):
            removed += _remove_quietly(entry.path)
        elif _SUBDIR.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            for sub in os.scandir(entry.path):
                if _HEXID.fullmatch(sub.name) and sub.is_file(follow_symlinks=False):
                    removed += _remove_quietly(sub.path)
            try:
                os.rmdir(entry.path)
            except OSError:
                pass  # something else lives there: leave it
    return removed


def _remove_quietly(path: str) -> int:
    try:
        os.unlink(path)
        return 1
    except FileNotFoundError:
        return 0
    except OSError as exc:
        log.warning("cannot remove cache file %s: %s", path, exc)
        return 0


def read_through(disk: "DiskCache | None", store: Store, bids: list[bytes], *,
                 ahead: bool = False) -> list[tuple[bytes, bool]]:
    """Chunks from the disk layer where it has them, the rest in one
    coalesced read of the store (``Store.read_blobs``), kept on disk (for
    readahead, ``ahead``, waiting for room in the write-behind backlog);
    each with whether it came from the store.  In the order asked."""
    out: list[tuple[bytes, bool] | None] = [None] * len(bids)
    missing: list[int] = []
    for i, bid in enumerate(bids):
        data = disk.read(bid) if disk is not None and bid in disk else None
        if data is not None:
            out[i] = (data, False)
        else:
            missing.append(i)
    if missing:
        for i, data in zip(missing, store.read_blobs([bids[i] for i in missing], store.io_pool)):
            if disk is not None:
                disk.add(bids[i], data, wait=ahead)
            out[i] = (data, True)
    return [item for item in out if item is not None]


class _DiskEntry:
    __slots__ = ("size", "stamp")

    def __init__(self, size: int, stamp: float) -> None:
        self.size = size
        self.stamp = stamp  # the file's mtime as last set or seen (wall clock)


class DiskCache:
    """Size-bounded LRU cache of verified plain chunk bytes in local files.

    ``limit_bytes`` must be positive: a cache without a disk layer has no
    ``DiskCache`` at all.  With ``write_behind`` off, :meth:`add` writes the
    cache file in the calling thread before it returns.
    """

    def __init__(self, store: Store, directory: str, limit_bytes: int, *,
                 write_behind: bool = True) -> None:
        if limit_bytes <= 0:
            raise ValueError("a disk cache needs a limit above 0")
        self.store = store
        self.directory = os.path.abspath(directory)
        self.limit = int(limit_bytes)
        self._lock = threading.Lock()
        self._disk: OrderedDict[bytes, _DiskEntry] = OrderedDict()
        self._bytes = 0
        self._evictions = 0
        self._write_errors = 0
        self._warned_errnos: set[int] = set()
        self._damaged = 0
        self._closed = False
        # write-behind; its own lock: _lock may be held by an install waiting on the disk
        self._writer = (ThreadPoolExecutor(1, thread_name_prefix="trunkfs-cache-write")
                        if write_behind else None)
        self._writes: set[Future] = set()
        self._wb_lock = threading.Condition()
        self._backlog = 0
        self._write_skipped = 0

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
                _remove_quietly(entry.path)
                removed["temp"] += 1
        for i in range(256):
            sub = os.path.join(self.directory, f"{i:02x}")
            os.makedirs(sub, mode=0o700, exist_ok=True)
            for entry in os.scandir(sub):
                kind = self._check_file(entry, sub, found)
                if kind is not None:
                    _remove_quietly(entry.path)
                    removed[kind] += 1
        found.sort()
        with self._lock:
            self._disk.clear()
            self._bytes = 0
            for mtime, bid, size in found:
                self._disk[bid] = _DiskEntry(size, mtime)
                self._bytes += size
            victims = self._evict_locked()
        if any(removed.values()):
            log.info("chunk cache %s: removed %d temp leftovers, %d unknown and %d damaged files",
                     self.directory, removed["temp"], removed["unknown"], removed["damaged"])
        log.info("chunk cache %s: %d chunks, %d of %d bytes (%d evicted to fit), scanned in %.2fs",
                 self.directory, len(self._disk), self._bytes, self.limit, len(victims),
                 time.monotonic() - t0)

    def _check_file(self, entry: os.DirEntry, sub: str,
                    found: list[tuple[float, bytes, int]]) -> str | None:
        """Record a good cache file in ``found``; else say why it must go."""
        name = entry.name
        if name.startswith(TMP_PREFIX):
            return "temp"
        if not entry.is_file(follow_symlinks=False):
            return None if entry.is_dir(follow_symlinks=False) else "unknown"
        if not _HEXID.fullmatch(name) or name[:2] != os.path.basename(sub):
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
        """Finish the cache files being written behind; write no more."""
        with self._wb_lock:
            self._closed = True
        if self._writer is not None:
            self._writer.shutdown(wait=True)

    # -- reading and keeping ---------------------------------------------------

    def __contains__(self, bid: bytes) -> bool:
        """Whether a chunk is cached (a peek without the lock, for the event loop)."""
        return bid in self._disk

    def _path(self, bid: bytes) -> str:
        h = bid.hex()
        return os.path.join(self.directory, h[:2], h)

    def read(self, bid: bytes) -> bytes | None:
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
            self._damaged += 1
            self._forget_locked(bid, unlink=True)
        return None

    def add(self, bid: bytes, data: bytes, *, wait: bool = False) -> None:
        """Keep a verified chunk: behind the caller (write-behind), or now.

        When the backlog is full, a reader's chunk is not cached (the reader
        does not wait on the disk); with ``wait`` (readahead, which nobody
        waits on yet) the caller waits for room instead, so that what is
        read ahead is kept and the backlog stays bounded."""
        if self._writer is None:
            self._try_install(bid, data)
            return
        with self._wb_lock:
            while wait and self._backlog and self._backlog + len(data) > WRITE_BEHIND_BYTES \
                    and not self._closed:
                self._wb_lock.wait(1.0)
            if self._backlog + len(data) > WRITE_BEHIND_BYTES or self._closed:
                self._write_skipped += 1
                return
            self._backlog += len(data)
            fut = self._writer.submit(self._try_install, bid, data)
            self._writes.add(fut)

        def done(f: Future) -> None:
            with self._wb_lock:
                self._writes.discard(f)
                self._backlog -= len(data)
                self._wb_lock.notify_all()
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
        # a name of this chunk and thread (cheaper than mkstemp's random
        # tries): two threads installing one chunk never share a temp file
        tmp = os.path.join(self.directory, f"{TMP_PREFIX}{bid.hex()}-{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
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
                self._bytes += len(data)
                self._evict_locked()
        finally:
            if tmp:
                _remove_quietly(tmp)

    def _evict_locked(self) -> list[bytes]:
        """Remove least recently used files until the bound holds (under _lock)."""
        victims = []
        while self._bytes > self.limit and self._disk:
            bid, entry = self._disk.popitem(last=False)
            self._bytes -= entry.size
            self._evictions += 1
            victims.append(bid)
            _remove_quietly(self._path(bid))
        return victims

    def _forget_locked(self, bid: bytes, *, unlink: bool) -> None:
        entry = self._disk.pop(bid, None)
        if entry is not None:
            self._bytes -= entry.size
            if unlink:
                _remove_quietly(self._path(bid))

    def touch(self, ids: set[bytes]) -> None:
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

    # -- figures -------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """The disk layer's counters; cheap, takes no lock."""
        return {
            "size": self._bytes,
            "entries": len(self._disk),
            "evictions": self._evictions,
            "write_errors": self._write_errors,
            "write_skipped": self._write_skipped,
            "damaged": self._damaged,
        }
