"""A lost reply is not a conflict (issue 11): a compare-and-swap whose write
landed but whose answer never came back is retried, and the retry must
report success, once; a write another daemon made first stays a Conflict.

The S3 cases go through :mod:`tests.faultproxy` in front of moto, which
forwards a conditional PUT or DELETE and then closes the connection
without its reply."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from trunkfs.store.backends.base import Backend
from trunkfs.store.backends.local import LocalBackend
from trunkfs.store.backends.s3 import S3Backend
from trunkfs.store.backends.wrappers import LostReplyConflict, RetryingBackend
from trunkfs.store.errors import Conflict
from trunkfs.store.objects import decode_ref, encode_ref

from tests.faultproxy import FaultProxy, running

KEY = "refs/r/main"


def _s3(endpoint: str, bucket: str) -> S3Backend:
    return S3Backend(bucket, "lost", endpoint_url=endpoint)


@pytest.fixture
def fault_proxy(s3_server: str) -> Iterator[FaultProxy]:
    """The fault proxy in front of the session's moto server."""
    with running(s3_server) as proxy:
        yield proxy


@pytest.fixture
def through_proxy(fault_proxy: FaultProxy, s3_bucket: tuple[str, str]) -> Iterator[Backend]:
    """The daemon's S3 store (retries included) reaching moto through the proxy."""
    _, bucket = s3_bucket
    backend = RetryingBackend(_s3(fault_proxy.url, bucket), base_delay=0.01)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def other_writer(s3_bucket: tuple[str, str]) -> Iterator[Backend]:
    """Another daemon's view of the same bucket and prefix, straight to moto."""
    endpoint, bucket = s3_bucket
    backend = _s3(endpoint, bucket)
    try:
        yield backend
    finally:
        backend.close()


def _landed_puts(proxy: FaultProxy) -> int:
    return sum(1 for e in proxy.exchanges("PUT", KEY) if e.status == 200)


# -- refs carry a write id -----------------------------------------------------

def test_every_ref_write_is_unique_and_old_refs_still_read() -> None:
    a, b = encode_ref("c1"), encode_ref("c1")
    assert a != b
    assert decode_ref(a, KEY) == decode_ref(b, KEY) == "c1"
    assert decode_ref(encode_ref(None), KEY) is None
    # a ref written before refs carried a write id
    assert decode_ref(json.dumps({"v": 1, "commit": "c9"}).encode(), KEY) == "c9"


# -- S3 through the fault proxy ---------------------------------------------------

def test_lost_reply_of_a_create_succeeds_once(fault_proxy: FaultProxy,
                                              through_proxy: Backend) -> None:
    data = encode_ref("c1")
    fault_proxy.drop_reply("PUT", KEY, header="If-None-Match")
    version = through_proxy.put_if(KEY, data, None)
    assert fault_proxy.dropped == 1 and fault_proxy.pending_rules == 0
    assert through_proxy.get_versioned(KEY) == (data, version)
    assert _landed_puts(fault_proxy) == 1


def test_lost_reply_of_a_swap_succeeds(fault_proxy: FaultProxy, through_proxy: Backend) -> None:
    v0 = through_proxy.put_if(KEY, encode_ref("c1"), None)
    data = encode_ref("c2")
    fault_proxy.drop_reply("PUT", KEY, header="If-Match")
    version = through_proxy.put_if(KEY, data, v0)
    assert fault_proxy.dropped == 1
    assert through_proxy.get_versioned(KEY) == (data, version)
    assert _landed_puts(fault_proxy) == 2  # the create and the swap, each once


def test_a_landed_write_is_found_after_the_last_retry_failed_too(
        fault_proxy: FaultProxy, through_proxy: Backend) -> None:
    """The reply is lost, then so is every read-back the retries make: one
    last look after the retries finds the write ours."""
    assert isinstance(through_proxy, RetryingBackend)
    v0 = through_proxy.put_if(KEY, encode_ref("c1"), None)
    data = encode_ref("c2")
    fault_proxy.drop_reply("PUT", KEY, header="If-Match")
    fault_proxy.drop_reply("GET", KEY, times=through_proxy.attempts - 1)
    version = through_proxy.put_if(KEY, data, v0)
    assert fault_proxy.pending_rules == 0
    assert through_proxy.get_versioned(KEY) == (data, version)


