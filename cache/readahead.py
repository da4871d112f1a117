"""Readahead policy for one open file: which chunks to prefetch after a read.

A file handle owns one :class:`SequentialReadahead`.  When a read continues
where the previous ones ended, the reader is streaming, so the chunks
after the ones it is reading are worth fetching now, concurrently, instead of
one store round-trip each when the reader reaches them.  The window starts
small (a reader that stops early wastes little) and doubles each time the
reader moves into a new chunk, up to a maximum.  Random access asks for
nothing.  Pure bookkeeping: no I/O, no trio, cheap enough to run on every read.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

INITIAL_WINDOW = 2
MAX_WINDOW = 8
# The kernel's own readahead sends several reads at once, which may arrive
# out of order: a read within this many read sizes of the furthest end seen
# still streams.
SEQUENTIAL_SLACK_READS = 4


class SequentialReadahead:
    """Detects sequential reads over a chunk list and returns chunks to prefetch.

    Not thread-safe; one instance per open file handle.
    """

    __slots__ = ("_ends", "_size", "_initial", "_maximum", "_window",
                 "_last_end", "_last_chunk", "_ahead", "_max_read")

    def __init__(self, chunks: Sequence[Sequence], *, initial: int = INITIAL_WINDOW,
                 maximum: int = MAX_WINDOW) -> None:
        """``chunks`` is the file's chunk list, items ``[hexid, length]``."""
        if initial < 1 or maximum < initial:
            raise ValueError(f"bad readahead window {initial}..{maximum}")
        self._ends = list(itertools.accumulate(int(c[1]) for c in chunks))
        self._size = self._ends[-1] if self._ends else 0
        self._initial = initial
        self._maximum = maximum
        self._window = initial
        # A first read at offset 0 counts as "continuing" (the usual start of a
        # whole-file read); a first read elsewhere counts as random.
        self._last_end = 0
        self._last_chunk = -1  # chunk of the previous read's last byte; -1: no read yet
        self._ahead = -1  # highest chunk index already requested in this run
        self._max_read = 0

    @property
    def window(self) -> int:
        """How many chunks beyond the current read are requested now."""
        return self._window

    def _chunk_at(self, offset: int) -> int:
        return bisect.bisect_right(self._ends, offset)

    def on_read(self, offset: int, size: int) -> list[int]:
        """Record a read; return indexes of chunks to prefetch (maybe none).

        The chunks the read itself spans, after its first, are included: the
        caller fetches them one after the other, prefetching lets them overlap.
        """
        if size <= 0 or offset < 0 or offset >= self._size:
            return []
        end = min(offset + size, self._size)
        first = self._chunk_at(offset)
        last = self._chunk_at(end - 1)
        self._max_read = max(self._max_read, end - offset)
        if self._last_chunk < 0:
            sequential = offset == 0
        else:
            sequential = abs(offset - self._last_end) <= SEQUENTIAL_SLACK_READS * self._max_read
        self._last_end = max(self._last_end, end) if sequential else end
        if not sequential:
            self._window = self._initial
            self._last_chunk = last
            self._ahead = last
            return []
        if 0 <= self._last_chunk < last:
            self._window = min(self._maximum, self._window * 2)
        self._last_chunk = last
        target = min(len(self._ends), last + 1 + self._window)
        start = max(self._ahead + 1, first + 1)
        if start >= target:
            return []
        self._ahead = target - 1
        return list(range(start, target))
