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
    """Cuts one stream into chunks; not thread-safe (one per stream)."""

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
        self._pieces: list[bytes] = []
        self._buffered = 0

    def feed(self, data: bytes) -> list[memoryview]:
        """Add ``data``; return the chunks that are now final (maybe none)."""
        if not data:
            return []
        self._pieces.append(bytes(data) if not isinstance(data, bytes) else data)
        self._buffered += len(data)
        if self._buffered < self._threshold:
            return []
        return self._cut(final=False)

    def finish(self) -> list[memoryview]:
        """End of stream: return every remaining chunk."""
        if not self._buffered:
            return []
        return self._cut(final=True)

    def _cut(self, final: bool) -> list[memoryview]:
        buf = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
        self._pieces = []
        self._buffered = 0
        view = memoryview(buf)
        out: list[memoryview] = []
        consumed = 0
        total = len(buf)
        for chunk in self._cdc.cut_buf(buf):
            if not final and total - chunk.offset < self._max:
                break
            out.append(view[chunk.offset:chunk.offset + chunk.length])
            consumed = chunk.offset + chunk.length
        if consumed < total:
            tail = buf[consumed:]
            self._pieces = [tail]
            self._buffered = len(tail)
        return out
