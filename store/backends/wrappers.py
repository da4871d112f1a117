"""Decorators around any :class:`Backend`: retries, call logging and counts.

They live outside the backends so that every backend gets the same retry
policy and the same log lines, and so that a backend's own code states only
what its store does (restic's backend decorators work the same way).

A backend marks an error worth retrying by raising
:class:`TransientBackendError`; everything else (Conflict, ObjectMissing,
AccessDenied, a plain BackendError) is final.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..errors import BackendError, Conflict, ObjectMissing
from .base import Backend

log = logging.getLogger(__name__)

T = TypeVar("T")


# the meter's names (``MeteredBackend``, ``RetryingBackend.retry_counts``): a file
# upload is a put, a versioned read a get
_METER_OPS = {"put_file": "put", "get_versioned": "get"}


def _area(key: str) -> str:
    """The area of the store a key is in: its first part (``packs``, ``refs`` ...)."""
    return key.partition("/")[0] if "/" in key else "top"


class TransientBackendError(BackendError):
    """A failure that may go away by itself: throttling, a timeout, a 5xx,
    a dropped connection.  Only these are retried by :class:`RetryingBackend`."""


class LostReplyConflict(Conflict):
    """A compare-and-swap found another write in place after one of its own
    attempts lost its reply: that attempt may have landed and been replaced
    since, or never have landed; the store cannot tell which.  A caller that
    can check (is my commit an ancestor of the branch's head now?) should."""


class _Forwarding(Backend):
    """Shared plumbing of the decorators: keep ``inner`` and forward what
    the interface does not name (``root``, ``clean_tmp`` ...)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.url = inner.url

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found normally; guard against
        # recursion while ``inner`` is not set yet (copy, pickle).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def staging_dir(self) -> str | None:
        return self.inner.staging_dir()

    def modified(self, key: str) -> float | None:
        return self.inner.modified(key)

    def describe(self) -> dict:
        return self.inner.describe()

    def enforces_conditional_writes(self) -> bool:
        return self.inner.enforces_conditional_writes()

    def close(self) -> None:
        self.inner.close()


class RetryingBackend(_Forwarding):
    """Retry :class:`TransientBackendError` with exponential backoff and jitter.

    Plain operations are idempotent (objects are immutable, deletes of a
    missing key succeed), so they are simply repeated.  A compare-and-swap is
    not: when its answer is lost, the write may have happened.  Before trying
    again (and when the retry meets a failed precondition), :meth:`put_if`
    reads the key back and reports success if it holds exactly our bytes;
    that is sound because every conditionally written object carries bytes
    unique to its write (refs a random write id; see
    :meth:`Backend.put_if`).  :meth:`delete_if` reports success if the key
    is gone (a delete of a key is wanted gone whoever removed it).  Should
    another writer replace our landed write before the read-back, the store
    cannot tell that from a write that never landed: the caller gets
    :class:`LostReplyConflict`, a Conflict that says so
    (docs/consistency.md, "Lost replies").

    ``list`` is materialized before it is returned, so that a retry never
    yields a key twice.  The retries are counted by operation and area
    (:meth:`retry_counts`, the daemon's ``/metrics``).
    """

    def __init__(self, inner: Backend, attempts: int = 5, base_delay: float = 0.1,
                 max_delay: float = 5.0, *, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(inner)
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._lock = threading.Lock()
        self._retries: dict[tuple[str, str], int] = {}

    def retry_counts(self) -> dict[tuple[str, str], int]:
        """Retries since the store was opened, by (operation, area), in the
        meter's names (``MeteredBackend.counts``)."""
        with self._lock:
            return dict(self._retries)

    def _delay(self, attempt: int) -> float:
        # "Equal jitter": half fixed, half random, so that threads that failed
        # together do not retry together, and no wait collapses to zero.
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return cap / 2 + random.uniform(0, cap / 2)

    def _retry(self, op: str, key: str, fn: Callable[[], T],
               last_look: Callable[[], T | None] | None = None) -> T:
        """``fn`` until it does not fail transiently; when the last attempt
        does, ``last_look`` may still find a result (None: it did not)."""
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except TransientBackendError as exc:
                if attempt == self.attempts:
                    if last_look is not None:
                        with contextlib.suppress(TransientBackendError):
                            if (found := last_look()) is not None:
                                return found
                    log.error("%s %r in %s failed after %d attempts: %s",
                              op, key, self.url, attempt, exc)
                    raise
                counted = (_METER_OPS.get(op, op), _area(key))
                with self._lock:
                    self._retries[counted] = self._retries.get(counted, 0) + 1
                delay = self._delay(attempt)
                log.info("%s %r in %s failed (%s); retry %d of %d in %.2f s",
                         op, key, self.url, exc, attempt, self.attempts - 1, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def put(self, key: str, data: bytes) -> None:
        self._retry("put", key, lambda: self.inner.put(key, data))

    def put_file(self, key: str, path: str) -> None:
        self._retry("put_file", key, lambda: self.inner.put_file(key, path))

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._retry("get", key, lambda: self.inner.get(key, offset, length))

    def stat(self, key: str) -> int | None:
        return self._retry("stat", key, lambda: self.inner.stat(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        keys = self._retry("list", prefix, lambda: [k for k in self.inner.list(prefix)])
        return iter(keys)

    def modified(self, key: str) -> float | None:
        return self._retry("modified", key, lambda: self.inner.modified(key))

    def delete(self, key: str) -> None:
        self._retry("delete", key, lambda: self.inner.delete(key))

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        return self._retry("get_versioned", key, lambda: self.inner.get_versioned(key))

    def put_if(self, key: str, data: bytes, expected: str | None) -> str:
        uncertain = False  # an earlier attempt may have written data

        def ours() -> str | None:
            """The current version if ``key`` holds ``data``: our write landed
            (callers' bytes are unique to each write, see the base contract)."""
            current = self.inner.get_versioned(key)
            return current[1] if current is not None and current[0] == data else None

        def attempt() -> str:
            nonlocal uncertain
            if uncertain and (version := ours()) is not None:
                log.info("put_if %r in %s: the write before the error had landed", key, self.url)
                return version
            try:
                return self.inner.put_if(key, data, expected)
            except TransientBackendError:
                uncertain = True
                raise
            except Conflict as exc:
                if not uncertain:
                    raise
                # A lost earlier attempt may have landed after our read-back.
                if (version := ours()) is not None:
                    log.info("put_if %r in %s: the write before the error had landed",
                             key, self.url)
                    return version
                raise LostReplyConflict(
                    f"{exc}; an earlier attempt's reply was lost, so that write may have "
                    "landed and been replaced by another writer's since") from exc

        def last_look() -> str | None:
            """After the last failure: the network may be back by now."""
            if uncertain and (version := ours()) is not None:
                log.info("put_if %r in %s: the write before the errors had landed", key, self.url)
                return version
            return None

        return self._retry("put_if", key, attempt, last_look)

    def delete_if(self, key: str, expected: str) -> None:
        uncertain = False

        def attempt() -> None:
            nonlocal uncertain
            if uncertain and self.inner.get_versioned(key) is None:
                return  # gone: the delete before the error had landed
            try:
                self.inner.delete_if(key, expected)
            except TransientBackendError:
                uncertain = True
                raise
            except Conflict as exc:
                if not uncertain:
                    raise
                if self.inner.get_versioned(key) is None:
                    return
                raise LostReplyConflict(
                    f"{exc}; an earlier attempt's reply was lost, so that delete may have "
                    "landed and the key been written again since") from exc

        self._retry("delete_if", key, attempt)

    def describe(self) -> dict:
        return {**self.inner.describe(), "retry_attempts": self.attempts}


class _PerCall(_Forwarding):
    """The interface's calls, each run through ``_call`` (and listings
    through ``_listed``), for the decorators that watch every call."""

    def _call(self, op: str, key: str, fn: Callable[[], T], got: Callable[[T], int] | None = None,
              sent: int = 0) -> T:
        raise NotImplementedError

    def _listed(self, prefix: str, count: int, seconds: float, failed: bool) -> None:
        raise NotImplementedError

    def put(self, key: str, data: bytes) -> None:
        self._call("put", key, lambda: self.inner.put(key, data), sent=len(data))

    def put_file(self, key: str, path: str) -> None:
        try:
            nbytes = os.stat(path).st_size
        except OSError:
            nbytes = -1
        self._call("put_file", key, lambda: self.inner.put_file(key, path), sent=nbytes)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._call("get", key, lambda: self.inner.get(key, offset, length), len)

    def stat(self, key: str) -> int | None:
        return self._call("stat", key, lambda: self.inner.stat(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        start = time.monotonic()
        count = 0
        failed = True
        try:
            for key in self.inner.list(prefix):
                count += 1
                yield key
            failed = False
        except GeneratorExit:   # the caller stopped early: not a failure
            failed = False
            raise
        finally:
            self._listed(prefix, count, time.monotonic() - start, failed)

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self.inner.delete(key))

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        return self._call("get_versioned", key, lambda: self.inner.get_versioned(key),
                          lambda r: len(r[0]) if r is not None else 0)

    def put_if(self, key: str, data: bytes, expected: str | None) -> str:
        return self._call("put_if", key, lambda: self.inner.put_if(key, data, expected), sent=len(data))

    def delete_if(self, key: str, expected: str) -> None:
        self._call("delete_if", key, lambda: self.inner.delete_if(key, expected))


class LoggingBackend(_PerCall):
    """Log every call at DEBUG: operation, key, bytes moved, duration."""

    def _call(self, op: str, key: str, fn: Callable[[], T], got: Callable[[T], int] | None = None,
              sent: int = 0) -> T:
        if not log.isEnabledFor(logging.DEBUG):
            return fn()
        start = time.monotonic()
        try:
            result = fn()
        except Exception as exc:
            log.debug("%s %r in %s failed after %.3f s: %s: %s", op, key, self.url,
                      time.monotonic() - start, type(exc).__name__, exc)
            raise
        nbytes = got(result) if got is not None else sent
        log.debug("%s %r in %s: %d bytes, %.3f s", op, key, self.url, nbytes,
                  time.monotonic() - start)
        return result

    def _listed(self, prefix: str, count: int, seconds: float, failed: bool) -> None:
        if not failed:
            log.debug("list %r in %s: %d keys, %.3f s", prefix, self.url, count, seconds)


class MeteredBackend(_PerCall):
    """Count every call that reaches the store, by operation and by the
    area of the store it touches (the key's first part: ``packs``,
    ``refs`` ...): requests, bytes received and sent, errors and seconds.
    Innermost of the decorators, so that each retry is one more request;
    ``trunkfs stats`` shows the counts (:meth:`counts`), and tests read them
    to check how many requests a read made."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self._lock = threading.Lock()
        # (op, area) -> [requests, bytes in, bytes out, errors, seconds]
        self._counts: dict[tuple[str, str], list[float]] = {}

    def counts(self) -> dict[str, dict]:
        """``{op: {requests, bytes_in, bytes_out, errors, seconds, areas: {area: {...}}}}``
        since the store was opened."""
        def figures(c: list[float]) -> dict:
            return {"requests": int(c[0]), "bytes_in": int(c[1]), "bytes_out": int(c[2]),
                    "errors": int(c[3]), "seconds": round(c[4], 3)}
        out: dict[str, dict] = {}
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._counts.items())
        for (op, area), c in items:
            total = out.setdefault(op, {"figures": [0, 0, 0, 0, 0.0], "areas": {}})
            total["figures"] = [a + b for a, b in zip(total["figures"], c)]
            total["areas"][area] = figures(c)
        return {op: {**figures(t["figures"]), "areas": t["areas"]} for op, t in out.items()}

    def _add(self, op: str, key: str, got: int, sent: int, failed: bool, seconds: float) -> None:
        with self._lock:
            c = self._counts.setdefault((op, _area(key)), [0, 0, 0, 0, 0.0])
            c[0] += 1
            c[1] += got
            c[2] += sent
            c[3] += failed
            c[4] += seconds

    def _call(self, op: str, key: str, fn: Callable[[], T], got: Callable[[T], int] | None = None,
              sent: int = 0) -> T:
        op = _METER_OPS.get(op, op)
        sent = max(sent, 0)
        start = time.monotonic()
        try:
            result = fn()
        except ObjectMissing:   # an answer, not a failure of the store
            self._add(op, key, 0, sent, False, time.monotonic() - start)
            raise
        except Exception:
            self._add(op, key, 0, sent, True, time.monotonic() - start)
            raise
        self._add(op, key, got(result) if got is not None else 0, sent, False, time.monotonic() - start)
        return result

    def _listed(self, prefix: str, count: int, seconds: float, failed: bool) -> None:
        self._add("list", prefix, 0, 0, failed, seconds)
