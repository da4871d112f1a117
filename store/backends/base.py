"""The interface every object-store backend implements.

Keys are ``/``-separated relative names such as ``packs/ab/ab12...``.
Objects are immutable except refs, which change only through
:meth:`Backend.put_if` / :meth:`Backend.delete_if` (compare-and-swap on an
opaque version token).  Retries, rate limits and logging are decorators
(see :mod:`trunkfs.store.backends.wrappers`), not part of a backend.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator


class Backend(abc.ABC):
    """A flat key/value object store."""

    #: the URL this backend was opened from, for messages
    url: str = ""

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` at ``key`` atomically (readers see all or nothing)."""

    @abc.abstractmethod
    def put_file(self, key: str, path: str) -> None:
        """Store the content of local file ``path`` at ``key``, atomically.

        The backend may consume the file (move it into place); the caller
        must not use ``path`` afterwards, and removes it if it still exists.
        """

    @abc.abstractmethod
    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return ``length`` bytes of ``key`` from ``offset`` (all when None).

        A range past the end returns what exists.  Raises ObjectMissing.
        """

    @abc.abstractmethod
    def stat(self, key: str) -> int | None:
        """Return the size of ``key``, or None when it does not exist."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield every key that starts with ``prefix``, in no set order."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""

    @abc.abstractmethod
    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        """Return ``(data, version)`` of a mutable object, or None."""

    @abc.abstractmethod
    def put_if(self, key: str, data: bytes, expected: str | None) -> str:
        """Compare-and-swap: write ``data`` only if ``key`` is still at ``expected``.

        ``expected`` None means the key must not exist.  Returns the new
        version; raises Conflict when the current version differs.

        Callers pass bytes unique to this write (a ref carries a random
        write id; a repo or pipeline record an id and times).  Two things
        rest on it: a retry whose earlier attempt lost its reply recognises
        its own landed write by reading the key back (see
        :class:`~.wrappers.RetryingBackend`), and a version token, derived
        from the bytes on both backends (ETag, content hash), is never seen
        twice, so a stale ``expected`` cannot match again after the key
        returns to an earlier value (no ABA).
        """

    @abc.abstractmethod
    def delete_if(self, key: str, expected: str) -> None:
        """Delete ``key`` only if it is still at version ``expected``; else Conflict.

        A missing key is a Conflict here; only a retry of a delete whose
        reply was lost takes "already gone" as its own success.
        """

    def modified(self, key: str) -> float | None:
        """When ``key`` was last written (seconds since the epoch, the store's
        clock), or None when unknown or missing.  The collector never
        deletes an object whose age it cannot tell."""
        return None

    def staging_dir(self) -> str | None:
        """A directory on the store's own filesystem where :meth:`put_file`
        can move files from without copying, or None."""
        return None

    def describe(self) -> dict:
        """Facts for ``trunkfs stats`` and messages."""
        return {"url": self.url}

    def enforces_conditional_writes(self) -> bool:
        """Whether :meth:`put_if` and :meth:`delete_if` are enforced by the
        store itself (so several daemons may share it), not only inside this
        process.  May probe the store once."""
        return True

    def close(self) -> None:
        """Release connections and file handles."""