@pytest.mark.parametrize("same_commit", [False, True], ids=["other-commit", "same-commit"])
def test_a_real_conflict_stays_a_conflict_when_its_reply_is_lost(
        fault_proxy: FaultProxy, through_proxy: Backend, other_writer: Backend,
        same_commit: bool) -> None:
    v0 = through_proxy.put_if(KEY, encode_ref("c1"), None)
    theirs = encode_ref("c2")
    other_writer.put_if(KEY, theirs, v0)  # another daemon swapped first
    fault_proxy.drop_reply("PUT", KEY, header="If-Match")
    with pytest.raises(Conflict):
        # Even when we meant the very same commit, the write is not ours.
        through_proxy.put_if(KEY, encode_ref("c2" if same_commit else "c3"), v0)
    assert fault_proxy.dropped == 1
    assert through_proxy.get_versioned(KEY)[0] == theirs  # type: ignore[index]


def test_a_landed_write_replaced_before_the_retry_says_its_outcome_is_unknown(
        fault_proxy: FaultProxy, through_proxy: Backend, other_writer: Backend) -> None:
    v0 = through_proxy.put_if(KEY, encode_ref("c1"), None)
    theirs = encode_ref("c3")

    def another_daemon_builds_on_our_write() -> None:
        found = other_writer.get_versioned(KEY)
        assert found is not None and decode_ref(found[0], KEY) == "c2"
        other_writer.put_if(KEY, theirs, found[1])

    fault_proxy.drop_reply("PUT", KEY, header="If-Match", then=another_daemon_builds_on_our_write)
    with pytest.raises(LostReplyConflict, match="may have landed"):
        through_proxy.put_if(KEY, encode_ref("c2"), v0)
    assert through_proxy.get_versioned(KEY)[0] == theirs  # type: ignore[index]


def test_a_conflict_without_a_lost_reply_is_a_plain_conflict(
        through_proxy: Backend, other_writer: Backend) -> None:
    v0 = through_proxy.put_if(KEY, encode_ref("c1"), None)
    other_writer.put_if(KEY, encode_ref("c2"), v0)
    with pytest.raises(Conflict) as caught:
        through_proxy.put_if(KEY, encode_ref("c3"), v0)
    assert not isinstance(caught.value, LostReplyConflict)


def test_lost_reply_of_a_conditional_delete_succeeds(fault_proxy: FaultProxy,
                                                     through_proxy: Backend) -> None:
    version = through_proxy.put_if(KEY, encode_ref("c1"), None)
    fault_proxy.drop_reply("DELETE", KEY, header="If-Match")
    through_proxy.delete_if(KEY, version)
    assert fault_proxy.dropped == 1
    assert through_proxy.get_versioned(KEY) is None


# -- a version never comes back (no ABA) -------------------------------------------

@pytest.fixture(params=["local", "s3"])
def any_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        backend: Backend = LocalBackend(str(tmp_path / "store"))
    else:
        endpoint, bucket = request.getfixturevalue("s3_bucket")
        backend = _s3(endpoint, bucket)
    try:
        yield backend
    finally:
        backend.close()


def test_a_stale_version_stays_stale_when_the_ref_returns_to_its_commit(
        any_backend: Backend) -> None:
    """main: c1 -> c2 -> c1 again.  A writer still holding the first c1's
    version must get Conflict: the versions are of writes, not of content."""
    first = any_backend.put_if(KEY, encode_ref("c1"), None)
    second = any_backend.put_if(KEY, encode_ref("c2"), first)
    third = any_backend.put_if(KEY, encode_ref("c1"), second)
    assert third != first
    with pytest.raises(Conflict):
        any_backend.put_if(KEY, encode_ref("c3"), first)
    with pytest.raises(Conflict):
        any_backend.delete_if(KEY, first)


