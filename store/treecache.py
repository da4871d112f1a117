"""Decoded trees kept in memory, under one byte limit.

A decoded tree costs far more than its encoded bytes: a file entry of about
180 bytes of JSON decodes to about 750 bytes of Python dicts, lists and
strings (measured with tracemalloc, see ``DECODED_PER_ENCODED_BYTE``).  The
cache weighs each tree by that estimate, so the limit is what the trees
really hold.  A tree's index by name (path lookups, the mount) lives with
the tree and counts towards the same limit: an index never keeps entries
alive past their tree's eviction.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

DEFAULT_TREE_CACHE_BYTES = 64 * 1024 * 1024
# decoded bytes per encoded byte of a tree (tracemalloc over decode_tree of
# 1,000 small-file entries: 747 KB from 180 KB of JSON), rounded up
DECODED_PER_ENCODED_BYTE = 4.5
TREE_OVERHEAD = 200        # the list, the cache's own slot
INDEX_PER_ENTRY = 48       # a dict slot and its hash, per indexed name


class TreeCache:
    """Least recently used decoded trees (and their indexes), by estimated bytes."""

    def __init__(self, limit_bytes: int = DEFAULT_TREE_CACHE_BYTES) -> None:
        self.limit = limit_bytes
        self.bytes = 0
        # tree id -> [entries, index by name or None, weight]
        self._trees: OrderedDict[bytes, list] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def weight(encoded_len: int) -> int:
        return TREE_OVERHEAD + int(encoded_len * DECODED_PER_ENCODED_BYTE)

    def put(self, bid: bytes, entries: list[dict], encoded_len: int) -> None:
        with self._lock:
            if bid in self._trees:
                self._trees.move_to_end(bid)
                return
            w = self.weight(encoded_len)
            self._trees[bid] = [entries, None, w]
            self.bytes += w
            self._evict()

    def entries(self, bid: bytes) -> list[dict] | None:
        with self._lock:
            slot = self._trees.get(bid)
            if slot is None:
                return None
            self._trees.move_to_end(bid)
            return slot[0]

    def index(self, bid: bytes) -> dict[str, dict] | None:
        """The tree's entries by name, built on first use; None if the tree is not kept."""
        with self._lock:
            slot = self._trees.get(bid)
            if slot is None:
                return None
            self._trees.move_to_end(bid)
            if slot[1] is None:
                slot[1] = {e["name"]: e for e in slot[0]}
                added = INDEX_PER_ENTRY * len(slot[0])
                slot[2] += added
                self.bytes += added
                self._evict()
            return slot[1]

    def _evict(self) -> None:
        """Drop the oldest trees until under the limit; the one just used
        (the youngest) always stays."""
        while self.bytes > self.limit and len(self._trees) > 1:
            _, slot = self._trees.popitem(last=False)
            self.bytes -= slot[2]

    def clear(self) -> None:
        with self._lock:
            self._trees.clear()
            self.bytes = 0

    def stats(self) -> dict:
        with self._lock:
            return {"trees": len(self._trees), "bytes": self.bytes, "bytes_limit": self.limit,
                    "indexed": sum(1 for s in self._trees.values() if s[1] is not None)}
