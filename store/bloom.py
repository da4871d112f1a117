"""A Bloom filter of blob ids, the collector's mark set.

Blob ids are BLAKE3 hashes already, so the bit positions are taken from
the id's own bytes (double hashing over two 64-bit halves).  Memory is
``bits_per_id`` bits per expected id (about 1.8 MB for a million ids at a
false positive rate of 1 in 1,000), whatever the ids.  A false positive
only keeps a garbage blob's pack one collection longer; a blob that was
added always tests present, so the filter never loses live data.
"""

from __future__ import annotations

import math


class BloomFilter:
    def __init__(self, expected: int, false_positive_rate: float = 0.001) -> None:
        expected = max(expected, 1024)
        bits = int(-expected * math.log(false_positive_rate) / (math.log(2) ** 2))
        self.size = max(8, bits)
        self.hashes = max(1, round(self.size / expected * math.log(2)))
        self._bits = bytearray((self.size + 7) // 8)
        self.added = 0

    def _positions(self, blob_id: bytes) -> list[int]:
        h1 = int.from_bytes(blob_id[:8], "little")
        h2 = int.from_bytes(blob_id[8:16], "little") | 1
        size = self.size
        return [(h1 + i * h2) % size for i in range(self.hashes)]

    def add(self, blob_id: bytes) -> None:
        bits = self._bits
        for p in self._positions(blob_id):
            bits[p >> 3] |= 1 << (p & 7)
        self.added += 1

    def __contains__(self, blob_id: object) -> bool:
        if not isinstance(blob_id, bytes):
            return False
        bits = self._bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions(blob_id))

    @property
    def memory_bytes(self) -> int:
        return len(self._bits)
