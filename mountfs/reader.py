"""Reading committed content: a file's chunk list, read through the chunk cache.

An open file keeps the reader of the content it opened, so it goes on
seeing that content after its branch moves.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

from ..cache.chunkcache import ChunkCache


class ChunkReader:
    __slots__ = ("cache", "size", "ids", "starts", "readahead")

    def __init__(self, cache: ChunkCache, chunks: Sequence[Sequence], size: int) -> None:
        """``chunks`` is the file's chunk list, items ``[hexid, length]``."""
        self.cache = cache
        self.size = size
        self.ids = [bytes.fromhex(c[0]) for c in chunks]
        lengths = [int(c[1]) for c in chunks]
        self.starts = [0, *itertools.accumulate(lengths)][:-1] if chunks else []
        self.readahead = cache.readahead(self.ids, lengths)

    @classmethod
    def of_entry(cls, cache: ChunkCache, entry: dict) -> "ChunkReader":
        """The reader of a committed file entry."""
        return cls(cache, entry.get("chunks", []), int(entry.get("size", 0)))

    async def read(self, off: int, size: int) -> bytes | memoryview:
        if off >= self.size or size <= 0:
            return b""
        end = min(off + size, self.size)
        cache = self.cache
        if self.readahead is not None:
            for batch in self.readahead.on_read(off, end - off):
                cache.prefetch([self.ids[i] for i in batch])
        first = bisect.bisect_right(self.starts, off) - 1
        last = bisect.bisect_right(self.starts, end - 1) - 1
        cache.delivered(end - off)
        start = self.starts[first]
        if first == last:  # within one chunk: no copy (pyfuse3 takes any buffer)
            data = await cache.get(self.ids[first])
            return memoryview(data)[off - start:end - start]
        datas = await cache.get_many(self.ids[first:last + 1])   # one request where they neighbour
        parts = [memoryview(datas[0])[off - start:]]
        pos = start + len(datas[0])
        for data in datas[1:]:
            parts.append(memoryview(data)[:end - pos])
            pos += len(data)
        return b"".join(parts)
