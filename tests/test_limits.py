"""Limits that keep one client, one job or one stored value from stopping the
daemon: a job found running at every start ends failed, a per-uid cap on
socket connections, an idle timeout, stored numbers out of range, and a
DEBUG log without credentials."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from tests.harness import wait_for
from trunkfs.daemon.commits import CommitPath
from trunkfs.store.changes import CommitMeta, Edit, author_of
from trunkfs.daemon.events import EventBus
from trunkfs.daemon.heads import BranchHeads
from trunkfs.daemon.workers import Workers
from trunkfs.pipelines.jobs import MAX_RESTARTS, Job, JobInput, JobStore, new_job_id
from trunkfs.store.backends.factory import open_backend
from trunkfs.store.refs import Refs
from trunkfs.store.store import Store
from trunkfs.store.treeedit import TreeEditor


def open_store(base: Path) -> Store:
    return Store(open_backend(f"file://{base / 'store'}"), str(base / "index"), str(base / "tmp")).open()


# -- jobs ---------------------------------------------------------------------------

@pytest.mark.allow_warnings  # the job's failure is logged as an error
def test_a_job_found_running_at_every_start_ends_failed(workdir: Path) -> None:
    store = open_store(workdir)
    try:
        records = JobStore(store.backend)
        job = Job(id=new_job_id(), pipeline="p", version=1, input=JobInput("raw", "main", "ab" * 32),
                  output="out", created=time.time(), state="running", started=time.time())
        records.save(job.id, job.encode())
        assert "restarts" not in job.to_json()   # records stay as earlier versions wrote them
        for start in range(1, MAX_RESTARTS + 1):
            (found,) = records.load_at_start()
            (saved,) = records.load()            # the count is in the record at once
            assert found.restarts == saved.restarts == start
            if start < MAX_RESTARTS:
                assert found.state == saved.state == "queued"
                found.state = "running"            # it runs again, and the daemon dies again
                records.save(found.id, found.encode())
        assert found.state == saved.state == "failed"
        assert found.finished is not None
        assert f"stopped {MAX_RESTARTS} times" in (found.error or "")
        assert records.load_at_start()[0].to_json() == found.to_json()   # failed stays failed
    finally:
        store.close()


# -- connections ----------------------------------------------------------------------

def config_file(workdir: Path, **settings: object) -> list[str]:
    path = workdir / "config.toml"
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
    return ["--config", str(path)]


# Run as uid 65534: open N connections, ping on each, hold them, print the replies.
AS_NOBODY = """
import json, socket, sys
conns, replies = [], []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX); s.settimeout(30); s.connect(sys.argv[1]); conns.append(s)
    try:
        s.sendall(b'{"op":"ping"}\\n')
    except (BrokenPipeError, ConnectionResetError):
        pass   # a refused connection may be closed already; its busy reply is still there to read
    replies.append(json.loads(s.makefile("rb").readline() or b"null"))
