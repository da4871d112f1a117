"""Re-chunking a changed file by range: cost in proportion to the change.

POSIX writes overwrite or extend; they never shift the bytes after them.  So
a file whose base version was cut into chunks, and which then got writes in
some byte ranges (and maybe a new size), keeps every base chunk that lies
wholly before the first change, and every base chunk after a change once the
content-defined cut points of the new content land on a base cut point again:
FastCDC cuts depend only on the bytes from a chunk's start, so from a common
cut point on clean data both versions cut alike.  The result equals cutting
the whole new content from scratch (tested), while reading and hashing only
the changed neighbourhoods.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from .chunking import StreamChunker
from .writer import WriteSession

READ_BLOCK = 1024 * 1024


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for s, e in sorted((s, e) for s, e in ranges if e > s):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def rechunk(session: WriteSession, base_chunks: list[list], new_size: int,
            dirty: list[tuple[int, int]], read: Callable[[int, int], bytes]) -> tuple[list[list], int]:
    """The chunk list of the new content; returns (chunks, bytes re-read).

    ``base_chunks`` is the base version's ``[[id hex, length], ...]``,
    ``dirty`` the byte ranges written since (in the new file), ``read(off, n)``
    reads the new content.  A shrink is a dirty range from the new size to the
    old size; growth is dirty from the old size on.
    """
    base_ends = list(itertools.accumulate(c[1] for c in base_chunks))
    base_size = base_ends[-1] if base_ends else 0
    ranges = dirty + ([(min(new_size, base_size), max(new_size, base_size))]
                      if new_size != base_size else [])
    if new_size > base_size > 0:
        # the base's last cut was the end of the file, not a content-defined
        # cut: its last chunk has to be cut again with what follows
        ranges.append((base_size - 1, base_size))
    ranges = merge_ranges([(max(0, s), min(e, max(new_size, base_size))) for s, e in ranges])
    # base cut points still valid in the new file: clean and inside it
    boundaries = {e: i for i, e in enumerate(base_ends)
                  if e <= new_size and (e != base_size or new_size == base_size)}
    out: list[list] = []
    reread = 0
    i = 0          # next base chunk to consider
    pos = 0        # offset up to which ``out`` covers the new file
    r = 0          # next dirty range
    while pos < new_size:
        if r == len(ranges):  # clean to the end: the rest of the base is reused
            out.extend(base_chunks[i:])
            break
        start, end = ranges[r]
        while i < len(base_chunks) and base_ends[i] <= start:   # clean chunks before the change
            out.append(base_chunks[i])
            pos = base_ends[i]
            i += 1
        chunker = StreamChunker(session.store.params, buffer_factor=2)  # resync sooner
        offset = pos  # where the next emitted chunk starts
        feed_at = pos
        synced = False
        while not synced:
            n = min(READ_BLOCK, new_size - feed_at)
            chunks = chunker.feed(read(feed_at, n)) if n > 0 else chunker.finish()
            reread += max(n, 0)
            feed_at += max(n, 0)
            for view in chunks:
                bid = session.data.add(view)
                out.append([bid.hex(), len(view)])
                offset += len(view)
                while r < len(ranges) and ranges[r][1] <= offset:  # changes now covered
                    r += 1
                if r < len(ranges) and ranges[r][0] < offset:   # inside the next change: go on
                    continue
                if offset in boundaries or offset >= new_size:
                    synced = True
                    break
            if n <= 0:
                break
        pos = offset
        i = boundaries[pos] + 1 if pos in boundaries else len(base_chunks)
        if pos >= new_size:
            break
    return out, reread
