"""Writing blobs: chunk a stream, skip what the store already has, append the
rest to packs and upload each pack once it is full.

A :class:`WriteSession` belongs to one writer (one ``put``, one commit).  Its
packs are uploaded by background threads; a pack enters the index only after
it is completely in the store, so nothing ever refers to a half-written pack.
:meth:`WriteSession.flush` waits until every pack of the session is stored;
only then may a tree or commit that refers to its blobs be written.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from .chunking import StreamChunker
from .codec import blob_id
from .objects import encode_tree
from .packs import TYPE_DATA, TYPE_TREE, PackWriter, pack_key

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger(__name__)

MAX_UPLOADS_IN_FLIGHT = 2
# blobs one pack holds at most: a pack of a million tiny files' chunks would
# hold its whole index (and the index batch that records it) in memory at once
PACK_BLOBS_MAX = 65536


class BlobSink:
    """Packs blobs of one type for one session.

    A blob of ``DIRECT_WRITE_MIN`` bytes or more (a file chunk) gets its
    range in the open pack under the lock and is copied into the file
    outside it, so the CPU pool's threads store chunks side by side: with
    the copy under the lock they took turns, and a commit of a 1 GiB file
    spent a third of each thread's time waiting for it.  A pack that
    fills up is finished and uploaded by whichever thread writes its last
    range; ``flush`` waits for every write under way."""

    DIRECT_WRITE_MIN = 64 * 1024

    def __init__(self, store: "Store", blob_type: int, packs: set[bytes] | None = None) -> None:
        self._store = store
        # the packs that hold what this sink stored or found stored (the session's)
        self.packs: set[bytes] = set() if packs is None else packs
        self._type = blob_type
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)   # notified when an add is done with its pack
        self._busy = 0           # adds between taking a pack range and being done with it
        self._writer: PackWriter | None = None
        self._pending: set[bytes] = set()
        self._uploads: list[Future] = []
        self._slots = threading.Semaphore(MAX_UPLOADS_IN_FLIGHT)
        self.new_bytes = 0
        self.new_blobs = 0
        self.offered_bytes = 0     # plain bytes of every blob added, stored anew or not

    def add(self, data: bytes | memoryview, bid: bytes | None = None) -> bytes:
        """Store ``data`` unless already stored; return its id."""
        with self._lock:
            self.offered_bytes += len(data)
        if bid is None:
            bid = blob_id(data)
        if bid in self._pending:
            return bid
        found = self._store.index.blob(bid)
        if found is not None and found.pack_id not in self._store.condemned:
            self.packs.add(found.pack_id)
            return bid      # (a blob of a condemned pack is stored anew: the collector may delete it)
        stored, flags = self._store.codec.encode(data)
        full: PackWriter | None = None
        offset = -1
        with self._lock:
            if bid in self._pending:
                return bid
            if self._writer is None:
                self._writer = PackWriter(self._store.tmp_dir)
            writer = self._writer
            if len(stored) >= self.DIRECT_WRITE_MIN:
                offset = writer.reserve(self._type, bid, len(stored), flags, len(data))
                writer.writing += 1
            else:
                writer.add(self._type, bid, stored, flags, len(data))
            self._pending.add(bid)
            self.new_bytes += len(stored)
            self.new_blobs += 1
            if writer.size >= self._store.pack_size or len(writer) >= PACK_BLOBS_MAX:
                self._writer = None
                writer.sealed = True
                if not writer.writing:
                    full = writer
            self._busy += 1
        try:
            if offset >= 0:
                full = self._write_range(writer, stored, offset)
            if full is not None:
                self._upload(full)
        finally:
            with self._lock:
                self._busy -= 1
                self._idle.notify_all()
        return bid

    def _write_range(self, writer: PackWriter, stored: bytes | memoryview,
                     offset: int) -> PackWriter | None:
        """Copy a blob into its reserved range; return the pack when it is
        sealed and this was its last range (the caller hands it on).  A
        pack whose range could not be written is removed by the last thread
        done with it, and every blob still reaching it fails."""
        error: BaseException | None = None
        try:
            writer.write_at(stored, offset)
        except BaseException as exc:
            error = exc
        with self._lock:
            writer.writing -= 1
            if error is not None and writer.failed is None:
                writer.failed = error
            last = writer.sealed and not writer.writing
            failed = writer.failed
        if failed is not None:
            if last:
                writer.abort()
            if error is not None:
                raise error
            raise _unwritten(writer, failed)
        return writer if last else None

    def _upload(self, writer: PackWriter) -> None:
        if writer.failed is not None:      # a range of it was never written
            writer.abort()
            raise _unwritten(writer, writer.failed)
        try:
            pack_id, blobs = writer.finish()
        except BaseException:   # a full disk at its last bytes: the writer is no longer ours to abort
            writer.abort()
            raise
        self._slots.acquire()
        try:
            fut = self._store.io_pool.submit(self._store_pack, writer.path, pack_id, blobs)
        except BaseException:
            self._slots.release()
            raise
        fut.add_done_callback(lambda _f: self._slots.release())
        self._uploads.append(fut)

    def _store_pack(self, path: str, pack_id: bytes, blobs: list) -> None:
        try:
            size = os.stat(path).st_size
            self._store.backend.put_file(pack_key(pack_id), path)
            self._store.index.add_pack(pack_id, size, blobs)
            self.packs.add(pack_id)
            with self._lock:   # the index answers for them now: a put of a million files keeps no set of them
                self._pending.difference_update(bid for bid, _ in blobs)
            log.debug("stored pack %s: %d blobs, %d bytes", pack_id.hex()[:12], len(blobs), size)
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def flush(self) -> None:
        """Upload the open pack and wait for every upload; raise the first error."""
        with self._lock:
            writer, self._writer = self._writer, None
            while self._busy:     # adds under way finish their ranges and hand on full packs
                self._idle.wait()
        if writer is not None:
            if len(writer):
                self._upload(writer)
            else:
                writer.abort()
        uploads, self._uploads = self._uploads, []
        error: BaseException | None = None
        for fut in uploads:
            try:
                fut.result()
            except BaseException as exc:  # keep waiting for the others
                error = error or exc
        if error is not None:
            raise error
        with self._lock:
            self._pending.clear()

    def abort(self) -> None:
        with self._lock:
            writer, self._writer = self._writer, None
            while self._busy:
                self._idle.wait()
        if writer is not None:
            writer.abort()
        for fut in self._uploads:
            try:
                fut.result()
            except BaseException:
                pass
        self._uploads = []


def _unwritten(writer: PackWriter, cause: BaseException) -> OSError:
    """The error of a blob whose pack lost another blob's range."""
    err = OSError(f"pack {writer.path} was not written: {cause}")
    err.__cause__ = cause
    return err


