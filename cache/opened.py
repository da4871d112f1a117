"""A store opened by a process that is not a daemon: a Dask worker running
datums (:mod:`trunkfs.pipelines.remote`), or a program reading through the
``trunkfs://`` filesystem without a daemon (:mod:`trunkfs.datafs`).

Such a process opens the store from its URL with its own credentials, in a
state directory of its own: ``<base>/<store key>/slot-N``, held by an
flock for the process's life, so that several processes on one machine
never share a RocksDB index and a restarted one finds its index and chunk
cache again.  It does not list the store at open: the commits it reads
name their packs.  File bytes come through a disk cache of chunks
(:class:`~trunkfs.cache.disk.DiskCache`, verified on every hit); a
``file://`` store needs none (its packs are on this machine already).
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ..store.backends.factory import open_backend
from ..store.errors import InvalidArgument, TrunkError
from ..store.sizes import parse_size
from ..store.store import Store
from .disk import DiskCache, default_cache_limit, read_through

log = logging.getLogger(__name__)

READ_CHUNKS = 8   # chunks of a file read at once (one coalesced store read, or cache hits)

@dataclass
class StoreOptions:
    """How to open a store: the daemon's own names for these settings."""
    url: str
    s3_endpoint: str | None = None
    s3_region: str | None = None
    compression_level: int = 1
    pack_size: int = 32 << 20

    def to_json(self) -> dict:
        return {"url": self.url, "s3_endpoint": self.s3_endpoint, "s3_region": self.s3_region,
                "compression_level": self.compression_level, "pack_size": self.pack_size}

    @classmethod
    def from_json(cls, obj: dict) -> "StoreOptions":
        return cls(str(obj["url"]), obj.get("s3_endpoint"), obj.get("s3_region"),
                   int(obj.get("compression_level") or 1), int(obj.get("pack_size") or 32 << 20))

    @property
    def is_local(self) -> bool:
        return self.url.startswith("file:") or self.url.startswith("/")

    def key(self) -> str:
        seed = json.dumps([self.url, self.s3_endpoint, self.s3_region]).encode()
        return hashlib.blake2b(seed, digest_size=8).hexdigest()


def parse_cache_size(raw: str | None) -> int | None:
    """A cache bound from an environment variable (``"2G"``); None when
    absent or not a size (then the default applies)."""
    if not raw:
        return None
    try:
        return parse_size(raw)
    except InvalidArgument:
        log.warning("%r is not a size; using the default cache size", raw)
        return None


def state_dir(env: str, name: str) -> str:
    """Where a process that is not a daemon keeps its opened stores: ``$env``,
    else ``$XDG_CACHE_HOME/<name>`` (``~/.cache/<name>``)."""
    base = os.environ.get(env)
    if base:
        return os.path.abspath(base)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(cache, name)


