"""The staging journal: every staged node and directory entry, in RocksDB.

Keys (bytes; repo and branch names never hold NUL):
    ``!next``                                  -> next node id (u64)
    ``n`` repo NUL branch NUL id(u64 BE)       -> node record (JSON)
    ``e`` repo NUL branch NUL dir id NUL name  -> ``C`` child id (u64 BE) base, or ``W`` base
                                                  for a whiteout; base is the signature of the
                                                  lower entry when the name was first changed
                                                  (``conflicts``: 32 hex digits, or empty)
                                                  (before bases: the bare child id, or b"")
    ``c`` repo NUL branch NUL                  -> root tree id of a commit under way
    ``d`` id(u64 BE)                           -> the bytes of a small staged file kept
                                                  inline (``datafiles``): no data file of its own
    ``x`` repo NUL branch NUL id(u64 BE)       -> the tree entry a commit under way cut for
                                                  a staged file (``EntryStash``): a commit of
                                                  a million files does not hold them in memory

A change is one write batch.  RocksDB appends every batch to its write-ahead
log with write(2) before it returns, so a killed daemon loses nothing it was
told; ``sync=True`` (fsync) also survives a power cut and is what fsync(2)
on a staged file asks for.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import struct
from collections.abc import Iterator

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from ..store.errors import BackendError
from ..store.index import scan_prefix
from ..store.rocksopts import table_options

log = logging.getLogger(__name__)

_ID = struct.Struct(">Q")
_NEXT = b"!next"
MEMTABLE_BYTES = 8 * 1024 * 1024


def area_prefix(repo: str, branch: str) -> bytes:
    return repo.encode() + b"\0" + branch.encode() + b"\0"


def _past(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (which ends in
    NUL): the end of a range delete of the prefix."""
    return prefix[:-1] + b"\x01"


class Batch:
    """The changes of one staging operation, written at once."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.batch = WriteBatch(raw_mode=True)
        self.empty = True

    def node(self, record: dict) -> None:
        self.batch.put(b"n" + self.prefix + _ID.pack(record["id"]),
                       json.dumps(record, separators=(",", ":")).encode())
        self.empty = False

    def drop_node(self, nid: int) -> None:
        self.batch.delete(b"n" + self.prefix + _ID.pack(nid))
        self.batch.delete(b"d" + _ID.pack(nid))
        self.empty = False

    def data(self, nid: int, data: bytes) -> None:
        """The bytes of a small file kept inline."""
        self.batch.put(b"d" + _ID.pack(nid), data)
        self.empty = False

    def entry(self, dir_id: int, name: str, child: int | None, base: str | None) -> None:
        key = b"e" + self.prefix + _ID.pack(dir_id) + os.fsencode(name)
        value = b"W" if child is None else b"C" + _ID.pack(child)
        self.batch.put(key, value + (base or "").encode("ascii") if base is not None else
                       value[1:])
        self.empty = False

    def drop_entry(self, dir_id: int, name: str) -> None:
        self.batch.delete(b"e" + self.prefix + _ID.pack(dir_id) + os.fsencode(name))
        self.empty = False


def _entry_value(value: bytes) -> tuple[int | None, str | None]:
    """(child id or None, base or None) of an entry's value, either layout."""
    if len(value) in (0, 8):      # written before bases
        return (_ID.unpack(value)[0] if value else None), None
    if value[:1] == b"C":
        return _ID.unpack(value[1:9])[0], value[9:].decode("ascii")
    return None, value[1:].decode("ascii")


