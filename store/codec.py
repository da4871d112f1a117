"""Hashing and compression of blobs (chunks and tree objects).

A blob is named by the BLAKE3-256 hash of its plain bytes.  It is stored
zstd-compressed unless compression does not make it smaller, in which case it
is stored raw; the pack index records which.
"""

from __future__ import annotations

import threading

import blake3
import zstandard

from .errors import IntegrityError

FLAG_ZSTD = 1
ID_LEN = 32
SAMPLE = 32 * 1024
SAMPLE_MIN = 256 * 1024


def blob_id(data: bytes | memoryview) -> bytes:
    return blake3.blake3(data).digest()


class Codec:
    """Compress and decompress blobs; safe to share between threads."""

    def __init__(self, level: int = 1) -> None:
        self.level = level
        self._local = threading.local()

    def _compressor(self) -> zstandard.ZstdCompressor:
        c = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(level=self.level)
        return c

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor()
        return d

    def encode(self, data: bytes | memoryview) -> tuple[bytes | memoryview, int]:
        """Return ``(stored bytes, flags)``.

        Large blobs are first probed with two 32 KiB samples: when those do not
        shrink by 3%, the blob is stored raw without spending a full zstd pass
        on data that is already compressed or random.
        """
        n = len(data)
        if n >= SAMPLE_MIN:
            mid = n // 2
            sample = bytes(data[:SAMPLE]) + bytes(data[mid:mid + SAMPLE])
            if len(self._compressor().compress(sample)) > 0.97 * len(sample):
                return data, 0
        packed = self._compressor().compress(data)
        if len(packed) < len(data):
            return packed, FLAG_ZSTD
        return data, 0

    def decode(self, stored: bytes, flags: int, plain_len: int, expected_id: bytes,
               where: str) -> bytes:
        """Decompress and verify; raise IntegrityError naming ``where``."""
        if flags & FLAG_ZSTD:
            try:
                data = self._decompressor().decompress(stored, max_output_size=plain_len)
            except zstandard.ZstdError as exc:
                raise IntegrityError(f"blob {expected_id.hex()} in {where} does not decompress: {exc}") from exc
        else:
            data = stored
        if len(data) != plain_len or blob_id(data) != expected_id:
            raise IntegrityError(f"blob {expected_id.hex()} in {where} fails its hash check")
        return data
