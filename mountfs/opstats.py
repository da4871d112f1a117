"""Counts and latencies of the mount's FUSE operations, kept as plain
numbers on the event loop (one dict update per operation); the daemon's
``/metrics`` turns them into Prometheus histograms (``daemon/metrics.py``)."""

from __future__ import annotations

import bisect

# seconds: from a memory hit (tens of microseconds) to a store round trip
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class OpFigures:
    """One operation's figures; how many there were is the sum of ``buckets``."""

    __slots__ = ("errors", "seconds", "buckets")

    def __init__(self) -> None:
        self.errors = 0       # answered with an errno
        self.seconds = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)   # the last: above every bound


class OpStats:
    """Per FUSE operation: how many, how many failed, and how long they took."""

    def __init__(self) -> None:
        self.ops: dict[str, OpFigures] = {}

    def observe(self, op: str, seconds: float, failed: bool) -> None:
        figures = self.ops.get(op)
        if figures is None:
            figures = self.ops[op] = OpFigures()
        figures.errors += failed
        figures.seconds += seconds
        figures.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
