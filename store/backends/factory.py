"""TEMPORARY minimal factory (the full one with S3 is being written)."""
from __future__ import annotations

from ..errors import InvalidArgument
from .base import Backend
from .local import LocalBackend


def open_backend(url: str, *, s3_endpoint: str | None = None, s3_region: str | None = None) -> Backend:
    if url.startswith("file://"):
        return LocalBackend(url[len("file://"):])
    if url.startswith("/"):
        return LocalBackend(url)
    raise InvalidArgument(f"unsupported store URL {url!r}")