class IdSet:
    """A set of node ids as a bitmap: ids come from one counter, so a
    million of them take 128 KiB, not the 60 MB of a Python set."""

    def __init__(self, limit: int) -> None:
        self._bits = bytearray(limit // 8 + 1)

    def add(self, nid: int) -> None:
        if nid // 8 >= len(self._bits):
            self._bits.extend(bytes(nid // 8 + 1 - len(self._bits)))
        self._bits[nid // 8] |= 1 << (nid % 8)

    def __contains__(self, nid: object) -> bool:
        if not isinstance(nid, int) or nid < 0 or nid // 8 >= len(self._bits):
            return False
        return bool(self._bits[nid // 8] & (1 << (nid % 8)))


class Journal:
    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(path, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        table_options(opts)
        # small memtables: a tar x of small files puts their bytes here
        # (``datafiles``, inline); RocksDB's 64 MiB default, twice, is memory
        # the daemon would hold for data already on disk in the log
        opts.set_write_buffer_size(MEMTABLE_BYTES)
        opts.set_max_write_buffer_number(2)
        try:
            self._db = Rdict(path, opts)
        except Exception as exc:  # rocksdict raises plain Exception
            raise BackendError(f"cannot open the staging journal at {path}: {exc}") from exc
        raw = self._db.get(_NEXT)
        self._next = _ID.unpack(raw)[0] if raw else 1
        self._reserved = self._next
        self._sync = WriteOptions()
        self._sync.sync = True

    def close(self) -> None:
        self._db.close()

    def new_id(self, batch: Batch) -> int:
        """A fresh node id; the counter is journaled in ``batch`` in steps."""
        nid = self._next
        self._next += 1
        if self._next > self._reserved:
            self._reserved = self._next + 1024
            batch.batch.put(_NEXT, _ID.pack(self._reserved))
            batch.empty = False
        return nid

    def write(self, batch: Batch, sync: bool = False) -> None:
        if batch.empty and not sync:
            return
        self.write_raw(batch.batch, sync)

    def write_raw(self, batch: WriteBatch, sync: bool = False) -> None:
        """One RocksDB write batch; a full disk is ENOSPC, any other failure a BackendError."""
        try:
            if sync:
                self._db.write(batch, self._sync)
            else:
                self._db.write(batch)
        except Exception as exc:
            if "No space left" in str(exc):
                raise OSError(errno.ENOSPC, f"the staging journal at {self.path}: no space left") from exc
            raise BackendError(f"cannot write the staging journal at {self.path}: {exc}") from exc

    def sync(self) -> None:
        """Make every journaled change durable (fsync of the write-ahead log)."""
        self._db.flush_wal(True)

    def data(self, nid: int) -> bytes:
        """The journaled bytes of a small file kept inline (b"" if none)."""
        return self._db.get(b"d" + _ID.pack(nid)) or b""

    def inline_ids(self) -> set[int]:
        """The node ids with inline bytes journaled (every area's)."""
        return {_ID.unpack(key[1:9])[0] for key, _ in self._scan(b"d")}

    def drop_inline(self, nids: set[int]) -> None:
        """Forget the inline bytes of these nodes (no staged node owns them)."""
        batch = WriteBatch(raw_mode=True)
        for nid in nids:
            batch.delete(b"d" + _ID.pack(nid))
        self._db.write(batch)

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return scan_prefix(self._db, prefix)

    def records(self, repo: str, branch: str) -> Iterator[tuple[int, dict]]:
        """Every node record of one branch's staging, one at a time."""
        for key, value in self._scan(b"n" + area_prefix(repo, branch)):
            yield _ID.unpack(key[-8:])[0], json.loads(value)

    def record_ids(self, repo: str, branch: str) -> Iterator[int]:
        """The ids of one branch's node records (none decoded)."""
        for key, _ in self._scan(b"n" + area_prefix(repo, branch)):
            yield _ID.unpack(key[-8:])[0]

    def record(self, repo: str, branch: str, nid: int) -> dict | None:
        raw = self._db.get(b"n" + area_prefix(repo, branch) + _ID.pack(nid))
        return json.loads(raw) if raw is not None else None

    def entries(self, repo: str, branch: str, dir_id: int | None = None
                ) -> Iterator[tuple[int, str, int | None, str | None]]:
        """(dir id, name, child id or None, base or None) of one staged
        directory's entries (of every directory without ``dir_id``)."""
        prefix = area_prefix(repo, branch)
        n = len(prefix) + 1
        scan = b"e" + prefix + (_ID.pack(dir_id) if dir_id is not None else b"")
        for key, value in self._scan(scan):
            yield _ID.unpack(key[n:n + 8])[0], os.fsdecode(key[n + 8:]), *_entry_value(value)

    def node_ids(self) -> "IdSet":
        """The ids of every staged node of every area."""
        ids = IdSet(self._next)
        for key, _ in self._scan(b"n"):
            ids.add(_ID.unpack(key[-8:])[0])
        return ids

    def areas(self) -> list[tuple[str, str]]:
        """Every (repo, branch) with staged nodes."""
        out: set[tuple[str, str]] = set()
        for key, _ in self._scan(b"n"):
            repo, branch, _rest = key[1:].split(b"\0", 2)
            out.add((repo.decode(), branch.decode()))
        return sorted(out)

    def mark_commit(self, repo: str, branch: str, tree: str) -> None:
        """Remember the tree a commit is about to publish: should the daemon
        die between moving the branch and clearing the staging, the next
        start sees the branch at that tree and drops the staging."""
        self._db.put(b"c" + area_prefix(repo, branch), tree.encode(), self._sync)

    def commit_mark(self, repo: str, branch: str) -> str | None:
        raw = self._db.get(b"c" + area_prefix(repo, branch))
        return raw.decode() if raw else None

    def clear_mark(self, repo: str, branch: str) -> None:
        self._db.delete(b"c" + area_prefix(repo, branch))

    def clear_area(self, repo: str, branch: str) -> None:
        """Forget one branch's staging in one write: a range delete per kind
        of key (a million staged files make no million deletes in memory),
        and the inline bytes of its nodes by id."""
        prefix = area_prefix(repo, branch)
        batch = WriteBatch(raw_mode=True)
        batch.delete(b"c" + prefix)
        for nid in self.record_ids(repo, branch):
            batch.delete(b"d" + _ID.pack(nid))
        for tag in (b"n", b"e", b"x"):
            batch.delete_range(tag + prefix, _past(tag + prefix))
        self.write_raw(batch, sync=True)

    def stash(self, repo: str, branch: str, keep: int = 0) -> "EntryStash":
        """Where a commit keeps its file entries: in memory up to ``keep``."""
        return EntryStash(self, b"x" + area_prefix(repo, branch), keep)


class EntryStash:
    """The tree entries a commit cut for the staged files, by node id: in
    memory up to ``keep`` of them, all in the journal beyond (not synced: a
    commit that dies starts over), read back one directory at a time by
    the tree build."""

    FLUSH = 2000

    def __init__(self, journal: Journal, prefix: bytes, keep: int = 0) -> None:
        self._journal = journal
        self._db = journal._db
        self._prefix = prefix
        self._keep = keep
        self._near: dict[int, dict] | None = {} if keep else None   # None: in the journal
        self._batch = WriteBatch(raw_mode=True)
        self._waiting = 0

    def clear(self) -> None:
        batch = WriteBatch(raw_mode=True)
        batch.delete_range(self._prefix, _past(self._prefix))
        self._batch = WriteBatch(raw_mode=True)
        self._waiting = 0
        self._near = {} if self._keep else None
        self._journal.write_raw(batch)

    def put(self, nid: int, entry: dict) -> None:
        near = self._near
        if near is not None:
            near[nid] = entry
            if len(near) <= self._keep:
                return
            self._near = None   # too many to keep: every entry goes to the journal
            for held, e in near.items():
                self.put(held, e)
            return
        self._batch.put(self._prefix + _ID.pack(nid), json.dumps(entry, separators=(",", ":")).encode())
        self._waiting += 1
        if self._waiting >= self.FLUSH:
            self.flush()

    def flush(self) -> None:
        if self._waiting:
            batch, self._batch, self._waiting = self._batch, WriteBatch(raw_mode=True), 0
            self._journal.write_raw(batch)

    def __getitem__(self, nid: int) -> dict:
        entry = self.get(nid)
        if entry is None:
            raise KeyError(nid)
        return entry

    def get(self, nid: int) -> dict | None:
        if self._near is not None:
            return self._near.get(nid)
        raw = self._db.get(self._prefix + _ID.pack(nid))
        return json.loads(raw) if raw is not None else None

    def values(self) -> Iterator[dict]:
        if self._near is not None:
            yield from self._near.values()
            return
        for _key, raw in scan_prefix(self._db, self._prefix):
            yield json.loads(raw)