class WriteFigures:
    """What the write sessions of a store ingested since it was opened: the
    plain bytes of the file chunks they were given (``ingested``) and the
    compressed bytes of the blobs they stored anew (``stored``: chunks and
    trees), counted when a session's flush has them in the store.  Their
    ratio is what dedup and compression saved (the daemon's ``/metrics``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ingested = 0
        self.stored = 0

    def add(self, ingested: int, stored: int) -> None:
        with self._lock:
            self.ingested += ingested
            self.stored += stored


class FileIngest:
    """Turns one file's byte stream into its chunk list.

    Chunks are stored (hashed, compressed, packed) on the store's CPU pool
    while the caller goes on reading and cutting the stream: up to
    ``AHEAD`` chunks are in flight, their ids collected in order.  Cutting
    is on the caller's thread, so without this overlap a 2-core machine
    spent the cut and the compression one after the other."""

    AHEAD = 8      # chunks in flight (about 10 MiB of the stream at the average chunk size)

    def __init__(self, session: "WriteSession") -> None:
        self._session = session
        self._chunker = StreamChunker(session.store.params, buffer_factor=2)
        self._inflight: deque[tuple[Future, int]] = deque()
        self.chunks: list[list] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        self._process(self._chunker.feed(data))

    def finish(self) -> tuple[list[list], int]:
        views = self._chunker.finish()
        if len(views) == 1 and not self._inflight:     # a small file: no thread hop
            self.chunks.append([self._session.data.add(views[0]).hex(), len(views[0])])
        else:
            self._process(views)
        self._collect(0)
        return self.chunks, self.size

    def _process(self, views: list[bytes]) -> None:
        if not views:
            return
        add, pool = self._session.data.add, self._session.store.cpu_pool
        for view in views:
            self._inflight.append((pool.submit(add, view), len(view)))
        self._collect(self.AHEAD)

    def _collect(self, keep: int) -> None:
        """Take the ids of the oldest chunks until ``keep`` are in flight;
        on an error, wait for every chunk in flight before raising it."""
        try:
            while len(self._inflight) > keep:
                fut, n = self._inflight[0]
                bid = fut.result()
                self._inflight.popleft()
                self.chunks.append([bid.hex(), n])
        except BaseException:
            for fut, _ in self._inflight:
                fut.cancel() or fut.exception()
            self._inflight.clear()
            raise


class WriteSession:
    def __init__(self, store: "Store") -> None:
        self.store = store
        self.started = time.time()    # the collector's grace bounds how long a session may last
        self._packs: set[bytes] = set()
        self.data = BlobSink(store, TYPE_DATA, self._packs)
        self.trees = BlobSink(store, TYPE_TREE, self._packs)
        self._counted = (0, 0)    # ingested and stored bytes already added to ``store.written``

    def stored_here(self, blob_id: bytes) -> bool:
        """Whether this session stored the blob (its pack maybe not uploaded yet)."""
        return blob_id in self.data._pending or blob_id in self.trees._pending

    def read_tree(self, tree_id: str) -> list[dict]:
        """A tree's entries, also of a tree this session wrote and has not
        stored yet (its pack is stored first)."""
        cached = self.store.cached_tree(tree_id)
        if cached is not None:
            return cached
        if bytes.fromhex(tree_id) in self.trees._pending:
            self.trees.flush()
        return self.store.read_tree(tree_id)

    def packs_used(self) -> set[bytes]:
        return set(self._packs)

    def pack_ids(self) -> list[str]:
        """The packs (hex ids) of every blob this session stored or found
        stored; call after :meth:`flush`.  A commit names them, so that
        another daemon finds its blobs without listing the store."""
        return sorted(p.hex() for p in self._packs)

    def uses_packs(self, pack_ids: Iterable[str]) -> None:
        """Name packs (hex ids) this session did not write but whose blobs
        its commit refers to (a pipeline's datum outputs)."""
        self._packs.update(bytes.fromhex(p) for p in pack_ids)

    def ingest(self) -> FileIngest:
        return FileIngest(self)

    def put_bytes(self, data: bytes) -> tuple[list[list], int]:
        f = FileIngest(self)
        f.write(data)
        return f.finish()

    def put_tree(self, entries: list[dict]) -> str:
        entries = sorted(entries, key=lambda e: e["name"])  # cached as stored: by name
        raw = encode_tree(entries)
        bid = blob_id(raw)
        self.store.remember_tree(bid, entries, len(raw))
        self.store.trust_tree(bid, entries)
        return self.trees.add(raw, bid).hex()

    def flush(self) -> None:
        self.data.flush()
        self.trees.flush()
        ingested, stored = self.data.offered_bytes, self.new_bytes
        self.store.written.add(ingested - self._counted[0], stored - self._counted[1])
        self._counted = (ingested, stored)

    def abort(self) -> None:
        self.data.abort()
        self.trees.abort()

    @property
    def new_bytes(self) -> int:
        return self.data.new_bytes + self.trees.new_bytes
