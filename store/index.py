"""The local index in RocksDB (rocksdict): a cache of what the store holds.

Keys (all bytes):
    ``c`` + blob id        -> BlobLocation (which pack, where)
    ``p`` + pack id        -> pack size u64, blob count u32
    ``o`` + commit id      -> the commit object's bytes
    ``m`` + repo id + NUL + commit hex -> b"" (commit ids of a repo, for prefix lookup)
    ``k`` + tree id        -> its ``rawtree.span_count`` (every entry of the tree
                              is well formed as stored: readers skip the checks
                              of ``entrycheck``)
    ``n`` + tree id        -> the tree's names and kinds (``nametable``), kept
                              with the mark

Nothing here is authoritative: :meth:`Index.clear` and a rebuild from the
store give the same content back.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
from collections.abc import Iterable, Iterator

from rocksdict import Options, Rdict, WriteBatch

from .errors import BackendError
from .packs import TYPE_TREE, BlobLocation
from .rocksopts import table_options

log = logging.getLogger(__name__)

INDEX_FORMAT = b"1"
_PACK = struct.Struct("<QI")


def scan_prefix(db: Rdict, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) pairs of a raw-mode RocksDB whose keys start with ``prefix``."""
    it = db.iter()
    it.seek(prefix)
    while it.valid():
        key = it.key()
        if not key.startswith(prefix):
            break
        yield key, it.value()
        it.next()


NOT_SPLIT = -1    # a checked tree whose bytes are not to be split (``Index.tree_spans``)
UNCOUNTED = -2    # a checked tree whose span count was never found


class Index:
    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._db = self._open()

    def _open(self) -> Rdict:
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        table_options(opts)
        try:
            db = Rdict(self.path, opts)
        except Exception as exc:  # rocksdict raises plain Exception
            raise BackendError(f"cannot open the index at {self.path}: {exc}") from exc
        fmt = db.get(b"!format")
        if fmt is None:
            db[b"!format"] = INDEX_FORMAT
        elif fmt != INDEX_FORMAT:
            db.close()
            raise BackendError(
                f"index at {self.path} has format {fmt!r}; rebuild it with `trunkfs fsck --rebuild-index`")
        return db

    def close(self) -> None:
        self._db.close()

    def clear(self) -> None:
        """Drop everything (the caller rebuilds from the store)."""
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._db = self._open()

    # -- trees checked on this machine ----------------------------------------

    def tree_checked(self, tree_id: bytes) -> bool:
        """Whether every entry of the tree ``tree_id`` was found well formed
        here (a tree id names its content: it stays so)."""
        return self._db.get(b"k" + tree_id) is not None

    def tree_spans(self, tree_id: bytes) -> int | None:
        """None if the tree ``tree_id`` was not checked here; else its
        ``rawtree.span_count``, or NOT_SPLIT, or UNCOUNTED (a mark made
        before the counts were kept)."""
        raw = self._db.get(b"k" + tree_id)
        if raw is None:
            return None
        if not raw:
            return UNCOUNTED
        return int(raw) if raw.isdigit() else NOT_SPLIT

    def mark_tree_checked(self, tree_id: bytes, spans: int | None, names: bytes | None = None) -> None:
        """Mark a tree checked, with its ``rawtree.span_count`` (None: its
        bytes are not to be split) and its ``nametable`` record (None: none
        kept; the tree's first listing keeps one)."""
        batch = WriteBatch(raw_mode=True)
        batch.put(b"k" + tree_id, b"-" if spans is None else b"%d" % spans)
        if names is not None:
            batch.put(b"n" + tree_id, names)
        else:
            batch.delete(b"n" + tree_id)
        self._db.write(batch)

    def tree_names(self, tree_id: bytes) -> bytes | None:
        """The ``nametable`` record of a checked tree, if one was kept."""
        return self._db.get(b"n" + tree_id)

    def keep_tree_names(self, tree_id: bytes, names: bytes) -> None:
        """Keep the ``nametable`` record of a tree checked before records were kept."""
        self._db.put(b"n" + tree_id, names)

    # -- blobs and packs -------------------------------------------------------

    def blob(self, blob_id: bytes) -> BlobLocation | None:
        raw = self._db.get(b"c" + blob_id)
        return BlobLocation.from_bytes(raw) if raw is not None else None

    def has_blob(self, blob_id: bytes) -> bool:
        return self._db.get(b"c" + blob_id) is not None

    def add_pack(self, pack_id: bytes, size: int, blobs: Iterable[tuple[bytes, BlobLocation]]) -> None:
        batch = WriteBatch(raw_mode=True)
        count = 0
        for bid, loc in blobs:
            batch.put(b"c" + bid, loc.to_bytes())
            count += 1
        batch.put(b"p" + pack_id, _PACK.pack(size, count))
        self._db.write(batch)

    def has_pack(self, pack_id: bytes) -> bool:
        return self._db.get(b"p" + pack_id) is not None

    def packs(self) -> Iterator[tuple[bytes, int, int]]:
        """Yield (pack id, size, blob count)."""
        for key, value in self._prefixed(b"p"):
            size, count = _PACK.unpack(value)
            yield key[1:], size, count

    def blobs(self) -> Iterator[tuple[bytes, BlobLocation]]:
        for key, value in self._prefixed(b"c"):
            yield key[1:], BlobLocation.from_bytes(value)

    def remove_pack(self, pack_id: bytes) -> None:
        self.remove_packs({pack_id})

    def remove_packs(self, pack_ids: set[bytes]) -> None:
        """Forget packs and the blobs located in them (one pass over the blobs)."""
        if not pack_ids:
            return
        batch = WriteBatch(raw_mode=True)
        for bid, loc in self.blobs():
            if loc.pack_id in pack_ids:
                batch.delete(b"c" + bid)
                if loc.type == TYPE_TREE:   # what was kept of the tree here goes with it
                    batch.delete(b"k" + bid)
                    batch.delete(b"n" + bid)
        for pid in pack_ids:
            batch.delete(b"p" + pid)
        self._db.write(batch)

    # -- commits ---------------------------------------------------------------

    def commit(self, commit_id: bytes) -> bytes | None:
        return self._db.get(b"o" + commit_id)

    def add_commit(self, repo_id: str, commit_id: bytes, raw: bytes) -> None:
        batch = WriteBatch(raw_mode=True)
        batch.put(b"o" + commit_id, raw)
        batch.put(b"m" + repo_id.encode() + b"\0" + commit_id.hex().encode(), b"")
        self._db.write(batch)

    def remove_commit(self, repo_id: str, commit_id: bytes) -> None:
        batch = WriteBatch(raw_mode=True)
        batch.delete(b"o" + commit_id)
        batch.delete(b"m" + repo_id.encode() + b"\0" + commit_id.hex().encode())
        self._db.write(batch)

    def commit_ids(self) -> Iterator[bytes]:
        for key, _ in self._prefixed(b"o"):
            yield key[1:]

    def commits_with_prefix(self, repo_id: str, hex_prefix: str) -> list[str]:
        prefix = b"m" + repo_id.encode() + b"\0" + hex_prefix.encode()
        skip = len(repo_id.encode()) + 2
        return [key[skip:].decode() for key, _ in self._prefixed(prefix)]

    # -- helpers ---------------------------------------------------------------

    def _prefixed(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return scan_prefix(self._db, prefix)
