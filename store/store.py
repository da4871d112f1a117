"""The store facade: one object store (backend) plus its local index.

Synchronous and thread-safe; no FUSE and no trio, so scripts and tests use it
directly.  Writers go through :class:`~trunkfs.store.writer.WriteSession`;
repos, branches and commits through :mod:`trunkfs.store.refs`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor

from .backends.base import Backend
from .chunking import ChunkerParams
from .codec import Codec, blob_id
from .errors import Conflict, IntegrityError, NotFound, ObjectMissing
from .index import UNCOUNTED, Index
from .objects import EMPTY_TREE_ID, Commit, checked_entries, unchecked_entries, well_formed
from . import nametable
from .rawtree import span_count
from .treecache import DEFAULT_TREE_CACHE_BYTES, TreeCache
from .packs import TYPE_DATA, BlobLocation, pack_id_from_key, pack_key, read_pack_index
from .writer import WriteFigures, WriteSession

log = logging.getLogger(__name__)

STORE_FORMAT = 1
DEFAULT_PACK_SIZE = 32 * 1024 * 1024
RESYNC_INTERVAL = 10.0  # seconds between two listings of the store after a blob miss
CONDEMNED_PREFIX = "gc/condemned/"
DELETED_PREFIX = "gc/deleted/"   # a tombstone per pack the collector deleted
EXPIRED_PREFIX = "gc/expired/"   # a tombstone per commit the collector deleted
REPACKED_PREFIX = "gc/repacked/" # where a repacked pack's live blobs were copied to
CONDEMNED_REFRESH = 60.0   # writers read the condemned packs at least this often
CONDEMNED_CHECK = 5.0      # and at most this long before a commit names its packs
SESSION_LIMIT = 86400.0    # a write session older than the collector's default grace may not commit
COALESCE_GAP = 256 * 1024       # blobs of one pack this close are read in one request (read_blobs)
COALESCE_SPAN = 32 * 1024 * 1024   # a coalesced read covers at most this many bytes (a pack, by default)


class SessionExpired(Conflict):
    """A write session too old to commit (the collector may have deleted what it reuses)."""


def condemned_key(pack_id: bytes, when: float, grace: float) -> str:
    """The record of a condemned pack: the facts in its name, so that one
    listing reads them all."""
    return f"{CONDEMNED_PREFIX}{pack_id.hex()}.{int(when)}.{int(grace)}"


def parse_condemned(key: str) -> tuple[bytes, float, float] | None:
    try:
        hexid, when, grace = key[len(CONDEMNED_PREFIX):].split(".")
        pack = bytes.fromhex(hexid)
        return (pack, float(when), float(grace)) if len(pack) == 32 else None
    except ValueError:
        return None


class Store:
    def __init__(self, backend: Backend, index_path: str, tmp_dir: str, *,
                 compression_level: int = 1, pack_size: int = DEFAULT_PACK_SIZE,
                 threads: int | None = None,
                 tree_cache_bytes: int = DEFAULT_TREE_CACHE_BYTES) -> None:
        self.backend = backend
        self.index = Index(index_path)
        self.tmp_dir = backend.staging_dir() or tmp_dir
        os.makedirs(self.tmp_dir, exist_ok=True)
        self.codec = Codec(compression_level)
        self.pack_size = pack_size
        workers = threads or max(2, os.cpu_count() or 2)
        self.cpu_pool = ThreadPoolExecutor(workers, thread_name_prefix="trunkfs-cpu")
        self.io_pool = ThreadPoolExecutor(2 * workers, thread_name_prefix="trunkfs-io")
        self.coalesce_span = COALESCE_SPAN   # the most bytes one coalesced read (read_blobs) asks for
        self.trees = TreeCache(tree_cache_bytes)
        self._resync_lock = threading.Lock()
        self._last_resync = -RESYNC_INTERVAL
        # trees read with entries of the wrong shape, left out (for fsck)
        self.malformed_entries: dict[str, list[str]] = {}
        self.params = ChunkerParams()
        self.config: dict = {}
        # packs the collector condemned (``gc``): pack id -> (when, grace); writers
        # never reuse their blobs, and a session that refers to one past its
        # deadline may not commit
        self.condemned: dict[bytes, tuple[float, float]] = {}
        self._condemned_read = -CONDEMNED_REFRESH
        self.session_limit = SESSION_LIMIT
        self.written = WriteFigures()   # what write sessions ingested and stored (``/metrics``)

    # -- lifecycle -------------------------------------------------------------

    def open(self, sync: bool = True, create: bool = True) -> "Store":
        """Read (or, with ``create``, make) the store's config and bring the
        index up to date (unless ``sync`` is False: a reader that finds what
        it needs through the commits it reads, which name their packs)."""
        found = self.backend.get_versioned("config")
        if found is None and not create:
            raise NotFound(f"there is no trunkfs store at {self.backend.url} (it has no config object)")
        if found is None:
            self.config = {"v": STORE_FORMAT, "id": uuid.uuid4().hex, "created": time.time(),
                           "chunker": self.params.to_json()}
            self.backend.put("config", json.dumps(self.config).encode())
            log.info("initialised a new store at %s", self.backend.url)
        else:
            try:
                self.config = json.loads(found[0])
            except ValueError as exc:
                raise IntegrityError(f"store config at {self.backend.url} is not JSON") from exc
            if self.config.get("v") != STORE_FORMAT:
                raise IntegrityError(
                    f"store at {self.backend.url} has format {self.config.get('v')!r}; "
                    f"this trunkfs reads format {STORE_FORMAT}")
            self.params = ChunkerParams.from_json(self.config["chunker"])
        clean = getattr(self.backend, "clean_tmp", None)
        if clean is not None and sync:
            clean()
        if sync:
            self.sync_index()
        return self

    def close(self) -> None:
        self.cpu_pool.shutdown(wait=True)
        self.io_pool.shutdown(wait=True)
        self.index.close()
        self.backend.close()

    def session(self) -> WriteSession:
        self.refresh_condemned(CONDEMNED_CHECK)   # what the collector condemned, not to be reused
        return WriteSession(self)

    def refresh_condemned(self, max_age: float = CONDEMNED_REFRESH) -> dict[bytes, tuple[float, float]]:
        """The packs the collector condemned, read again from the store when
        the copy here is older than ``max_age`` seconds (one listing)."""
        if time.monotonic() - self._condemned_read < max_age:
            return self.condemned
        found: dict[bytes, tuple[float, float]] = {}
        for key in self.backend.list(CONDEMNED_PREFIX):
            parsed = parse_condemned(key)
            if parsed is not None:
                found[parsed[0]] = (parsed[1], parsed[2])
        self.condemned = found
        self._condemned_read = time.monotonic()
        return found

    def check_session(self, session: WriteSession) -> None:
        """Before a commit names what ``session`` stored and reused: refuse a
        session older than ``session_limit``, or one that reuses a blob of a
        pack the collector may delete by now (docs/gc.md)."""
        now = time.time()
        age = now - session.started
        if age > self.session_limit:
            raise SessionExpired(f"this write session started {age:.0f} s ago, longer than the "
                                 f"collector's grace ({self.session_limit:.0f} s): the data it reuses may "
                                 "be gone; nothing was committed, do it again")
        condemned = self.refresh_condemned(CONDEMNED_CHECK)
        for pack in session.packs_used():
            found = condemned.get(pack)
            if found is not None and now >= found[0] + found[1]:
                raise SessionExpired(f"this commit would reuse data of pack {pack.hex()[:12]}, which "
                                     "the collector may delete now; nothing was committed, do it again")

    # -- index maintenance -----------------------------------------------------

    def sync_index(self) -> dict:
        """Add to the index every pack and commit of the store it does not know."""
        t0 = time.monotonic()
        known_packs = {pid for pid, _, _ in self.index.packs()}
        in_store: set[bytes] = set()
        added_packs = 0
        for key in self.backend.list("packs/"):
            pid = pack_id_from_key(key)
            if pid is None:
                continue
            in_store.add(pid)
            if pid not in known_packs:
                try:
                    size, blobs = read_pack_index(self.backend, pid)
                except IntegrityError as exc:
                    log.error("skipping a damaged pack while indexing: %s", exc)
                    continue
                self.index.add_pack(pid, size, blobs)
                added_packs += 1
        gone = known_packs - in_store
        replacements: set[bytes] = set()
        for pid in gone:
            tomb = self.backend.get_versioned(f"{DELETED_PREFIX}{pid.hex()}")
            if tomb is not None:
                log.info("pack %s was deleted by the garbage collector", pack_key(pid))
                try:    # the packs its live blobs were copied to (a repack)
                    replacements.update(bytes.fromhex(h) for h in json.loads(tomb[0] or b"[]"))
                except (ValueError, TypeError):
                    pass
            else:
                log.error("pack %s is in the index but missing from the store %s",
                          pack_key(pid), self.backend.url)
        self.index.remove_packs(gone)
        for pid in replacements - gone:   # their blobs' entries pointed at a gone copy
            if pid in in_store:
                self._index_pack(pid, force=True)
        added_commits = 0
        for key in self.backend.list("commits/"):
            hexid = key.rsplit("/", 1)[-1]
            try:
                cid = bytes.fromhex(hexid)
            except ValueError:
                continue
            if self.index.commit(cid) is None:
                try:
                    self._load_commit(hexid)
                except (IntegrityError, NotFound) as exc:
                    log.error("skipping a damaged commit while indexing: %s", exc)
                    continue
                added_commits += 1
        took = time.monotonic() - t0
        if added_packs or added_commits:
            log.info("index: added %d packs and %d commits from the store in %.2fs",
                     added_packs, added_commits, took)
        return {"packs_added": added_packs, "commits_added": added_commits,
                "packs_missing": len(gone), "seconds": took}

    def _resync_after_miss(self) -> bool:
        """A blob no indexed pack holds: commits name their packs, so this is
        a commit written before they did, or a tree a pipeline reused from an
        unfinished job.  Index what the store holds (listing it), at most once
        per ``RESYNC_INTERVAL`` seconds; True when that ran."""
        with self._resync_lock:
            now = time.monotonic()
            if now - self._last_resync < RESYNC_INTERVAL:
                return False
            self._last_resync = now
        log.info("a blob is in no pack this daemon knows: indexing the store's packs")
        self.sync_index()
        return True

    def rebuild_index(self) -> dict:
        self.index.clear()
        self.trees.clear()
        return self.sync_index()

    # -- blobs -----------------------------------------------------------------

    def read_blob(self, bid: bytes) -> bytes:
        loc = self.index.blob(bid)
        if loc is None and self._resync_after_miss():
            loc = self.index.blob(bid)
        if loc is None:
            raise ObjectMissing(f"blob {bid.hex()} is not in any pack of {self.backend.url}")
        key = pack_key(loc.pack_id)
        try:
            stored = self.backend.get(key, loc.offset, loc.stored_len)
        except ObjectMissing:
            # the collector may have deleted the pack after copying its live
            # blobs elsewhere (a repack): index the store again, once
            if not self._resync_after_miss():
                raise
            loc = self.index.blob(bid)
            if loc is None:
                raise ObjectMissing(f"blob {bid.hex()} is not in any pack of {self.backend.url}") from None
            key = pack_key(loc.pack_id)
            stored = self.backend.get(key, loc.offset, loc.stored_len)
        if len(stored) != loc.stored_len:
            raise IntegrityError(f"pack {key} is truncated at blob {bid.hex()}")
        return self.codec.decode(stored, loc.flags, loc.plain_len, bid, f"pack {key}")

    def read_blobs(self, blob_ids: list[bytes], pool: Executor | None = None) -> list[bytes]:
        """The bytes of several blobs, verified, in the order asked.  Blobs
        that lie close together in one pack (gaps of at most COALESCE_GAP,
        runs of at most ``coalesce_span``) come in one ranged read: one request
        instead of one per chunk on S3.  With ``pool`` the runs are read at
        once.  A blob the index does not place, or a run whose pack is gone,
        is read alone (:meth:`read_blob` knows how to find it again)."""
        out: list[bytes | None] = [None] * len(blob_ids)
        placed: list[tuple[bytes, int, int, BlobLocation]] = []    # pack, offset, index, location
        alone: list[int] = []
        for i, bid in enumerate(blob_ids):
            loc = self.index.blob(bid)
            if loc is None:
                alone.append(i)
            else:
                placed.append((loc.pack_id, loc.offset, i, loc))
        placed.sort(key=lambda p: (p[0], p[1]))
        runs: list[list[tuple[bytes, int, int, BlobLocation]]] = []
        for item in placed:
            run = runs[-1] if runs else None
            if run is not None and run[0][0] == item[0]:
                start, end = run[0][1], run[-1][1] + run[-1][3].stored_len
                if item[1] - end <= COALESCE_GAP and item[1] + item[3].stored_len - start <= self.coalesce_span:
                    run.append(item)
                    continue
            runs.append([item])

        def fetch(run: list[tuple[bytes, int, int, BlobLocation]]) -> list[tuple[int, bytes]]:
            key = pack_key(run[0][0])
            start = run[0][1]
            end = max(o + loc.stored_len for _, o, _, loc in run)
            try:
                data = self.backend.get(key, start, end - start)
            except ObjectMissing:
                return [(i, self.read_blob(blob_ids[i])) for _, _, i, _ in run]
            got = []
            for _, off, i, loc in run:
                stored = data[off - start:off - start + loc.stored_len]
                if len(stored) != loc.stored_len:
                    raise IntegrityError(f"pack {key} is truncated at blob {blob_ids[i].hex()}")
                got.append((i, self.codec.decode(stored, loc.flags, loc.plain_len, blob_ids[i], f"pack {key}")))
            return got
        results = pool.map(fetch, runs) if pool is not None and len(runs) > 1 else map(fetch, runs)
        for got in results:
            for i, data in got:
                out[i] = data
        for i in alone:
            out[i] = self.read_blob(blob_ids[i])
        return [b for b in out if b is not None]

    def missing_blobs(self, blob_ids: Iterable[bytes]) -> list[bytes]:
        """Those of ``blob_ids`` that are in no pack the store still has (the
        collector deleted it): one ``stat`` per distinct pack; after a miss
        the store is indexed again once."""
        exists: dict[bytes, bool] = {}
        missing = []
        for bid in blob_ids:
            loc = self.index.blob(bid)
            if loc is not None and loc.pack_id not in exists:
                exists[loc.pack_id] = self.backend.stat(pack_key(loc.pack_id)) is not None
            if loc is None or not exists[loc.pack_id]:
                missing.append(bid)
        if missing and self._resync_after_miss():
            return self.missing_blobs(missing)
        return missing

    def iter_file(self, entry: dict) -> Iterator[bytes]:
        """Yield a file's bytes chunk by chunk, reading ahead a few chunks."""
        chunks = entry.get("chunks", [])
        ahead = 4
        futures = []
        for i, (hexid, _length) in enumerate(chunks):
            futures.append(self.io_pool.submit(self.read_blob, bytes.fromhex(hexid)))
            if i >= ahead:
                yield futures.pop(0).result()
        for fut in futures:
            yield fut.result()

    # -- trees -----------------------------------------------------------------

    def remember_tree(self, bid: bytes, entries: list[dict], encoded_len: int) -> None:
        self.trees.put(bid, entries, encoded_len)

    def cached_tree(self, tree_id: str) -> list[dict] | None:
        """A tree's entries if they are in memory (no I/O), else None."""
        bid = bytes.fromhex(tree_id)
        hit = self.trees.entries(bid)
        if hit is not None:
            return hit
        return [] if bid == EMPTY_TREE_ID else None

    def tree_index(self, tree_id: str) -> dict[str, dict]:
        """A tree's entries by name (shared: callers must not modify them),
        kept with the tree in the tree cache."""
        idx = self.cached_tree_index(tree_id)
        if idx is not None:
            return idx
        entries = self.read_tree(tree_id)
        idx = self.trees.index(bytes.fromhex(tree_id))
        # None: evicted between the read and the index (a limit below one tree): not kept
        return idx if idx is not None else {e["name"]: e for e in entries}

    def cached_tree_index(self, tree_id: str) -> dict[str, dict] | None:
        """``tree_index`` if it needs no I/O, else None (for the event loop)."""
        bid = bytes.fromhex(tree_id)
        idx = self.trees.index(bid)
        if idx is None and bid == EMPTY_TREE_ID:
            return {}
        return idx

    def unchecked_tree_entries(self, tree_id: str) -> list:
        """A tree's entries for a reader that compares them and checks
        (``entrycheck.entry_problem``) only those it uses: the checked
        entries if the tree cache holds them, else the entries as stored
        (any shape, any order), not cached."""
        entries = self.cached_tree(tree_id)
        if entries is not None:
            return entries
        return unchecked_entries(self.read_blob(bytes.fromhex(tree_id)), tree_id)

    def tree_bytes(self, tree_id: str) -> tuple[bytes, int | None]:
        """A tree's stored bytes (not cached), and the count of entries they
        split into (``rawtree``) if this machine checked the tree and it may
        be split, else None."""
        bid = bytes.fromhex(tree_id)
        raw = self.read_blob(bid)
        spans = self.index.tree_spans(bid)
        if spans == UNCOUNTED:    # checked before counts were kept: counted once now
            spans = self._mark_checked(bid, unchecked_entries(raw, tree_id))
        return raw, spans if spans is not None and spans >= 0 else None

    def tree_names(self, tree_id: str) -> nametable.NameTable:
        """The names and kinds of a tree's entries (``nametable``): from the
        tree cache, else from the index (kept when the tree was checked
        here: no read of the tree at all), else from the tree as read (and
        kept then)."""
        entries = self.cached_tree(tree_id)
        if entries is not None:
            return nametable.table_of(entries)
        bid = bytes.fromhex(tree_id)
        kept = self.index.tree_names(bid)
        table = nametable.decode(kept) if kept is not None else None
        if table is None:
            # a tree checked here before records were kept gets one now (a
            # tree checked by this read gets one with its mark)
            checked = self.index.tree_checked(bid)
            table = nametable.table_of(self.read_tree(tree_id))
            if checked:
                self.index.keep_tree_names(bid, nametable.encode(table))
        return table

    def read_tree(self, tree_id: str) -> list[dict]:
        """The entries of a tree (shared: callers must not modify them)."""
        entries = self.cached_tree(tree_id)
        if entries is None:
            bid = bytes.fromhex(tree_id)
            raw = self.read_blob(bid)
            entries = unchecked_entries(raw, tree_id)
            if not self.index.tree_checked(bid):   # checked once per machine (``Index.tree_checked``)
                dropped: list[str] = []
                entries, clean = checked_entries(entries, tree_id, dropped)
                if dropped:
                    self.malformed_entries[tree_id] = dropped
                if clean:
                    self._mark_checked(bid, entries)
            self.remember_tree(bid, entries, len(raw))
        return entries

    def trust_tree(self, tree_id: bytes, entries: list[dict]) -> None:
        """Mark a tree this daemon writes as checked if its ``entries`` (as
        encoded) pass the checks a reader makes: its first read after a
        restart then skips them."""
        if well_formed(entries):
            self._mark_checked(tree_id, entries)

    def _mark_checked(self, tree_id: bytes, entries: list[dict]) -> int | None:
        """Mark a tree whose ``entries`` are well formed as checked, with what
        is kept of it: its span count (``rawtree``, returned) and its names
        (``nametable``)."""
        spans = span_count(entries)
        self.index.mark_tree_checked(tree_id, spans, nametable.encode(nametable.table_of(entries)))
        return spans

    # -- commits ---------------------------------------------------------------

    def write_commit(self, commit: Commit) -> str:
        raw = commit.encode()
        cid = blob_id(raw)
        self.backend.put(f"commits/{cid.hex()}", raw)
        self.index.add_commit(commit.repo_id, cid, raw)
        return cid.hex()

    def cached_commit(self, commit_id: str) -> Commit | None:
        """A commit if the index holds it (no store I/O), else None."""
        try:
            raw = self.index.commit(bytes.fromhex(commit_id))
        except ValueError:
            raise NotFound(f"{commit_id!r} is not a commit id") from None
        return Commit.decode(raw, commit_id) if raw is not None else None

    def expired(self, commit_id: str) -> bool:
        """Whether the collector deleted this commit (its tombstone)."""
        return self.backend.stat(f"{EXPIRED_PREFIX}{commit_id}") is not None

    def forget_commit(self, commit_id: str) -> None:
        """Drop a deleted commit from the index."""
        commit = self.cached_commit(commit_id)
        if commit is not None:
            self.index.remove_commit(commit.repo_id, bytes.fromhex(commit_id))

    def read_commit(self, commit_id: str) -> Commit:
        return self.cached_commit(commit_id) or self._load_commit(commit_id)

    def _fetch_commit(self, commit_id: str) -> tuple[bytes, Commit]:
        key = f"commits/{commit_id}"
        try:
            raw = self.backend.get(key)
        except ObjectMissing:
            if self.expired(commit_id):
                raise NotFound(f"commit {commit_id} expired: the garbage collector deleted it (expired by "
                               "retention, or its branch was reset or its repo deleted)") from None
            raise NotFound(f"commit {commit_id} does not exist in {self.backend.url}") from None
        if blob_id(raw).hex() != commit_id:
            raise IntegrityError(f"commit object {key} fails its hash check")
        return raw, Commit.decode(raw, commit_id)

    def _load_commit(self, commit_id: str) -> Commit:
        """Read a commit this daemon's index does not hold (another daemon
        wrote it) and make its data findable: the packs it names, and those
        of its ancestors back to the first one the index holds, are indexed
        from their own pack indexes, without listing the store.  A commit
        enters the index only after its packs and its ancestors did, so a
        commit in the index can always be read."""
        raw, commit = self._fetch_commit(commit_id)
        found: list[tuple[str, bytes, Commit]] = [(commit_id, raw, commit)]
        stack = list(commit.parents)
        seen = {commit_id}
        while stack:
            cid = stack.pop()
            if cid in seen or self.index.commit(bytes.fromhex(cid)) is not None:
                continue
            seen.add(cid)
            try:
                craw, parent = self._fetch_commit(cid)
            except (NotFound, IntegrityError) as exc:   # fsck reports it; the rest stays readable
                if not self.expired(cid):                 # (history cut by retention is fine)
                    log.error("an ancestor of commit %s cannot be read: %s", commit_id[:12], exc)
                continue
            found.append((cid, craw, parent))
            stack.extend(parent.parents)
        for cid, craw, c in reversed(found):     # ancestors first
            for pack in c.packs:
                self._index_pack(bytes.fromhex(pack))
            self.index.add_commit(c.repo_id, bytes.fromhex(cid), craw)
        return commit

    def index_packs(self, pack_ids: list[str]) -> None:
        """Make the blobs of these packs (hex ids, written by any daemon) findable."""
        for pack in pack_ids:
            self._index_pack(bytes.fromhex(pack))

    def _index_pack(self, pack_id: bytes, force: bool = False) -> None:
        """Add a pack another daemon wrote to the index, from its own index
        (again, with ``force``: its blobs' entries point there afterwards)."""
        if self.index.has_pack(pack_id) and not force:
            return
        try:
            size, blobs = read_pack_index(self.backend, pack_id)
        except ObjectMissing as exc:
            tomb = self.backend.get_versioned(f"{DELETED_PREFIX}{pack_id.hex()}")
            if tomb is None:
                log.error("a pack named by a commit cannot be indexed: %s", exc)
                return
            # the collector deleted it: its live blobs, if any, are in the packs it names
            try:
                moved = [bytes.fromhex(h) for h in json.loads(tomb[0] or b"[]")]
            except (ValueError, TypeError):
                moved = []
            for pid in moved:
                if pid != pack_id:
                    self._index_pack(pid)
            return
        except IntegrityError as exc:
            log.error("a pack named by a commit cannot be indexed: %s", exc)
            return
        self.index.add_pack(pack_id, size, blobs)
        log.debug("indexed pack %s (%d blobs) written by another daemon", pack_id.hex()[:12], len(blobs))

    def commits_with_prefix(self, repo_id: str, prefix: str) -> list[str]:
        return self.index.commits_with_prefix(repo_id, prefix)

    # -- figures ---------------------------------------------------------------

    def tree_cache_stats(self) -> dict:
        """The decoded-tree caches and their limits (``trunkfs stats``):
        trees kept decoded (by estimated bytes) and trees kept indexed by name."""
        return self.trees.stats()

    def stats(self) -> dict:
        packs = list(self.index.packs())
        stored = sum(size for _, size, _ in packs)
        chunks = 0
        chunk_bytes = 0
        trees = 0
        for _, loc in self.index.blobs():
            if loc.type == TYPE_DATA:
                chunks += 1
                chunk_bytes += loc.plain_len
            else:
                trees += 1
        logical = 0
        commits = 0
        for cid in self.index.commit_ids():
            raw = self.index.commit(cid)
            if raw is not None:
                logical += Commit.decode(raw, cid.hex()).size
                commits += 1
        return {
            "store": self.backend.url,
            "logical_bytes": logical,
            "unique_bytes": chunk_bytes,
            "stored_bytes": stored,
            "dedup_ratio": round(logical / stored, 3) if stored else 0.0,
            "chunks": chunks,
            "trees": trees,
            "packs": len(packs),
            "commits": commits,
        }
