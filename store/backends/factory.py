"""Open a backend from the store URL given on the command line or in config.

The decorators are applied here, once, so that the rest of the daemon sees
one Backend whatever the store: S3 gets retries (the network fails now and
then; a local disk error is not worth repeating), every store gets DEBUG
logging of its calls, and every store counts the requests that reach it
(``MeteredBackend``, innermost, so that a retry is one more request).
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from ..errors import InvalidArgument
from .base import Backend
from .local import LocalBackend
from .wrappers import LoggingBackend, MeteredBackend, RetryingBackend

ACCEPTED = "file:///absolute/path, /absolute/path or s3://bucket[/prefix]"


def open_backend(url: str, *, s3_endpoint: str | None = None,
                 s3_region: str | None = None) -> Backend:
    """Return the backend for ``url``; InvalidArgument names the accepted forms."""
    if url.startswith("/") or url.startswith("file:"):
        return LoggingBackend(MeteredBackend(LocalBackend(_local_path(url))))
    if url.startswith("s3://"):
        from .s3 import S3Backend  # boto3 is slow to import; only S3 stores need it

        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise InvalidArgument(f"store URL {url!r} names no bucket; use {ACCEPTED}")
        s3 = S3Backend(bucket, prefix, endpoint_url=s3_endpoint, region=s3_region)
        return LoggingBackend(RetryingBackend(MeteredBackend(s3)))
    raise InvalidArgument(f"unsupported store URL {url!r}; use {ACCEPTED}")


def _local_path(url: str) -> str:
    if url.startswith("/"):
        path = url
    else:
        parts = urlsplit(url)
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            path = ""
    path = os.path.normpath(path) if path.startswith("/") else ""
    if path in ("", "/"):
        raise InvalidArgument(f"store URL {url!r} is not a local absolute path; use {ACCEPTED}")
    return path
