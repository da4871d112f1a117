"""Readahead policy for one open file: which chunks to fetch ahead of a
sequential reader, in which batches.

A file handle owns one :class:`SequentialReadahead`.  While reads continue
where the previous ones ended, the reader is streaming, and the chunks
ahead of it are worth fetching now, several requests at once, instead of
one store round trip each when the reader reaches them (Mountpoint for S3
and JuiceFS read ahead the same way).

* The window is in bytes.  It starts at ``initial`` and doubles each time
  the reader moves into a new chunk, up to ``maximum``; a seek resets it.
* Chunks are asked for by pack (``group(i)`` names the pack chunk ``i``
  lies in): a batch holds the chunks of one pack found in the window and
  one batch beyond it, at most ``batch`` bytes, and is one ranged read.  A
  file's chunks mostly follow each other in its packs, but not strictly
  (a put compresses on several threads and appends in the order they
  finish, and deduplicated chunks live in older packs): grouping by pack,
  not cutting at every change of pack, keeps it to about one request per
  pack the reader crosses, a few of them in flight.  (Fewer, larger
  requests cost less on every server; on some a ranged read costs as much
  as reading the whole object.)
* A reader that did not start at the file's beginning streams only after
  ``trigger`` contiguous bytes: a random reader (a Parquet footer, one
  column chunk, a seek pattern) whose single large read the kernel splits
  into several contiguous ones gets no readahead, so it fetches only the
  chunks it reads.

Pure bookkeeping: no I/O, no trio, cheap enough to run on every read.
"""

from __future__ import annotations

import array
import bisect
import itertools
from collections.abc import Callable, Hashable, Sequence

MiB = 1 << 20
INITIAL_WINDOW = 4 * MiB
MAX_WINDOW = 48 * MiB
BATCH_BYTES = 40 * MiB
TRIGGER_BYTES = 8 * MiB
# The kernel's own readahead sends several reads at once, which may arrive
# out of order: a read within this many read sizes of the furthest end seen
# still streams.
SEQUENTIAL_SLACK_READS = 4


class SequentialReadahead:
    """Detects sequential reads over a chunk list and returns batches of
    chunk indexes to fetch ahead.  Not thread-safe; one per open file handle.
    """

    __slots__ = ("_ends", "_size", "_initial", "_maximum", "_batch", "_trigger", "_window",
                 "_last_end", "_last_chunk", "_next", "_max_read", "_run_start", "_started", "_group",
                 "_asked", "_run")

    def __init__(self, lengths: Sequence[int], *, initial: int = INITIAL_WINDOW,
                 maximum: int = MAX_WINDOW, batch: int = BATCH_BYTES,
                 trigger: int = TRIGGER_BYTES,
                 group: Callable[[int], Hashable] | None = None) -> None:
        """``lengths`` are the file's chunk lengths, in order; ``group(i)``
        names what chunk ``i`` is read from (its pack), or None."""
        if initial < 1 or maximum < initial or batch < 1 or trigger < 0:
            raise ValueError(f"bad readahead window {initial}..{maximum}, batch {batch}, trigger {trigger}")
        self._ends = list(itertools.accumulate(int(n) for n in lengths))
        self._size = self._ends[-1] if self._ends else 0
        self._initial = initial
        self._maximum = maximum
        self._batch = batch
        self._trigger = trigger
        self._window = initial
        self._last_end = 0
        self._last_chunk = -1   # chunk of the previous read's last byte; -1: no read yet
        self._next = 0          # the lowest chunk index not asked for in this run
        self._asked = array.array("I", bytes(4 * len(self._ends)))  # the run that asked for chunk i
        self._run = 1           # runs are numbered so that a seek forgets what was asked in O(1)
        self._max_read = 0
        self._run_start = 0     # where the current sequential run began
        self._started = False   # whether the run streams (readahead on)
        self._group = group

    @property
    def window(self) -> int:
        """How many bytes beyond the current read are asked for."""
        return self._window

    def _chunk_at(self, offset: int) -> int:
        return bisect.bisect_right(self._ends, offset)

    def _start(self, offset: int) -> int:
        return self._ends[offset - 1] if offset > 0 else 0

    def _mark(self, first: int, last: int) -> None:
        """The reader reads chunks first..last itself."""
        for i in range(first, last + 1):
            self._asked[i] = self._run
        while self._next < len(self._ends) and self._asked[self._next] == self._run:
            self._next += 1

    def on_read(self, offset: int, size: int) -> list[list[int]]:
        """Record a read; return batches of chunk indexes to fetch now (maybe none).

        The chunks the read itself spans are the reader's own, never in a batch.
        """
        if size <= 0 or offset < 0 or offset >= self._size:
            return []
        end = min(offset + size, self._size)
        first = self._chunk_at(offset)
        last = self._chunk_at(end - 1)
        self._max_read = max(self._max_read, end - offset)
        if self._last_chunk < 0:
            sequential = offset == 0
            self._run_start = offset
        else:
            sequential = abs(offset - self._last_end) <= SEQUENTIAL_SLACK_READS * self._max_read
        if not sequential:
            self._window = self._initial
            self._last_end = end
            self._last_chunk = last
            self._run += 1
            self._next = last + 1
            self._run_start = offset
            self._started = False
            self._mark(first, last)
            return []
        self._last_end = max(self._last_end, end)
        moved = 0 <= self._last_chunk < last
        self._last_chunk = max(self._last_chunk, last)
        self._mark(first, last)
        if not self._started:
            if self._run_start != 0 and self._last_end - self._run_start < self._trigger:
                return []
            self._started = True
        elif moved:
            self._window = min(self._maximum, self._window * 2)
        target = self._chunk_at(min(self._size, self._last_end + self._window) - 1)
        if self._next > target:
            return []
        return self._batches(target)

    def _batches(self, target: int) -> list[list[int]]:
        """The chunks not asked for up to ``target``, by pack, each pack's
        with those of its chunks that follow within one more batch."""
        horizon = self._ends[target] + self._batch
        current: dict = {}              # pack -> its batch being filled: [bytes, indexes]
        closed: set = set()             # packs that get nothing more in this call
        made: list[list] = []
        run = self._run
        i = self._next - 1
        while i + 1 < len(self._ends) and (i + 1 <= target or self._ends[i] < horizon):
            i += 1
            if self._asked[i] == run:
                continue
            key = self._group(i) if self._group is not None else None
            if key in closed:
                continue
            length = self._ends[i] - self._start(i)
            batch = current.get(key)
            if batch is None or (batch[1] and batch[0] + length > self._batch):
                if i > target:   # past the window only a pack already begun grows, and
                    closed.add(key)   # what does not fit waits for its own batch
                    continue
                batch = current[key] = [0, []]
                made.append(batch)
            batch[0] += length
            batch[1].append(i)
        batches = [indexes for _, indexes in made]
        for batch in batches:
            for i in batch:
                self._asked[i] = run
        while self._next < len(self._ends) and self._asked[self._next] == run:
            self._next += 1
        return batches
