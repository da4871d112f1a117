"""An open file of a view: a snapshot of its chunk list, read through the cache.

The handle keeps the entry it was opened with, so a reader goes on seeing
the content it opened even after its branch moves.
"""

from __future__ import annotations

import bisect
import itertools

from ..cache.chunkcache import ChunkCache
from ..cache.readahead import SequentialReadahead


class FileHandle:
    __slots__ = ("cache", "where", "size", "ids", "starts", "readahead")

    def __init__(self, cache: ChunkCache, entry: dict, where: str) -> None:
        chunks = entry.get("chunks", [])
        self.cache = cache
        self.where = where
        self.size = int(entry.get("size", 0))
        self.ids = [bytes.fromhex(c[0]) for c in chunks]
        self.starts = [0, *itertools.accumulate(c[1] for c in chunks)][:-1] if chunks else []
        self.readahead = SequentialReadahead(chunks)

    async def read(self, off: int, size: int) -> bytes | memoryview:
        if off >= self.size or size <= 0:
            return b""
        end = min(off + size, self.size)
        wanted = self.readahead.on_read(off, end - off)
        if wanted:
            self.cache.prefetch([self.ids[i] for i in wanted])
        i = bisect.bisect_right(self.starts, off) - 1
        data = await self.cache.get(self.ids[i])
        start = self.starts[i]
        if end - start <= len(data):  # within one chunk: no copy (pyfuse3 takes any buffer)
            return memoryview(data)[off - start:end - start]
        parts = [memoryview(data)[off - start:]]
        pos = start + len(data)
        while pos < end:
            i += 1
            data = await self.cache.get(self.ids[i])
            parts.append(memoryview(data)[:end - pos])
            pos += len(data)
        return b"".join(parts)
