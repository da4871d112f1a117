"""Reading committed content: a file's chunk list, read through the chunk cache.

An open file keeps the reader of the content it opened, so it goes on
seeing that content after its branch moves.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

from ..cache.chunkcache import ChunkCache
from ..cache.readahead import SequentialReadahead


class ChunkReader:
    __slots__ = ("cache", "size", "ids", "starts", "readahead")

    def __init__(self, cache: ChunkCache, chunks: Sequence[Sequence], size: int) -> None:
        """``chunks`` is the file's chunk list, items ``[hexid, length]``."""
        self.cache = cache
        self.size = size
        self.ids = [bytes.fromhex(c[0]) for c in chunks]
        self.starts = [0, *itertools.accumulate(c[1] for c in chunks)][:-1] if chunks else []
        self.readahead = SequentialReadahead(chunks)

    @classmethod
    def of_entry(cls, cache: ChunkCache, entry: dict) -> "ChunkReader":
        """The reader of a committed file entry."""
        return cls(cache, entry.get("chunks", []), int(entry.get("size", 0)))

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
