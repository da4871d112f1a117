"""Pack objects: many compressed blobs in one store object, with their own index.

Layout of a pack (format version 1)::

    magic "TRUNKPK1"
    blob bytes, back to back (each zstd-compressed or raw)
    index: one 50-byte entry per blob:
        type u8, flags u8, id 32 bytes, offset u64, stored length u32, plain length u32
    trailer (56 bytes): index offset u64, index length u32, blob count u32,
        BLAKE3 of the index 32 bytes, magic "TRUNKPK1"

The pack's name is the BLAKE3 hash of its magic and index.  The index holds
every blob's id (the hash of its plain bytes), offset and lengths, so it names
the content; hashing only the index keeps a second full pass over the data
off the write path, and every blob is still verified against its own id on
every read.  Because the index
travels inside the pack, the local RocksDB index can always be rebuilt from
the store with one ranged read of each pack's tail.
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass

import blake3

from .backends.base import Backend
from .errors import IntegrityError, ObjectMissing

FORMAT_VERSION = 1
MAGIC = b"TRUNKPK" + str(FORMAT_VERSION).encode()  # the format version is its last byte
ENTRY = struct.Struct("<BB32sQII")
TRAILER = struct.Struct("<QII32s8s")

TYPE_DATA = 0
TYPE_TREE = 1


@dataclass(frozen=True, slots=True)
class BlobLocation:
    pack_id: bytes
    offset: int
    stored_len: int
    plain_len: int
    flags: int
    type: int

    _DB = struct.Struct("<32sQIIBB")

    def to_bytes(self) -> bytes:
        return self._DB.pack(self.pack_id, self.offset, self.stored_len,
                             self.plain_len, self.flags, self.type)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "BlobLocation":
        return cls(*cls._DB.unpack(raw))


def pack_key(pack_id: bytes) -> str:
    h = pack_id.hex()
    return f"packs/{h[:2]}/{h}"


def pack_id_from_key(key: str) -> bytes | None:
    name = key.rsplit("/", 1)[-1]
    try:
        raw = bytes.fromhex(name)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


class PackWriter:
    """Writes one pack into a temp file; not thread-safe (callers lock).

    Small blobs go through a buffered file.  A large one may instead get its
    range reserved (:meth:`reserve`, under the caller's lock) and be written
    into it later with :meth:`write_at` (outside the lock), so that threads
    storing large chunks copy them into the file side by side rather than
    one after the other; the caller waits for every such write before
    :meth:`finish`."""

    def __init__(self, directory: str) -> None:
        fd, self.path = tempfile.mkstemp(dir=directory, prefix="pack-")
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)
        self._entries: list[tuple[int, int, bytes, int, int, int]] = []
        self.size = 0
        self.writing = 0          # reserved ranges not yet written (the caller's count)
        self.sealed = False       # full: no more blobs; the last range written hands it on
        self.failed: BaseException | None = None
        self._write(MAGIC)

    def _write(self, data: bytes | memoryview) -> None:
        self._file.write(data)
        self.size += len(data)

    def add(self, blob_type: int, blob_id: bytes, stored: bytes | memoryview, flags: int,
            plain_len: int) -> int:
        offset = self.size
        self._write(stored)
        self._entries.append((blob_type, flags, blob_id, offset, len(stored), plain_len))
        return offset

    def reserve(self, blob_type: int, blob_id: bytes, stored_len: int, flags: int,
                plain_len: int) -> int:
        """Reserve ``stored_len`` bytes for a blob to be written with
        :meth:`write_at`; returns its offset.  The buffered bytes before it
        go to the file now (seeking past the range flushes them)."""
        offset = self.size
        self.size += stored_len
        self._file.seek(self.size)
        self._entries.append((blob_type, flags, blob_id, offset, stored_len, plain_len))
        return offset

    def write_at(self, data: bytes | memoryview, offset: int) -> None:
        """Write a reserved range (thread-safe against other ranges: pwrite)."""
        fd = self._file.fileno()
        with memoryview(data) as view:
            done = 0
            while done < len(view):
                done += os.pwrite(fd, view[done:], offset + done)

    def __len__(self) -> int:
        return len(self._entries)

    def finish(self) -> tuple[bytes, list[tuple[bytes, BlobLocation]]]:
        """Write index and trailer, close; return the pack id and its blobs."""
        index = b"".join(ENTRY.pack(*e) for e in self._entries)
        index_offset = self.size
        self._write(index)
        self._write(TRAILER.pack(index_offset, len(index), len(self._entries),
                                 blake3.blake3(index).digest(), MAGIC))
        self._file.flush()
        self._file.close()
        # salted: every pack written gets a name of its own, so that a blob
        # stored anew (the collector condemned its pack, docs/gc.md) never
        # lands under the name of the condemned pack; readers check the
        # index against the trailer's hash, not the name
        pack_id = blake3.blake3(MAGIC + index + os.urandom(16)).digest()
        blobs = [(bid, BlobLocation(pack_id, off, slen, plen, flags, btype))
                 for btype, flags, bid, off, slen, plen in self._entries]
        return pack_id, blobs

    def abort(self) -> None:
        try:
            self._file.close()
        finally:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def parse_trailer(tail: bytes, key: str) -> tuple[int, int, int, bytes]:
    if len(tail) < TRAILER.size:
        raise IntegrityError(f"pack {key} is too short to hold a trailer")
    index_offset, index_len, count, index_hash, magic = TRAILER.unpack(tail[-TRAILER.size:])
    if magic != MAGIC:
        raise IntegrityError(f"pack {key} has no trunkfs pack trailer (bad magic)")
    if index_len != count * ENTRY.size:
        raise IntegrityError(f"pack {key} trailer is inconsistent")
    return index_offset, index_len, count, index_hash


def parse_index(index: bytes, index_hash: bytes, pack_id: bytes, pack_size: int,
                key: str) -> list[tuple[bytes, BlobLocation]]:
    if blake3.blake3(index).digest() != index_hash:
        raise IntegrityError(f"pack {key} index fails its hash check")
    out = []
    for btype, flags, bid, off, slen, plen in ENTRY.iter_unpack(index):
        if off + slen > pack_size:
            raise IntegrityError(f"pack {key} index points past the end of the pack")
        out.append((bid, BlobLocation(pack_id, off, slen, plen, flags, btype)))
    return out


def read_pack_index(backend: Backend, pack_id: bytes) -> tuple[int, list[tuple[bytes, BlobLocation]]]:
    """Read a pack's own index with ranged reads; returns (pack size, blobs)."""
    key = pack_key(pack_id)
    size = backend.stat(key)
    if size is None:
        raise ObjectMissing(f"pack {key} is missing from the store")
    guess = min(size, 64 * 1024)
    tail = backend.get(key, size - guess, guess)
    index_offset, index_len, count, index_hash = parse_trailer(tail, key)
    if index_offset + index_len + TRAILER.size != size:
        raise IntegrityError(f"pack {key} trailer does not match its size")
    start_in_tail = index_offset - (size - guess)
    if start_in_tail >= 0:
        index = tail[start_in_tail:start_in_tail + index_len]
    else:
        index = backend.get(key, index_offset, index_len)
    return size, parse_index(index, index_hash, pack_id, size, key)