# -- end to end: a daemon whose S3 endpoint is the proxy -----------------------------

def test_daemon_commit_whose_ref_swap_reply_is_lost_commits_once(
        daemon_factory: Callable[..., Any], fault_proxy: FaultProxy, s3_bucket: tuple[str, str],
        tmp_path: Path) -> None:
    _, bucket = s3_bucket
    d = daemon_factory(store_url=f"s3://{bucket}/trunkfs",
                       extra=["--s3-endpoint", fault_proxy.url, "--log-level", "info"])
    d.cli("repo", "create", "r")
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello " + uuid.uuid4().hex.encode())
    fault_proxy.drop_reply("PUT", "trunkfs/refs/r/main", header="If-Match")
    commit = d.cli("put", "r", str(src), "-m", "through a lossy network").out.strip()
    seen = [(e.method, e.path, e.status, e.dropped) for e in fault_proxy.exchanges(path_part="/refs/")]
    assert fault_proxy.dropped == 1, (seen, d.log())
    log = d.cli("log", "r", "--json").json()
    assert [c["id"] for c in log] == [commit], (seen, d.log())
    assert d.cli("cat", "r:/hello.txt").stdout == src.read_bytes()
    assert "the write before the error had landed" in d.log(), (seen, d.log())


def test_a_commit_whose_reply_was_lost_and_then_built_on_is_not_made_twice(
        daemon_factory: Callable[..., Any], fault_proxy: FaultProxy, s3_bucket: tuple[str, str],
        tmp_path: Path) -> None:
    """Daemon A's ref swap lands but its reply is lost; before A's retry reads
    the ref back, daemon B commits on top of A's commit. A's retry cannot tell
    from the ref alone (LostReplyConflict); the commit path finds its commit
    below the new head and reports success, without committing again."""
    endpoint, bucket = s3_bucket
    a = daemon_factory("a", store_url=f"s3://{bucket}/trunkfs", extra=["--s3-endpoint", fault_proxy.url])
    b = daemon_factory("b", store_url=f"s3://{bucket}/trunkfs", extra=["--s3-endpoint", endpoint])
    a.cli("repo", "create", "r")
    mine, theirs = tmp_path / "mine.txt", tmp_path / "theirs.txt"
    mine.write_bytes(b"from a")
    theirs.write_bytes(b"from b")

    def b_builds_on_it() -> None:
        b.cli("put", "r", str(theirs), "-m", "b on top")

    fault_proxy.drop_reply("PUT", "trunkfs/refs/r/main", header="If-Match", then=b_builds_on_it)
    commit = a.cli("put", "r", str(mine), "-m", "a").out.strip()
    log = [c["message"] for c in a.cli("log", "r", "--json").json()]
    assert log == ["b on top", "a"], (log, a.log())
    assert a.cli("log", "r", "--json").json()[1]["id"] == commit
    assert "found below the head" in a.log()


# -- an endpoint without conditional writes is not shared ---------------------------------

@pytest.mark.allow_warnings   # the first daemon warns that it runs single-writer
def test_an_endpoint_without_conditional_writes_is_not_shared(
        daemon_factory: Callable[..., Any], fault_proxy: FaultProxy, s3_bucket: tuple[str, str]) -> None:
    _, bucket = s3_bucket
    fault_proxy.ignore_conditions()      # the endpoint now ignores If-Match / If-None-Match
    url = f"s3://{bucket}/trunkfs"
    a = daemon_factory("a", store_url=url, extra=["--s3-endpoint", fault_proxy.url])
    assert "does not enforce conditional writes" in a.log()
    a.cli("repo", "create", "r")          # alone on it, single-writer: it works
    b = daemon_factory("b", store_url=url, extra=["--s3-endpoint", fault_proxy.url], start=False)
    with pytest.raises(RuntimeError, match="daemon exited"):
        b.start(timeout=30)
    assert "refusing to start" in b.log() and "does not enforce conditional writes" in b.log()
    assert a.cli("repo", "list", "--json").json()[0]["name"] == "r"