class OpenedStore:
    """One store opened by this process, in a slot directory it holds."""

    def __init__(self, options: StoreOptions, base: str, cache_limit: int | None = None) -> None:
        self.options = options
        root = os.path.join(base, options.key())
        os.makedirs(root, mode=0o700, exist_ok=True)
        self.slot, self._lock_fd = self._take_slot(root)
        self.work_dir = os.path.join(self.slot, "work")
        shutil.rmtree(self.work_dir, ignore_errors=True)   # what the slot's last process left
        os.makedirs(self.work_dir, mode=0o700)
        backend = open_backend(options.url, s3_endpoint=options.s3_endpoint, s3_region=options.s3_region)
        tmp = os.path.join(self.slot, "tmp")
        os.makedirs(tmp, exist_ok=True)
        self.store = Store(backend, os.path.join(self.slot, "index"), tmp,
                           compression_level=options.compression_level, pack_size=options.pack_size)
        try:
            self.store.open(sync=False, create=False)   # the packs it needs come from the commits it reads
        except BaseException:
            self.store.close()
            os.close(self._lock_fd)
            raise
        self.fetched_chunks = 0      # chunks read from the store (not the cache)
        self.fetched_bytes = 0
        self.cache_hits = 0
        self.shared_chunks = 0       # chunks another thread was loading (waited for, not fetched)
        self._count_lock = threading.Lock()
        self._inflight: dict[bytes, Future] = {}
        self._ahead = ThreadPoolExecutor(2, thread_name_prefix="trunkfs-readahead")
        self.cache: DiskCache | None = None
        limit = 0 if options.is_local else (
            cache_limit if cache_limit is not None else default_cache_limit(os.path.join(self.slot, "cache")))
        if limit > 0:
            self.cache = DiskCache(self.store, os.path.join(self.slot, "cache"), limit)
            self.cache.open()
        self._closed = False
        # RocksDB aborts the process at exit when its database is still open
        # (its threads outlive the interpreter): a program that just ends closes it here
        atexit.register(self._close_at_exit)

    @staticmethod
    def _take_slot(base: str) -> tuple[str, int]:
        """The first slot directory no other process holds (flock)."""
        for n in range(1024):
            slot = os.path.join(base, f"slot-{n}")
            os.makedirs(slot, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(slot, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return slot, fd
        raise TrunkError(f"every slot under {base} is held by another process")

    def read_blobs(self, bids: list[bytes]) -> list[bytes]:
        """Several chunks: those in the disk cache from it, the others from
        the store in as few requests as their places in packs allow.  A
        chunk another thread of this process is loading is waited for, not
        fetched again (single-flight, as in the daemon's chunk cache)."""
        mine: dict[bytes, Future] = {}
        theirs: dict[bytes, Future] = {}
        with self._count_lock:
            for bid in dict.fromkeys(bids):
                flight = self._inflight.get(bid)
                if flight is None:
                    mine[bid] = self._inflight[bid] = Future()
                else:
                    theirs[bid] = flight
        found: dict[bytes, bytes] = {}
        try:
            got = read_through(self.cache, self.store, list(mine)) if mine else []
        except BaseException as exc:
            for flight in mine.values():
                flight.set_exception(exc)
            raise
        finally:
            with self._count_lock:
                for bid, flight in mine.items():
                    if self._inflight.get(bid) is flight:
                        del self._inflight[bid]
        for (bid, flight), (data, _) in zip(mine.items(), got):
            flight.set_result(data)
            found[bid] = data
        fetched = [data for data, from_store in got if from_store]
        with self._count_lock:
            self.cache_hits += len(got) - len(fetched)
            self.fetched_chunks += len(fetched)
            self.fetched_bytes += sum(map(len, fetched))
            self.shared_chunks += len(theirs)
        for bid, flight in theirs.items():
            found[bid] = flight.result()
        return [found[bid] for bid in bids]

    def read_file(self, entry: dict) -> Iterator[bytes]:
        """A file's bytes, READ_CHUNKS chunks at a time, through the chunk
        cache; the next chunks load while the caller takes these."""
        bids = [bytes.fromhex(c[0]) for c in entry.get("chunks", [])]
        groups = [bids[start:start + READ_CHUNKS] for start in range(0, len(bids), READ_CHUNKS)]
        if len(groups) < 2:
            for group in groups:
                yield from self.read_blobs(group)
            return
        pending = self._ahead.submit(self.read_blobs, groups[0])
        try:
            for nxt in groups[1:]:
                current = pending.result()
                pending = self._ahead.submit(self.read_blobs, nxt)
                yield from current
            yield from pending.result()
        finally:
            pending.cancel()

    def _close_at_exit(self) -> None:
        try:
            self.close()
        except Exception as exc:   # its directory went away under it: nothing left to keep
            log.debug("closing the store opened at %s: %s", self.slot, exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._close_at_exit)
        self._ahead.shutdown(wait=True, cancel_futures=True)
        if self.cache is not None:
            self.cache.close()
        self.store.close()
        os.close(self._lock_fd)
