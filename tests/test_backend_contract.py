"""One conformance suite for every backend (store/backends/base.py: every
backend shares one small interface), run on a local directory and on a real
S3 endpoint (moto's server, see tests/s3server.py), plus the S3-only details
and the retry/logging decorators."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from trunkfs.store.backends.base import Backend
from trunkfs.store.backends.factory import open_backend
from trunkfs.store.backends.local import LocalBackend
from trunkfs.store.backends.s3 import S3Backend
from trunkfs.store.backends.wrappers import LoggingBackend, MeteredBackend, RetryingBackend, TransientBackendError
from trunkfs.store.errors import AccessDenied, BackendError, Conflict, InvalidArgument, ObjectMissing

MiB = 1024 * 1024
PREFIX = "some/prefix"


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        b = open_backend(f"file://{tmp_path / 'store'}")
    else:
        endpoint, bucket = request.getfixturevalue("s3_bucket")
        b = open_backend(f"s3://{bucket}/{PREFIX}", s3_endpoint=endpoint)
    try:
        yield b
    finally:
        b.close()


def s3_backend(s3_bucket: tuple[str, str], **kw) -> S3Backend:
    endpoint, bucket = s3_bucket
    return S3Backend(bucket, PREFIX, endpoint_url=endpoint, **kw)


# -- the contract ----------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 1000, MiB + 17])
def test_put_get_round_trip(backend: Backend, size: int) -> None:
    data = random_bytes(size)
    backend.put("packs/ab/obj", data)
    assert backend.get("packs/ab/obj") == data
    assert backend.stat("packs/ab/obj") == size


def test_overwrite_replaces_the_whole_object(backend: Backend) -> None:
    backend.put("k", b"a much longer first version")
    backend.put("k", b"short")
    assert backend.get("k") == b"short"
    assert backend.stat("k") == 5


def test_ranged_get(backend: Backend) -> None:
    data = bytes(range(256)) * 40
    n = len(data)
    backend.put("packs/p", data)
    assert backend.get("packs/p", 0, 10) == data[:10]
    assert backend.get("packs/p", 5000, 100) == data[5000:5100]
    assert backend.get("packs/p", n - 10, 10) == data[-10:]
    assert backend.get("packs/p", n - 5, 100) == data[-5:]  # runs past the end
    assert backend.get("packs/p", n + 10, 5) == b""  # starts past the end
    assert backend.get("packs/p", n, 1) == b""
    assert backend.get("packs/p", 100) == data[100:]  # length None: to the end
    assert backend.get("packs/p", n) == b""
    assert backend.get("packs/p", 0, 0) == b""
    assert backend.get("packs/p", 7, None) == data[7:]


def test_ranged_get_of_an_empty_object(backend: Backend) -> None:
    backend.put("empty", b"")
    assert backend.get("empty", 0, 10) == b""
    assert backend.get("empty", 3) == b""


def test_ranged_get_of_a_missing_object_raises(backend: Backend) -> None:
    for offset, length in [(0, 10), (5, None), (0, 0)]:
        with pytest.raises(ObjectMissing, match="nope"):
            backend.get("nope", offset, length)


def test_stat(backend: Backend) -> None:
    backend.put("dir/file", b"12345")
    assert backend.stat("dir/file") == 5
    assert backend.stat("dir/other") is None
    assert backend.stat("missing") is None
    assert backend.stat("dir") is None  # a prefix of keys is not an object
    assert backend.stat("dir/file/below") is None


def test_list_by_prefix_yields_exactly_the_keys(backend: Backend) -> None:
    keys = ["packs/ab/ab01", "packs/ab/ab02", "packs/cd/cd01", "refs/repo/main",
            "refs/repo2/main", "top"]
    for key in keys:
        backend.put(key, key.encode())
    backend.put_if("refs/repo/dev", b"x", None)  # a locked CAS leaves lock files on disk
    keys.append("refs/repo/dev")
    staging = backend.staging_dir()
    if staging is not None:  # an unfinished write must not show as an object
        Path(staging, "put-unfinished").write_bytes(b"partial")

    assert sorted(backend.list()) == sorted(keys)
    assert sorted(backend.list("")) == sorted(keys)
    assert sorted(backend.list("packs/")) == ["packs/ab/ab01", "packs/ab/ab02", "packs/cd/cd01"]
    assert sorted(backend.list("packs/ab")) == ["packs/ab/ab01", "packs/ab/ab02"]
    assert sorted(backend.list("packs/ab/ab0")) == ["packs/ab/ab01", "packs/ab/ab02"]
    assert sorted(backend.list("pack")) == ["packs/ab/ab01", "packs/ab/ab02", "packs/cd/cd01"]
    assert sorted(backend.list("refs/repo/")) == ["refs/repo/dev", "refs/repo/main"]
    assert sorted(backend.list("refs/repo")) == ["refs/repo/dev", "refs/repo/main", "refs/repo2/main"]
    assert list(backend.list("top")) == ["top"]
    assert list(backend.list("nothing/")) == []
    assert list(backend.list("packs/zz/")) == []
    assert list(backend.list("tmp/")) == []
    assert list(backend.list("../")) == []


def test_delete(backend: Backend) -> None:
    backend.put("a/1", b"one")
    backend.put("a/2", b"two")
    backend.delete("a/1")
    assert backend.stat("a/1") is None
    assert list(backend.list("a/")) == ["a/2"]
    with pytest.raises(ObjectMissing):
        backend.get("a/1")
    backend.delete("a/1")  # deleting a missing key is fine
    backend.delete("never/there")
    assert backend.get("a/2") == b"two"


def test_get_of_a_missing_object_names_the_key(backend: Backend) -> None:
    with pytest.raises(ObjectMissing) as info:
        backend.get("packs/00/missing-object")
    assert "packs/00/missing-object" in str(info.value)
    assert isinstance(info.value, BackendError)
    assert backend.get_versioned("packs/00/missing-object") is None


@pytest.mark.parametrize("where", ["elsewhere", "staging"])
def test_put_file(backend: Backend, tmp_path: Path, where: str) -> None:
    data = random_bytes(3 * MiB + 123)
    folder = backend.staging_dir() if where == "staging" else None
    if where == "staging" and folder is None:
        pytest.skip("this backend has no staging directory")
    path = Path(folder or tmp_path) / "upload.tmp"
    path.write_bytes(data)
    backend.put_file("packs/big", str(path))
    if where == "elsewhere":  # only a file in the staging directory may be consumed
        assert path.read_bytes() == data
    path.unlink(missing_ok=True)  # the caller's job
    assert backend.stat("packs/big") == len(data)
    assert backend.get("packs/big") == data
    assert backend.get("packs/big", 2 * MiB, 1000) == data[2 * MiB:2 * MiB + 1000]


def test_put_file_of_a_missing_file_is_a_backend_error(backend: Backend, tmp_path: Path) -> None:
    with pytest.raises(BackendError):
        backend.put_file("packs/x", str(tmp_path / "not-there"))
    assert backend.stat("packs/x") is None


def test_compare_and_swap(backend: Backend) -> None:
    key = "refs/repo/main"
    v1 = backend.put_if(key, b"commit-1", None)
    assert backend.get_versioned(key) == (b"commit-1", v1)
    with pytest.raises(Conflict):
        backend.put_if(key, b"commit-x", None)  # must not exist yet
    assert backend.get(key) == b"commit-1"

    v2 = backend.put_if(key, b"commit-2", v1)
    assert v2 != v1
    assert backend.get_versioned(key) == (b"commit-2", v2)
    with pytest.raises(Conflict):
        backend.put_if(key, b"commit-3", v1)  # stale
    assert backend.get(key) == b"commit-2"
    with pytest.raises(Conflict):
        backend.put_if("refs/repo/none", b"x", v1)  # expected a version, none exists
    assert backend.stat("refs/repo/none") is None

    with pytest.raises(Conflict):
        backend.delete_if(key, v1)  # stale
    assert backend.get(key) == b"commit-2"
    backend.delete_if(key, v2)
    assert backend.stat(key) is None
    assert backend.get_versioned(key) is None
    with pytest.raises(Conflict):
        backend.delete_if(key, v2)  # already gone
    v3 = backend.put_if(key, b"again", None)  # may be created again
    assert backend.get_versioned(key) == (b"again", v3)


def _count_concurrently(backend: Backend, threads: int = 8, rounds: int = 20) -> int:
    """Each thread increments a counter ``rounds`` times by read, +1,
    compare-and-swap, again on Conflict; returns the final value."""
    key = "refs/counter/main"
    backend.put_if(key, b"0", None)
    start = threading.Barrier(threads)

    def worker() -> int:
        start.wait()
        conflicts = 0
        for _ in range(rounds):
            while True:
                found = backend.get_versioned(key)
                assert found is not None
                data, version = found
                try:
                    backend.put_if(key, str(int(data) + 1).encode(), version)
                    break
                except Conflict:
                    conflicts += 1
                    time.sleep(random.uniform(0, 0.01))  # back off, as real callers do
        return conflicts

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
        conflicts = sum(f.result() for f in futures)
    logging.getLogger(__name__).info("%d conflicts", conflicts)
    return int(backend.get(key))


def test_concurrent_compare_and_swap_loses_no_update(backend: Backend) -> None:
    assert _count_concurrently(backend) == 160


def test_invalid_keys_are_rejected(backend: Backend) -> None:
    for key in ["../x", "/abs", "", "a//b", "a/./b", "tmp/x", "locks/cas"]:
        with pytest.raises(BackendError, match="invalid store key"):
            backend.put(key, b"x")
        with pytest.raises(BackendError, match="invalid store key"):
            backend.get(key)
        with pytest.raises(BackendError, match="invalid store key"):
            backend.stat(key)
        with pytest.raises(BackendError, match="invalid store key"):
            backend.delete(key)
    assert list(backend.list()) == []


def test_local_rejects_a_key_escaping_its_root(tmp_path: Path) -> None:
    b = LocalBackend(str(tmp_path / "store"))
    (tmp_path / "secret").write_bytes(b"outside")
    with pytest.raises(BackendError, match="invalid store key"):
        b.get("../secret")
    with pytest.raises(BackendError, match="invalid store key"):
        b.put("../escaped", b"x")
    assert not (tmp_path / "escaped").exists()
    assert list(b.list("../")) == []


# -- S3 specifics ----------------------------------------------------------------

def test_s3_objects_live_under_the_prefix(s3_bucket: tuple[str, str]) -> None:
    endpoint, bucket = s3_bucket
    client = boto3.session.Session().client("s3", endpoint_url=endpoint)
    client.put_object(Bucket=bucket, Key="outside/prefix", Body=b"not ours")
    b = open_backend(f"s3://{bucket}/{PREFIX}", s3_endpoint=endpoint)
    assert b.url == f"s3://{bucket}/{PREFIX}"
    b.put("packs/1", b"ours")
    b.put_if("refs/r/main", b"c", None)  # the conditional-write probe leaves nothing behind
    names = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert names == ["outside/prefix", f"{PREFIX}/packs/1", f"{PREFIX}/refs/r/main"]
    assert sorted(b.list()) == ["packs/1", "refs/r/main"]
    assert b.describe()["conditional_writes"] == "yes"
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/locks/cas-probe-left-by-a-crash", Body=b"")
    assert sorted(b.list()) == ["packs/1", "refs/r/main"]
    client.close()


def test_s3_missing_object_message_names_bucket_and_key(s3_bucket: tuple[str, str]) -> None:
    endpoint, bucket = s3_bucket
    b = open_backend(f"s3://{bucket}/{PREFIX}", s3_endpoint=endpoint)
    with pytest.raises(ObjectMissing) as info:
        b.get("packs/zz/nothing")
    assert bucket in str(info.value) and "packs/zz/nothing" in str(info.value)


def test_s3_big_file_is_uploaded_in_parts(s3_bucket: tuple[str, str], tmp_path: Path) -> None:
    b = s3_backend(s3_bucket, multipart_threshold=5 * MiB)
    data = random_bytes(11 * MiB + 5)
    path = tmp_path / "pack"
    path.write_bytes(data)
    b.put_file("packs/big", str(path))
    assert path.exists()  # S3 copies; removing the file is the caller's job
    found = b.get_versioned("packs/big")
    assert found is not None
    assert found[0] == data
    assert found[1].strip('"').endswith("-3")  # a multipart ETag: 5 + 5 + 1 MiB
    assert b.get("packs/big", 5 * MiB - 10, 20) == data[5 * MiB - 10:5 * MiB + 10]
    b.close()


def test_s3_missing_bucket_is_a_backend_error_naming_it(s3_server: str) -> None:
    b = open_backend("s3://trunkfs-no-such-bucket/p", s3_endpoint=s3_server)
    for call in (lambda: b.get("k"), lambda: b.put("k", b"x"), lambda: list(b.list()),
                 lambda: b.get_versioned("k")):
        with pytest.raises(BackendError) as info:
            call()
        assert not isinstance(info.value, (ObjectMissing, TransientBackendError))
        assert "trunkfs-no-such-bucket" in str(info.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_s3_unreachable_endpoint_is_transient_and_named(s3_server: str) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    b = S3Backend("some-bucket", "p", endpoint_url=endpoint)
    with pytest.raises(TransientBackendError) as info:
        b.get("packs/k")
    message = str(info.value)
    assert "some-bucket" in message and "packs/k" in message and "get" in message
    assert endpoint in message


@pytest.mark.parametrize("code, status, kind, transient", [
    ("AccessDenied", 403, AccessDenied, False),
    ("NoSuchKey", 404, ObjectMissing, False),
    ("NoSuchBucket", 404, BackendError, False),
    ("SlowDown", 503, TransientBackendError, True),
    ("InternalError", 500, TransientBackendError, True),
    ("RequestTimeout", 400, TransientBackendError, True),
    ("NotImplemented", 501, BackendError, False),
    ("InvalidArgument", 400, BackendError, False),
])
def test_s3_error_mapping(code: str, status: int, kind: type, transient: bool) -> None:
    b = S3Backend("the-bucket", "pre", endpoint_url="http://127.0.0.1:9")
    exc = ClientError({"Error": {"Code": code, "Message": "m"},
                       "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")
    error = b._error(exc, "get", "packs/k")
    assert type(error) is kind
    assert isinstance(error, TransientBackendError) == transient
    assert "the-bucket" in str(error)
    if code != "NoSuchBucket":
        assert "packs/k" in str(error)
    b.close()


def test_s3_fallback_compare_and_swap_without_conditional_writes(
        s3_bucket: tuple[str, str]) -> None:
    b = s3_backend(s3_bucket, conditional_writes=False)
    v1 = b.put_if("refs/r/main", b"1", None)
    with pytest.raises(Conflict):
        b.put_if("refs/r/main", b"2", None)
    with pytest.raises(Conflict):
        b.put_if("refs/r/main", b"2", '"stale"')
    v2 = b.put_if("refs/r/main", b"2", v1)
    with pytest.raises(Conflict):
        b.delete_if("refs/r/main", v1)
    b.delete_if("refs/r/main", v2)
    assert b.stat("refs/r/main") is None
    assert _count_concurrently(b, threads=4, rounds=10) == 40
    b.close()


@pytest.mark.allow_warnings
def test_s3_endpoint_ignoring_conditions_is_detected(
        s3_bucket: tuple[str, str], caplog: pytest.LogCaptureFixture) -> None:
    b = s3_backend(s3_bucket)

    def drop_conditions(request, **_) -> None:  # what such an endpoint does with them
        for name in ("If-Match", "If-None-Match"):
            if name in request.headers:
                del request.headers[name]

    b._client.meta.events.register("before-sign.s3", drop_conditions)
    b.put_if("refs/r/main", b"1", None)
    with pytest.raises(Conflict):
        b.put_if("refs/r/main", b"2", None)
    assert b.get("refs/r/main") == b"1"
    assert b.describe()["conditional_writes"] == "no (process lock)"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "does not enforce conditional writes" in warnings[0].getMessage()
    assert "ignores If-None-Match" in warnings[0].getMessage()
    assert list(b.list()) == ["refs/r/main"]  # the probe key is gone
    b.close()


# -- the decorators --------------------------------------------------------------

class MemoryBackend(Backend):
    """An in-memory *inner* backend for the decorator tests, which fails on
    demand: ``fail_before[op]`` errors are raised before the operation does
    anything, ``fail_after[op]`` ones after it took effect (a lost answer)."""

    url = "memory://"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.calls: Counter[str] = Counter()
        self.fail_before: dict[str, list[Exception]] = {}
        self.fail_after: dict[str, list[Exception]] = {}

    def _enter(self, op: str) -> None:
        self.calls[op] += 1
        if self.fail_before.get(op):
            raise self.fail_before[op].pop(0)

    def _leave(self, op: str) -> None:
        if self.fail_after.get(op):
            raise self.fail_after[op].pop(0)

    @staticmethod
    def version(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def put(self, key: str, data: bytes) -> None:
        self._enter("put")
        self.objects[key] = data
        self._leave("put")

    def put_file(self, key: str, path: str) -> None:
        self._enter("put_file")
        self.objects[key] = Path(path).read_bytes()

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        self._enter("get")
        if key not in self.objects:
            raise ObjectMissing(f"object {key!r} is missing")
        data = self.objects[key]
        return data[offset:] if length is None else data[offset:offset + length]

    def stat(self, key: str) -> int | None:
        self._enter("stat")
        return len(self.objects[key]) if key in self.objects else None

    def list(self, prefix: str = "") -> Iterator[str]:
        self._enter("list")
        for key in list(self.objects):
            if key.startswith(prefix):
                yield key
                self._leave("list")

    def delete(self, key: str) -> None:
        self._enter("delete")
        self.objects.pop(key, None)

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        self._enter("get_versioned")
        data = self.objects.get(key)
        return None if data is None else (data, self.version(data))

    def put_if(self, key: str, data: bytes, expected: str | None) -> str:
        self._enter("put_if")
        current = self.objects.get(key)
        if (None if current is None else self.version(current)) != expected:
            raise Conflict(f"{key!r} changed")
        self.objects[key] = data
        self._leave("put_if")
        return self.version(data)

    def delete_if(self, key: str, expected: str) -> None:
        self._enter("delete_if")
        current = self.objects.get(key)
        if current is None or self.version(current) != expected:
            raise Conflict(f"{key!r} changed")
        del self.objects[key]
        self._leave("delete_if")


def retrying(inner: Backend, sleeps: list[float], **kw) -> RetryingBackend:
    return RetryingBackend(inner, base_delay=0.01, sleep=sleeps.append, **kw)


def test_retry_returns_the_value_after_transient_errors(caplog: pytest.LogCaptureFixture) -> None:
    inner = MemoryBackend()
    inner.objects["k"] = b"value"
    inner.fail_before["get"] = [TransientBackendError("slow down"), TransientBackendError("timeout")]
    sleeps: list[float] = []
    caplog.set_level(logging.INFO, logger="trunkfs.store.backends.wrappers")
    assert retrying(inner, sleeps).get("k", 1, 3) == b"alu"
    assert inner.calls["get"] == 3
    assert len(sleeps) == 2
    assert 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02  # doubling, with jitter
    retries = [r.getMessage() for r in caplog.records
               if r.name == "trunkfs.store.backends.wrappers" and r.levelno == logging.INFO]
    assert len(retries) == 2 and "slow down" in retries[0] and "'k'" in retries[0]


def test_retry_waits_at_most_max_delay() -> None:
    inner = MemoryBackend()
    inner.fail_before["stat"] = [TransientBackendError("x") for _ in range(9)]
    sleeps: list[float] = []
    r = RetryingBackend(inner, attempts=10, base_delay=0.1, max_delay=0.3, sleep=sleeps.append)
    assert r.stat("k") is None
    assert len(sleeps) == 9 and max(sleeps) <= 0.3 and min(sleeps[3:]) >= 0.15


@pytest.mark.parametrize("error", [Conflict("changed"), ObjectMissing("gone"),
                                   AccessDenied("denied"), BackendError("broken")])
def test_final_errors_are_not_retried(error: Exception) -> None:
    inner = MemoryBackend()
    inner.fail_before["put_if"] = [error]
    sleeps: list[float] = []
    with pytest.raises(type(error)):
        retrying(inner, sleeps).put_if("refs/x", b"1", None)
    assert inner.calls["put_if"] == 1
    assert sleeps == []
    assert "refs/x" not in inner.objects


@pytest.mark.allow_warnings
def test_retry_gives_up_and_logs_an_error(caplog: pytest.LogCaptureFixture) -> None:
    inner = MemoryBackend()
    inner.fail_before["put"] = [TransientBackendError(f"down {i}") for i in range(5)]
    sleeps: list[float] = []
    with pytest.raises(TransientBackendError, match="down 2"):
        retrying(inner, sleeps, attempts=3).put("k", b"v")
    assert inner.calls["put"] == 3 and len(sleeps) == 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "after 3 attempts" in errors[0].getMessage()


def test_put_if_whose_answer_was_lost_is_a_success() -> None:
    inner = MemoryBackend()
    inner.fail_after["put_if"] = [TransientBackendError("connection reset")]
    version = retrying(inner, []).put_if("refs/r", b"new", None)
    assert version == MemoryBackend.version(b"new")
    assert inner.objects["refs/r"] == b"new"
    assert inner.calls["put_if"] == 1  # not written twice


def test_put_if_that_did_not_land_is_retried() -> None:
    inner = MemoryBackend()
    inner.objects["refs/r"] = b"old"
    old = MemoryBackend.version(b"old")
    inner.fail_before["put_if"] = [TransientBackendError("503")]
    assert retrying(inner, []).put_if("refs/r", b"new", old) == MemoryBackend.version(b"new")
    assert inner.calls["put_if"] == 2
    assert inner.objects["refs/r"] == b"new"


def test_put_if_retry_after_another_writer_is_a_conflict() -> None:
    inner = MemoryBackend()
    inner.objects["refs/r"] = b"old"
    old = MemoryBackend.version(b"old")
    inner.fail_before["put_if"] = [TransientBackendError("503")]

    def other_writer(_delay: float) -> None:
        inner.objects["refs/r"] = b"theirs"

    with pytest.raises(Conflict):
        RetryingBackend(inner, sleep=other_writer).put_if("refs/r", b"mine", old)
    assert inner.objects["refs/r"] == b"theirs"


def test_delete_if_whose_answer_was_lost_is_a_success() -> None:
    inner = MemoryBackend()
    inner.objects["refs/r"] = b"v"
    inner.fail_after["delete_if"] = [TransientBackendError("connection reset")]
    retrying(inner, []).delete_if("refs/r", MemoryBackend.version(b"v"))
    assert "refs/r" not in inner.objects
    assert inner.calls["delete_if"] == 1


def test_retried_list_yields_each_key_once() -> None:
    inner = MemoryBackend()
    inner.objects.update({"a/1": b"", "a/2": b"", "b/1": b""})
    inner.fail_after["list"] = [TransientBackendError("reset mid-listing")]
    assert sorted(retrying(inner, []).list("a/")) == ["a/1", "a/2"]
    assert inner.calls["list"] == 2


def test_decorators_forward_everything_else(tmp_path: Path) -> None:
    local = LocalBackend(str(tmp_path / "store"))
    b = LoggingBackend(RetryingBackend(local))
    assert b.url == local.url
    assert b.staging_dir() == local.staging_dir()
    assert b.root == local.root  # not in the interface: forwarded
    assert b.clean_tmp() == 0
    assert b.describe()["url"] == local.url


def test_logging_backend_logs_each_call(caplog: pytest.LogCaptureFixture) -> None:
    inner = MemoryBackend()
    caplog.set_level(logging.DEBUG, logger="trunkfs.store.backends.wrappers")
    b = LoggingBackend(inner)
    b.put("packs/p", b"12345")
    assert b.get("packs/p", 1, 2) == b"23"
    with pytest.raises(ObjectMissing):
        b.get("missing")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("put 'packs/p'" in m and "5 bytes" in m for m in lines)
    assert any("get 'packs/p'" in m and "2 bytes" in m for m in lines)
    assert any("get 'missing'" in m and "ObjectMissing" in m for m in lines)


def test_metered_backend_counts_each_request_by_op_and_area() -> None:
    """A retry is one more request (the meter is innermost); a missing
    object is an answer, not an error; a failure is counted as an error."""
    inner = MemoryBackend()
    metered = MeteredBackend(inner)
    backend = retrying(metered, [])
    backend.put("packs/ab/p1", b"0123456789")
    inner.fail_before["get"] = [TransientBackendError("slow down")]
    assert backend.get("packs/ab/p1", 2, 4) == b"2345"
    with pytest.raises(ObjectMissing):
        backend.get("packs/ab/gone")
    assert backend.get_versioned("refs/r/main") is None
    assert sorted(backend.list("packs/")) == ["packs/ab/p1"]
    inner.fail_before["delete"] = [BackendError("denied")]
    with pytest.raises(BackendError):
        backend.delete("packs/ab/p1")
    counts = metered.counts()
    assert counts["get"]["requests"] == 4 and counts["get"]["bytes_in"] == 4
    assert counts["get"]["errors"] == 1   # the transient failure, retried
    assert counts["get"]["areas"]["packs"] == {**counts["get"]["areas"]["packs"], "requests": 3, "bytes_in": 4}
    assert counts["get"]["areas"]["refs"]["requests"] == 1
    assert counts["put"]["requests"] == 1 and counts["put"]["bytes_out"] == 10
    assert counts["list"]["requests"] == 1 and counts["delete"]["errors"] == 1
    assert backend.counts() == counts   # reachable through the decorators above it


# -- the factory -----------------------------------------------------------------

def test_open_backend_local_forms(tmp_path: Path) -> None:
    forms = {f"file://{tmp_path}/a": tmp_path / "a", f"{tmp_path}/b/": tmp_path / "b",
             f"file://localhost{tmp_path}/c": tmp_path / "c",
             f"file://{tmp_path}/with%20space": tmp_path / "with space"}
    for url, path in forms.items():
        b = open_backend(url)
        assert isinstance(b, LoggingBackend) and isinstance(b.inner, MeteredBackend)
        assert isinstance(b.inner.inner, LocalBackend)
        assert b.url == f"file://{path}"
        b.put("k", url.encode())
        assert (path / "k").read_bytes() == url.encode()


@pytest.mark.parametrize("url", ["ftp://host/x", "relative/dir", "file://relative/dir",
                                 "file:relative", "s3://", "s3:///prefix", "", "file:///"])
def test_open_backend_rejects_other_urls(url: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        open_backend(url)
    assert "s3://bucket" in str(info.value) and "file://" in str(info.value)


def test_open_backend_s3_wraps_retries(s3_bucket: tuple[str, str]) -> None:
    endpoint, bucket = s3_bucket
    b = open_backend(f"s3://{bucket}/{PREFIX}/", s3_endpoint=endpoint, s3_region="us-east-1")
    assert isinstance(b, LoggingBackend) and isinstance(b.inner, RetryingBackend)
    assert isinstance(b.inner.inner, MeteredBackend) and isinstance(b.inner.inner.inner, S3Backend)
    assert b.url == f"s3://{bucket}/{PREFIX}"
    assert b.staging_dir() is None
    assert b.describe()["bucket"] == bucket


def test_clean_tmp_leaves_the_temp_files_other_writers_write_now(tmp_path: Path) -> None:
    """Daemons and Dask workers on one shared directory store all write
    their packs through its tmp/: a daemon that starts removes only what a
    killed writer left long ago, never a file another writer fills now."""
    local = LocalBackend(str(tmp_path / "store"))
    busy = Path(local.staging_dir() or "") / "put-busy"
    busy.write_bytes(b"half a pack")
    left = Path(local.staging_dir() or "") / "put-left"
    left.write_bytes(b"a killed writer's")
    old = time.time() - 2 * 86400
    os.utime(left, (old, old))
    assert local.clean_tmp() == 1
    assert busy.exists() and not left.exists()