print(json.dumps(replies))
"""


def as_nobody(d, count: int) -> list:
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                           "-c", AS_NOBODY, d.socket, str(count)], capture_output=True, timeout=60)
    if proc.returncode != 0 and b"Permission denied" in proc.stderr:
        pytest.skip("the test's Python is not runnable by uid 65534")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_connections_of_one_uid_are_capped(daemon_factory, workdir: Path) -> None:
    d = daemon_factory(extra=config_file(workdir, max_connections_per_uid=2))
    os.chmod(workdir, 0o755)
    os.chmod(d.socket, 0o666)
    replies = as_nobody(d, 3)
    assert [r["ok"] for r in replies[:2]] == [True, True]
    assert replies[2]["error"]["code"] == "busy" and "max_connections_per_uid" in replies[2]["error"]["message"]
    # the slots are given back when the connections close
    assert wait_for(lambda: all(r["ok"] for r in as_nobody(d, 2)), 30, "the slots of uid 65534")
    # root is not capped
    conns = [d.client() for _ in range(5)]
    try:
        assert all(c.call("ping")["uid"] == 0 for c in conns)
    finally:
        for c in conns:
            c.close()


def read_until_closed(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def test_an_idle_connection_is_closed(daemon_factory, workdir: Path) -> None:
    d = daemon_factory(extra=config_file(workdir, idle_timeout=1))
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(60)
        s.connect(d.socket)
        s.sendall(b'{"op":"ping"}\n')
        start = time.monotonic()
        data = read_until_closed(s)   # the ping's reply, then the daemon hangs up
        assert [json.loads(line)["ok"] for line in data.splitlines()] == [True]
        assert time.monotonic() - start >= 0.9
    d.cli("repo", "create", "r")
    with socket.socket(socket.AF_UNIX) as s:   # stalled in the middle of a put: told so
        s.settimeout(60)
        s.connect(d.socket)
        s.sendall(b'{"op":"put","args":{"repo":"r"}}\n{"entry":{"type":"file","path":"f"}}\n{"data":10}\nabc')
        (reply,) = [json.loads(line) for line in read_until_closed(s).splitlines()]
        assert reply["error"]["code"] == "timeout"
    assert d.cli("log", "r", "--json").json() == []
    with d.client() as c:
        assert c.call("ping")["pid"] == d.pid


def test_limits_in_the_config_file_are_checked(daemon_factory, workdir: Path) -> None:
    for settings in ({"max_connections_per_uid": 0}, {"idle_timeout": -1}, {"idle_timeout": "x"},
                     {"tree_cache": "512K"}, {"tree_cache": "lots"}):
        d = daemon_factory(extra=config_file(workdir, **settings), start=False)
        res = d.cli("daemon", "--store", d.store_url, "--state", str(d.state), "--socket", d.socket,
                    *d.extra, check=False, timeout=60)
        assert res.returncode != 0
        assert next(iter(settings)) in res.err


# -- stored values out of range -----------------------------------------------------------

def commit_entries(base: Path, edit) -> None:
    """Commit to repo ``r`` of the store under ``base`` in-process, as no client could."""
    async def main() -> None:
        store = open_store(base)
        try:
            refs = Refs(store)
            workers = Workers(2)
            commits = CommitPath(store, refs, BranchHeads(refs, workers), EventBus(), workers)
            await workers.run(refs.create_repo, "r")
            await commits.commit("r", "main", Edit(store, edit), CommitMeta("odd", author_of(0)))
        finally:
            store.close()
    trio.run(main)


def test_stored_numbers_out_of_range_do_not_stop_the_readers(daemon_factory, workdir: Path) -> None:
    def edit(editor: TreeEditor) -> None:
        editor.mkdir("/d", 0o755, 2 ** 70)
        editor.put("/d/s", {"type": "symlink", "mode": 0o777, "mtime": 2 ** 80, "target": "x"})
        editor.put("/neg", {"type": "symlink", "mode": 0o777, "mtime": -(2 ** 70), "target": "y"})
    d = daemon_factory(start=False)
    commit_entries(d.base, edit)
    d.start()
    with d.client() as c:
        listing = c.call("ls", repo="r", path="/d")
        assert [e["name"] for e in listing["entries"]] == ["s"]
        assert c.call("ping")["pid"] == d.pid
    out = d.cli("get", "r:/", str(workdir / "out"), check=False)
    assert out.returncode in (0, 1)
    with d.client() as c:
        assert c.call("ping")["pid"] == d.pid
        assert c.call("fsck")["ok"]


# -- secrets ---------------------------------------------------------------------------------

def test_debug_log_shows_no_credentials(daemon_factory, s3_bucket, workdir: Path) -> None:
    endpoint, bucket = s3_bucket
    d = daemon_factory(store_url=f"s3://{bucket}/trunkfs",
                       extra=["--s3-endpoint", endpoint, "--log-level", "debug"])
    d.cli("repo", "create", "r")
    (workdir / "f").write_bytes(b"x" * 1000)
    d.cli("put", "r", str(workdir / "f"))
    assert d.cli("cat", "r:/f").stdout == b"x" * 1000
    d.stop()
    log = d.log()
    assert " DEBUG " in log   # the daemon did log at DEBUG
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "testing")
    for word in ("Authorization", "Signature", "AWS4-HMAC-SHA256", "X-Amz-Security-Token", secret):
        assert word not in log, f"{word!r} in the daemon's DEBUG log"
