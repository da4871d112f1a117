"""A store in an S3 bucket (AWS or a compatible endpoint), through boto3.

One boto3 client serves every thread (clients are thread-safe); its pool is
sized for the daemon's worker threads plus parallel multipart uploads.
botocore's own retries are off: :class:`~.wrappers.RetryingBackend` retries
what this module marks as :class:`~.wrappers.TransientBackendError`, so that
retries, backoff and their log lines are the same for every backend.

Refs change by compare-and-swap, done with S3 conditional writes: a PUT with
``If-None-Match: *`` creates, a PUT or DELETE with ``If-Match: <etag>``
replaces or removes; the version token is the ETag.  Before the first
compare-and-swap the backend checks, on a throw-away key under ``locks/``,
that the endpoint enforces these headers.  Some S3-compatible endpoints
answer 501 NotImplemented, and some silently ignore the headers (which would
turn every compare-and-swap into a blind overwrite).  On such an endpoint the
backend logs one WARNING and falls back to read, compare and write under a
process-wide lock.  That is safe because of the daemon's single-writer rule:
one daemon, holding the lock on its state directory, is the only process
writing a store, and inside it this lock serializes every ref update.  It is
NOT safe for two daemons (or other tools) writing the same bucket and prefix
at once; such a setup needs an endpoint with conditional writes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from ..errors import AccessDenied, BackendError, Conflict, InvalidArgument, ObjectMissing
from .base import Backend
from .wrappers import TransientBackendError

log = logging.getLogger(__name__)

T = TypeVar("T")

MiB = 1024 * 1024
#: smallest multipart part S3 accepts (all but the last part)
MIN_PART_SIZE = 5 * MiB

#: top-level names that are never store keys (as in LocalBackend)
_RESERVED = ("tmp", "locks")

#: error codes that mean "try again later"
_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException",
    "RequestThrottled", "RequestThrottledException", "TooManyRequests",
    "TooManyRequestsException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable",
    "PriorRequestNotComplete",
})
_DENIED_CODES = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
    "AccountProblem", "InvalidToken", "ExpiredToken",
})

#: serializes every fallback compare-and-swap in this process (see module doc)
_FALLBACK_LOCK = threading.Lock()

#: exceptions of the network layer that every call translates
_CLIENT_ERRORS = (ClientError, BotoCoreError, S3UploadFailedError)


def _details(exc: ClientError) -> tuple[str, int, str]:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return str(error.get("Code", "")), int(status), str(error.get("Message", ""))


def _is_missing(code: str, status: int) -> bool:
    # HEAD answers carry no body, so a missing key is just "404".
    return code in ("NoSuchKey", "NotFound", "404") or (status == 404 and code != "NoSuchBucket")


def _is_precondition(code: str, status: int) -> bool:
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412)


def _is_unsupported(code: str, status: int) -> bool:
    return status == 501 or code in ("NotImplemented", "NotSupported")


def check_key(key: str) -> None:
    """Reject keys a LocalBackend would reject, so both stores accept the same names."""
    parts = key.split("/")
    if (not key or key.startswith("/") or "\0" in key
            or any(p in ("", ".", "..") for p in parts) or parts[0] in _RESERVED):
        raise BackendError(f"invalid store key {key!r}")


class S3Backend(Backend):
    """Objects under ``prefix`` in ``bucket``; keys map 1:1 to object names."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, conditional_writes: bool | None = None,
                 multipart_threshold: int = 64 * MiB, max_pool_connections: int = 32) -> None:
        """``conditional_writes``: None probes the endpoint before the first
        compare-and-swap; True trusts it; False always uses the locked
        fallback.  ``multipart_threshold``: :meth:`put_file` uploads larger
        files in parts (at least 5 MiB each, as S3 requires)."""
        if not bucket:
            raise InvalidArgument("an S3 store needs a bucket name: s3://bucket[/prefix]")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._prefix = self.prefix + "/" if self.prefix else ""
        self.endpoint_url = endpoint_url
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        options: dict[str, Any] = {
            "retries": {"total_max_attempts": 1, "mode": "standard"},
            "max_pool_connections": max_pool_connections,
            "connect_timeout": 10,
            "read_timeout": 60,
        }
        if endpoint_url:
            # S3-compatible servers commonly want path-style addressing and
            # reject the newer default CRC trailers; chunks carry their own
            # BLAKE3 ids, verified on every read, so nothing is lost.
            options["s3"] = {"addressing_style": "path"}
            if "request_checksum_calculation" in Config.OPTION_DEFAULTS:
                options["request_checksum_calculation"] = "when_required"
                options["response_checksum_validation"] = "when_required"
        session = boto3.session.Session()  # the default session is not thread-safe
        self._client = session.client("s3", endpoint_url=endpoint_url, region_name=region,
                                      config=Config(**options))
        self._transfer = TransferConfig(
            multipart_threshold=max(multipart_threshold, MIN_PART_SIZE),
            multipart_chunksize=max(MIN_PART_SIZE, min(multipart_threshold, 16 * MiB)),
            max_concurrency=4,
            use_threads=True,
        )
        self._conditional = conditional_writes
        self._probe_lock = threading.Lock()

    # -- helpers -------------------------------------------------------------

    def _key(self, key: str) -> str:
        check_key(key)
        return self._prefix + key

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._prefix}{key}"

    def _endpoint(self) -> str:
        return self.endpoint_url or self._client.meta.endpoint_url

    def _error(self, exc: BaseException, op: str, key: str) -> BackendError:
        """Translate a boto3/botocore exception into a store error naming
        bucket, key and operation; transient ones become TransientBackendError."""
        where = self._where(key)
        if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError):
            exc = exc.__context__
        if isinstance(exc, ClientError):
            code, status, message = _details(exc)
            if code == "NoSuchBucket":
                return BackendError(f"bucket {self.bucket!r} does not exist at {self._endpoint()} "
                                    f"(while trying to {op} {key!r})")
            if _is_missing(code, status):
                return ObjectMissing(f"object {key!r} is missing from {where}")
            if status == 403 or code in _DENIED_CODES:
                return AccessDenied(f"access denied to {op} {key!r} in bucket {self.bucket!r} "
                                    f"({where}): {code} {message}".rstrip())
            if code in _TRANSIENT_CODES or status == 429 or (status >= 500 and status != 501):
                return TransientBackendError(f"S3 {op} of {where} failed, maybe temporarily: "
                                             f"{code} (HTTP {status}) {message}".rstrip())
            return BackendError(f"S3 {op} of {where} failed: {code} (HTTP {status}) {message}".rstrip())
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return AccessDenied(f"no usable AWS credentials to {op} {where} ({exc}); set "
                                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or configure a profile")
        if isinstance(exc, SSLError):
            return BackendError(f"TLS error talking to {self._endpoint()} to {op} {where}: {exc}")
        if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError,
                            ConnectionError, TimeoutError)):
            return TransientBackendError(f"cannot reach {self._endpoint()} to {op} {where}: {exc}")
        return BackendError(f"S3 {op} of {where} failed: {type(exc).__name__}: {exc}")

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except _CLIENT_ERRORS as exc:
            raise self._error(exc, op, key) from exc

    # -- interface -----------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        full = self._key(key)
        self._call("put", key, lambda: self._client.put_object(Bucket=self.bucket, Key=full, Body=data))

    def put_file(self, key: str, path: str) -> None:
        # S3 copies the file; it stays where it is for the caller to remove.
        full = self._key(key)
        try:
            self._client.upload_file(path, self.bucket, full, Config=self._transfer)
        except _CLIENT_ERRORS as exc:
            raise self._error(exc, "upload", key) from exc
        except OSError as exc:  # the local file, not the network (those are BotoCoreErrors)
            raise BackendError(f"cannot read {path} to upload it to {self._where(key)}: "
                               f"{exc.strerror or exc}") from exc

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        full = self._key(key)
        if offset < 0 or (length is not None and length < 0):
            raise InvalidArgument(f"bad range offset={offset} length={length} for {key!r}")
        if length == 0:  # HTTP cannot ask for zero bytes; only existence matters
            if self.stat(key) is None:
                raise ObjectMissing(f"object {key!r} is missing from {self._where(key)}")
            return b""
        args: dict[str, str] = {}
        if length is not None:
            args["Range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            args["Range"] = f"bytes={offset}-"
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=full, **args)
            data = response["Body"].read()
        except ClientError as exc:
            code, status, _ = _details(exc)
            if code == "InvalidRange" or status == 416:
                return b""  # the range starts at or past the end
            raise self._error(exc, "get", key) from exc
        except _CLIENT_ERRORS as exc:
            raise self._error(exc, "get", key) from exc
        if args and "ContentRange" not in response:
            # An endpoint that ignores Range sends everything: cut it here.
            data = data[offset:] if length is None else data[offset:offset + length]
        return data

    def _head(self, key: str) -> dict | None:
        """HEAD of ``key`` (None: no such object)."""
        try:
            return self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            code, status, _ = _details(exc)
            if _is_missing(code, status):
                return None
            raise self._error(exc, "stat", key) from exc
        except _CLIENT_ERRORS as exc:
            raise self._error(exc, "stat", key) from exc

    def stat(self, key: str) -> int | None:
        response = self._head(key)
        return None if response is None else int(response["ContentLength"])

    def modified(self, key: str) -> float | None:
        response = self._head(key)
        when = response.get("LastModified") if response is not None else None
        return when.timestamp() if when is not None else None

    def list(self, prefix: str = "") -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        skip = len(self._prefix)
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._prefix + prefix):
                for item in page.get("Contents", ()):
                    key = item["Key"][skip:]
                    if key.split("/", 1)[0] not in _RESERVED:
                        yield key
        except _CLIENT_ERRORS as exc:
            raise self._error(exc, "list", prefix) from exc

    def delete(self, key: str) -> None:
        full = self._key(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            code, status, _ = _details(exc)
            if not _is_missing(code, status):
                raise self._error(exc, "delete", key) from exc
        except _CLIENT_ERRORS as exc:
            raise self._error(exc, "delete", key) from exc

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        full = self._key(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=full)
            return response["Body"].read(), response["ETag"]
        except ClientError as exc:
            code, status, _ = _details(exc)
            if _is_missing(code, status):
                return None
            raise self._error(exc, "get", key) from exc
        except _CLIENT_ERRORS as exc:
            raise self._error(exc, "get", key) from exc

    # -- compare-and-swap ----------------------------------------------------

    def put_if(self, key: str, data: bytes, expected: str | None) -> str:
        full = self._key(key)
        if not self._conditional_writes():
            return self._locked_put_if(key, data, expected)
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
        try:
            response = self._client.put_object(Bucket=self.bucket, Key=full, Body=data, **condition)
        except ClientError as exc:
            code, status, _ = _details(exc)
            if _is_precondition(code, status) or (expected is not None and _is_missing(code, status)):
                raise self._conflict(key, expected) from exc
            if _is_unsupported(code, status):
                self._give_up_conditional(f"it answers {code or status} to a conditional PUT")
                return self._locked_put_if(key, data, expected)
            raise self._error(exc, "put_if", key) from exc
        except _CLIENT_ERRORS as exc:
            raise self._error(exc, "put_if", key) from exc
        return response["ETag"]

    def delete_if(self, key: str, expected: str) -> None:
        full = self._key(key)
        if not self._conditional_writes():
            return self._locked_delete_if(key, expected)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=full, IfMatch=expected)
        except ClientError as exc:
            code, status, _ = _details(exc)
            if _is_precondition(code, status) or _is_missing(code, status):
                raise self._conflict(key, expected, "not deleted") from exc
            if _is_unsupported(code, status):
                self._give_up_conditional(f"it answers {code or status} to a conditional DELETE")
                return self._locked_delete_if(key, expected)
            raise self._error(exc, "delete_if", key) from exc
        except _CLIENT_ERRORS as exc:
            raise self._error(exc, "delete_if", key) from exc

    def _conflict(self, key: str, expected: str | None, what: str = "") -> Conflict:
        state = "already exists" if expected is None else f"is no longer at version {expected}"
        return Conflict(f"{key!r} in {self._where(key)} {state}{'; ' + what if what else ''}")

    def _locked_put_if(self, key: str, data: bytes, expected: str | None) -> str:
        full = self._key(key)
        with _FALLBACK_LOCK:
            current = self.get_versioned(key)
            if (current[1] if current else None) != expected:
                raise self._conflict(key, expected)
            response = self._call("put_if", key, lambda: self._client.put_object(
                Bucket=self.bucket, Key=full, Body=data))
            return response["ETag"]

    def _locked_delete_if(self, key: str, expected: str) -> None:
        with _FALLBACK_LOCK:
            current = self.get_versioned(key)
            if current is None or current[1] != expected:
                raise self._conflict(key, expected, "not deleted")
            self.delete(key)

    def _give_up_conditional(self, reason: str) -> None:
        with self._probe_lock:
            already = self._conditional is False
            self._conditional = False
        if not already:
            self._warn_fallback(reason)

    def _warn_fallback(self, reason: str) -> None:
        log.warning("the S3 endpoint %s of %s does not enforce conditional writes (%s); "
                    "refs are updated by read-compare-write under a process lock, which is "
                    "safe only while this daemon is the store's single writer",
                    self._endpoint(), self.url, reason)

    def enforces_conditional_writes(self) -> bool:
        return self._conditional_writes()

    def _conditional_writes(self) -> bool:
        """Whether to use conditional requests; probes the endpoint once."""
        if self._conditional is None:
            reason = None
            with self._probe_lock:
                if self._conditional is None:
                    reason = self._probe()
                    self._conditional = reason is None
            if reason is not None:
                self._warn_fallback(reason)
        return bool(self._conditional)

    def _probe(self) -> str | None:
        """Check on a throw-away key that the endpoint refuses writes whose
        precondition fails; return why not, or None when it does."""
        key = f"locks/cas-probe-{uuid.uuid4().hex}"
        full = self._prefix + key
        wrong = '"00000000000000000000000000000000"'
        def put(**condition: str) -> Any:
            return self._client.put_object(Bucket=self.bucket, Key=full, Body=b"", **condition)

        # (what is tested, the request, whether it must succeed)
        checks: list[tuple[str, Callable[[], Any], bool]] = [
            ("If-None-Match on PUT", lambda: put(IfNoneMatch="*"), True),  # creates the key
            ("If-None-Match on PUT", lambda: put(IfNoneMatch="*"), False),
            ("If-Match on PUT", lambda: put(IfMatch=wrong), False),
            ("If-Match on DELETE", lambda: self._client.delete_object(
                Bucket=self.bucket, Key=full, IfMatch=wrong), False),
        ]
        try:
            for name, call, should_pass in checks:
                try:
                    call()
                except ClientError as exc:
                    code, status, _ = _details(exc)
                    if _is_unsupported(code, status):
                        return f"it answers {code or status} to {name}"
                    if should_pass or not _is_precondition(code, status):
                        raise
                else:
                    if not should_pass:
                        return f"it ignores {name}"
            return None
        except _CLIENT_ERRORS as exc:
            raise self._error(exc, "test conditional writes on", key) from exc
        finally:
            with contextlib.suppress(Exception):
                self._client.delete_object(Bucket=self.bucket, Key=full)

    # -- the rest ------------------------------------------------------------

    def describe(self) -> dict:
        return {
            "url": self.url,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "endpoint": self._endpoint(),
            "region": self._client.meta.region_name,
            "conditional_writes": {None: "not tested yet", True: "yes",
                                   False: "no (process lock)"}[self._conditional],
        }

    def close(self) -> None:
        self._client.close()
