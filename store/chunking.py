"""Content-defined chunking of byte streams with FastCDC (pyfastcdc, compiled).

The chunker is fed arbitrary pieces of a stream and returns the chunks whose
cut points are final.  A FastCDC cut point depends only on the bytes from the
chunk's start up to ``max_size`` further, so a chunk is final once at least
``max_size`` bytes follow its start (or the stream ended).  Pieces are
gathered until ``4 * max_size`` bytes are buffered, which bounds the bytes
scanned twice to a quarter of the input and the memory to a few chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyfastcdc.cy import FastCDC


@dataclass(frozen=True)
class ChunkerParams:
    min_size: int = 256 * 1024
    avg_size: int = 1024 * 1024
    max_size: int = 4 * 1024 * 1024

    def to_json(self) -> dict:
        return {"algorithm": "fastcdc2020", "min": self.min_size,
                "avg": self.avg_size, "max": self.max_size}

    @classmethod
    def from_json(cls, data: dict) -> "ChunkerParams":
        return cls(min_size=int(data["min"]), avg_size=int(data["avg"]),
                   max_size=int(data["max"]))


class StreamChunker:
    """Cuts one stream into chunks; not thread-safe (one per stream).

    The stream is gathered in one bytearray that lives as long as the
    chunker (cut in place, the uncut tail kept at its front), and each final
    chunk is copied out as its own ``bytes``.  A fresh buffer per cut
    (joining the pieces) was a fresh mapping of 16 MiB and its page faults
    every 12 MiB of stream, above the daemon's pinned mmap threshold
    (``daemon/malloc.py``): it halved the speed of a commit.  The chunks (at
    most ``max_size``) come from malloc's heap, reused."""

    def __init__(self, params: ChunkerParams, buffer_factor: int = 4) -> None:
        """``buffer_factor`` x max size are gathered before cutting (at least 2)."""
        # pyfastcdc's average is avg_size + min_size ("cut-point skipping"),
        # so ask for the difference to get the configured average.
        self._cdc = FastCDC(
            max(256, params.avg_size - params.min_size),
            min_size=params.min_size,
            max_size=params.max_size,
        )
        self._max = params.max_size
        self._threshold = max(2, buffer_factor) * params.max_size
        self._buf = bytearray()    # its capacity; the stream's uncut bytes are its first _len
        self._len = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add ``data``; return the chunks that are now final (maybe none)."""
        n = len(data)
        if not n:
            return []
        end = self._len + n
        if end > len(self._buf):   # grows (doubling) up to the threshold and a piece; then stays
            grown = bytearray(max(end, min(2 * len(self._buf), self._threshold + n)))
            grown[:self._len] = memoryview(self._buf)[:self._len]
            self._buf = grown
        self._buf[self._len:end] = data      # same length: a copy in place, never a resize
        self._len = end
        if end < self._threshold:
            return []
        return self._cut(final=False)

    def finish(self) -> list[bytes]:
        """End of stream: return every remaining chunk."""
        if not self._len:
            return []
        return self._cut(final=True)

    def _cut(self, final: bool) -> list[bytes]:
        total = self._len
        with memoryview(self._buf) as whole, whole[:total] as view:
            spans: list[tuple[int, int]] = []
            for chunk in self._cdc.cut_buf(view):
                if not final and total - chunk.offset < self._max:
                    break
                spans.append((chunk.offset, chunk.length))
            out = [bytes(view[off:off + n]) for off, n in spans]
            consumed = spans[-1][0] + spans[-1][1] if spans else 0
            tail = bytes(view[consumed:total])
        self._buf[:len(tail)] = tail     # the uncut tail to the front
        self._len = len(tail)
        return out
