"""Range re-chunking gives the same chunks as cutting the new content whole,
while reading only the neighbourhood of the changes."""

from __future__ import annotations

import random

import pytest

from trunkfs.store.rechunk import rechunk
from trunkfs.store.store import Store

MiB = 1024 * 1024


def whole(store: Store, data: bytes) -> list[list]:
    session = store.session()
    chunks, _ = session.put_bytes(data)
    session.flush()
    return chunks


def apply(base: bytes, edits: list[tuple[str, int, bytes | int]]) -> tuple[bytes, list[tuple[int, int]]]:
    data = bytearray(base)
    dirty = []
    for kind, off, arg in edits:
        if kind == "write":
            if off > len(data):
                data.extend(b"\0" * (off - len(data)))
            data[off:off + len(arg)] = arg
            dirty.append((off, off + len(arg)))
        else:  # truncate
            if arg < len(data):
                del data[arg:]
            else:
                data.extend(b"\0" * (arg - len(data)))
    return bytes(data), dirty


CASES = {
    "append 1 MiB": [("write", 40 * MiB, b"A" * MiB)],
    "patch 4 KiB in the middle": [("write", 20 * MiB, b"P" * 4096)],
    "two patches": [("write", 3 * MiB, b"x" * 100), ("write", 30 * MiB, b"y" * 5000)],
    "patch at 0": [("write", 0, b"head")],
    "shrink": [("truncate", 25 * MiB + 7, 25 * MiB + 7)],
    "extend with a hole": [("truncate", 0, 45 * MiB)],
    "write past the end": [("write", 42 * MiB, b"tail" * 1000)],
    "overwrite everything": [("write", 0, bytes(40 * MiB))],
}


@pytest.mark.parametrize("name", list(CASES))
def test_rechunk_equals_whole_chunking_and_reads_little(store, name):
    base = random.Random(1).randbytes(40 * MiB)
    base_chunks = whole(store, base)
    new, dirty = apply(base, CASES[name])
    session = store.session()
    chunks, reread = rechunk(session, base_chunks, len(new), dirty, lambda o, n: new[o:o + n])
    session.flush()
    assert chunks == whole(store, new)
    assert sum(c[1] for c in chunks) == len(new)
    changed = sum(e - s for s, e in dirty) + abs(len(new) - len(base))
    if name != "overwrite everything":
        # the neighbourhood of each change: a chunk before, up to resync (a few max-size chunks)
        assert reread <= changed + 4 * 16 * MiB, (reread, changed)
    if name in ("append 1 MiB", "patch 4 KiB in the middle"):
        assert reread < 16 * MiB
        assert session.data.new_bytes < 8 * MiB
