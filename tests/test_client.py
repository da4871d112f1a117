"""The Python client (``trunkfs.client``) against a real daemon process:
typed results, error codes, the put/get/cat streams and watch."""

from __future__ import annotations

import io
import os
import pwd
from pathlib import Path

import pytest

from tests.harness import fake_get_daemon

from trunkfs.client import (AlreadyExistsError, BranchInfo, Change, Client, ClientError, CommitEvent,
                            CommitInfo, DaemonInfo, Diff, Entry, FsckReport, InvalidArgumentError,
                            JobEvent, JobInfo, Listing, NotFoundError, NothingToCommitError,
                            PipelineInfo, ProvenanceStep, PutResult, RepoInfo, StatsInfo, Status)


def make_tree(root: Path) -> Path:
    """A small tree: nested dirs, an empty file and dir, a symlink, modes."""
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "emptydir").mkdir()
    (root / "data" / "a.csv").write_bytes(b"x,y\n1,2\n")
    (root / "data" / "sub" / "b.bin").write_bytes(bytes(range(256)) * 1000)
    (root / "data" / "empty").write_bytes(b"")
    os.symlink("a.csv", root / "data" / "link")
    os.chmod(root / "data" / "a.csv", 0o600)
    os.chmod(root / "data" / "sub", 0o750)
    return root / "data"


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything get must bring back: type, bytes or target, mode, file mtimes."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir", st.st_mode & 0o7777)
            else:
                out[rel] = ("file", Path(p).read_bytes(), st.st_mode & 0o7777, st.st_mtime_ns)
    return out


def test_results_are_typed_and_keep_the_raw_reply(daemon, workdir):
    with daemon.client() as c:
        info = c.ping()
        assert isinstance(info, DaemonInfo) and info.pid == daemon.pid and info.uid == os.getuid()
        created = c.repo_create("raw")
        assert isinstance(created, RepoInfo) and created.name == "raw" and created.id
        src = make_tree(workdir)
        put = c.put("raw", [str(src)], message="first")
        assert isinstance(put, PutResult) and len(put.commit) == 64 and put.branch == "main"
        size = 8 + 256_000
        assert (put.files, put.bytes, put.size) == (3, size, size)

        [repo] = c.repo_list()
        assert isinstance(repo, RepoInfo)
        assert (repo.name, repo.head, repo.size, repo.branches) == ("raw", put.commit, size, ["main"])
        assert repo.raw == c.call("repo.list")[0]  # raw is the daemon's reply as it came

        dev = c.branch_create("raw", "dev")
        assert isinstance(dev, BranchInfo) and (dev.name, dev.repo, dev.head) == ("dev", "raw", put.commit)
        assert {b.name: b.head for b in c.branch_list("raw")} == {"main": put.commit, "dev": put.commit}
        assert c.branch_delete("raw", "dev").name == "dev"

        listing = c.ls("raw", "/data")
        assert isinstance(listing, Listing) and listing.commit == put.commit
        entries = {e.name: e for e in listing.entries}
        assert all(isinstance(e, Entry) for e in entries.values())
        assert (entries["a.csv"].type, entries["a.csv"].size, entries["a.csv"].mode) == ("file", 8, 0o600)
        assert (entries["sub"].type, entries["sub"].files) == ("dir", 1)
        assert (entries["link"].type, entries["link"].target) == ("symlink", "a.csv")

        second = c.rm("raw", ["/data/empty"], message="drop")
        [newest, first] = c.log("raw")
        assert isinstance(newest, CommitInfo) and (newest.id, newest.parents) == (second.commit, [put.commit])
        assert (first.message, first.files, first.size) == ("first", 3, size)
        assert first.author.uid == os.getuid() and first.author.name == pwd.getpwuid(os.getuid()).pw_name
        assert first.origin.kind == "user" and first.provenance == []
        shown = c.show("raw", second.commit[:10])
        assert (shown.id, shown.branch, shown.files) == (second.commit, None, 2)
        assert c.show("raw").branch == "main"

        diff = c.diff("raw", put.commit, second.commit)
        assert isinstance(diff, Diff) and (diff.from_commit, diff.to_commit) == (put.commit, second.commit)
        assert diff.changes == [Change("D", "/data/empty")]
        assert c.diff("raw", "main").changes == diff.changes  # one ref: against its parent

        stats = c.stats()
        assert isinstance(stats, StatsInfo) and stats.commits == 2
        assert stats.logical_bytes == 2 * size and stats.unique_bytes == size
        report = c.fsck(read_data=True)
        assert isinstance(report, FsckReport) and report.ok and report.problems == []
        assert report.blobs_verified == report.chunks

        [step] = c.provenance("raw")
        assert isinstance(step, ProvenanceStep) and (step.depth, step.commit) == (0, second.commit)
        assert c.repo_delete("raw").name == "raw"
        assert c.repo_list() == []


def test_errors_carry_their_code_and_the_client_stays_usable(daemon):
    with daemon.client() as c:
        with pytest.raises(NotFoundError) as missing:
            c.show("nope")
        assert missing.value.code == "not_found" and "does not exist" in str(missing.value)
        with pytest.raises(InvalidArgumentError) as bad:
            c.repo_create("a/b")
        assert bad.value.code == "invalid_argument" and "'/'" in bad.value.message
        c.repo_create("r")
        with pytest.raises(AlreadyExistsError) as dup:
            c.repo_create("r")
        assert dup.value.code == "exists" and isinstance(dup.value, ClientError)
        with pytest.raises(NotFoundError):
            c.job_show("no-such-job")
        with pytest.raises(ClientError) as unknown:
            c.call("no.such.op")
        assert unknown.value.code == "unknown_op"
        assert c.ping().pid == daemon.pid  # the connection is still in step


def test_put_get_round_trip_of_a_small_tree(daemon, workdir):
    src = make_tree(workdir / "src")
    (workdir / "src" / "top.txt").write_bytes(b"top\n")
    with daemon.client() as c:
        c.repo_create("r")
        put = c.put("r", [str(src), str(workdir / "src" / "top.txt")], dest="/in")
        out = workdir / "out"
        out.mkdir()
        got = c.get("r", "/in/data", str(out))  # an existing directory: lands at out/data
        assert (got.path, got.files, got.commit) == (str(out / "data"), 3, put.commit)
        assert got.raw == {"path": str(out / "data"), "files": 3, "commit": put.commit}
        assert snapshot(out / "data") == snapshot(src)
        assert os.stat(out / "data" / "sub").st_mode & 0o777 == 0o750
        one = c.get("r", "/in/top.txt", str(workdir / "copy.txt"), ref=put.commit[:8])
        assert one.files == 1 and (workdir / "copy.txt").read_bytes() == b"top\n"
        seen: list[tuple[int, int]] = []
        c.get("r", "/", str(workdir / "whole"), progress=lambda done, total: seen.append((done, total)))
        assert snapshot(workdir / "whole" / "in" / "data") == snapshot(src)
        assert seen and seen[-1] == (8 + 256_000 + 4, 8 + 256_000 + 4)
        with pytest.raises(FileNotFoundError):
            c.put("r", [str(workdir / "missing")])
        assert c.log("r")[0].id == put.commit  # nothing was sent for the missing path


def test_cat_gives_the_bytes(daemon, workdir):
    data = os.urandom(5_000_000)
    (workdir / "big").write_bytes(data)
    with daemon.client() as c:
        c.repo_create("r")
        c.put("r", [str(workdir / "big")])
        assert c.cat("r", "/big") == data
        buf = io.BytesIO()
        assert c.cat_to("r", "/big", buf) == len(data) and buf.getvalue() == data
        with pytest.raises(InvalidArgumentError, match="directory"):
            c.cat("r", "/")
        with pytest.raises(NotFoundError):
            c.cat("r", "/nope")
        assert c.cat("r", "/big", ref="main")[:10] == data[:10]


def test_watch_yields_a_commit_event(daemon, workdir):
    (workdir / "f").write_bytes(b"1")
    with daemon.client() as c:
        c.repo_create("r")
        c.repo_create("other")
        with c.watch("r") as events:  # subscribed once watch() returns
            c.put("other", [str(workdir / "f")])  # not watched
            put = c.put("r", [str(workdir / "f")], message="watched")
            event = next(events)
        assert isinstance(event, CommitEvent)
        assert (event.repo, event.branch, event.commit, event.message) == ("r", "main", put.commit, "watched")
        assert event.origin.kind == "user" and event.jobs == []
        assert event.raw["type"] == "commit"
        assert c.ping().pid == daemon.pid  # the watch had a connection of its own


def test_pipelines_and_jobs(daemon, workdir):
    (workdir / "in").mkdir()
    (workdir / "in" / "a").write_bytes(b"abc")
    spec = {"name": "copy", "input": {"repo": "raw", "glob": "/"},
            "transform": {"cmd": ["/bin/sh", "-c", 'cp -r "$TRUNKFS_INPUT"/. "$TRUNKFS_OUTPUT"/']}}
    with daemon.client() as c:
        c.repo_create("raw")
        p = c.pipeline_create(spec)
        assert isinstance(p, PipelineInfo) and (p.name, p.version, p.output) == ("copy", 1, "copy")
        assert p.input == {"repo": "raw", "branch": "main", "glob": "/"} and p.cmd[0] == "/bin/sh"
        assert [x.name for x in c.pipeline_list()] == ["copy"]
        with c.watch("raw") as events:
            put = c.put("raw", [str(workdir / "in" / "a")])
            [job_id] = put.jobs
            done = c.job_wait(job_id[:12])
            states = []
            for e in events:
                if isinstance(e, JobEvent):
                    states.append(e.state)
                    if e.state == "succeeded":
                        break
        assert states == ["queued", "running", "succeeded"]
        assert isinstance(done, JobInfo) and done.id == job_id and done.state == "succeeded" and done.finished
        assert (done.input.repo, done.input.commit, done.output) == ("raw", put.commit, "copy")
        assert (done.datums.total, done.datums.processed, done.datums.failed) == (1, 1, 0)
        assert [j.id for j in c.job_list("copy")] == [job_id]
        assert c.job_logs(job_id).logs["0"].exit == 0
        out = c.show("copy")
        assert out.origin.kind == "pipeline" and out.origin.pipeline == "copy" and out.origin.job == job_id
        assert [(r.repo, r.commit) for r in out.provenance] == [("raw", put.commit)]
        assert (out.size, out.files) == (3, 1) and c.cat("copy", "/a") == b"abc"
        assert [s.repo for s in c.provenance("copy")] == ["copy", "raw"]
        assert c.pipeline_delete("copy").name == "copy"


def test_staging_status_commit_discard(mounted):
    d = mounted
    with d.client() as c:
        c.repo_create("r")
        with pytest.raises(NothingToCommitError):
            c.commit("r")
        (d.mount / "r" / "new.txt").write_bytes(b"new")
        (d.mount / "r" / "drop.txt").write_bytes(b"drop")
        status = c.status("r")
        assert isinstance(status, Status) and (status.repo, status.branch, status.head) == ("r", "main", None)
        assert sorted((ch.status, ch.path.lstrip("/")) for ch in status.changes) == \
            [("A", "drop.txt"), ("A", "new.txt")]
        assert c.discard("r", ["drop.txt"]).discarded == 1
        done = c.commit("r", message="one file", progress=lambda done, total: None)
        assert (done.repo, done.branch, done.files, done.size) == ("r", "main", 1, 3)
        assert c.show("r").id == done.commit and c.status("r").changes == []


def test_get_refuses_unsafe_paths_from_the_daemon(workdir):
    """A daemon that sends a path outside the target, or below a symlink
    it sent, gets ``bad_reply`` and nothing is written outside."""
    outside = workdir / "outside"
    outside.mkdir()
    streams = [
        [{"entry": {"path": "", "type": "dir"}}, {"entry": {"path": "../escape", "type": "file"}}],
        [{"entry": {"path": "", "type": "dir"}}, {"entry": {"path": "/abs", "type": "file"}}],
        [{"entry": {"path": "", "type": "dir"}},
         {"entry": {"path": "l", "type": "symlink", "target": str(outside)}},
         {"entry": {"path": "l/escape", "type": "file"}}],
    ]
    for i, stream in enumerate(streams):
        path = str(workdir / f"fake{i}.sock")
        with fake_get_daemon(path, stream):
            with Client(path, timeout=30) as c:
                with pytest.raises(ClientError) as refused:
                    c.get("r", "/", str(workdir / f"target{i}"))
                assert refused.value.code == "bad_reply"
        assert list(outside.iterdir()) == [] and not (workdir / "escape").exists()


def test_repo_acl_show_grant_revoke(daemon):
    from trunkfs.client import AclEntry, RepoAcl
    with daemon.client() as c:
        c.repo_create("r")
        acl = c.repo_acl("r")
        assert isinstance(acl, RepoAcl) and (acl.name, acl.owner_uid, acl.owner) == ("r", 0, "root")
        assert acl.entries == [AclEntry("everyone", "everyone", None, "read")]
        acl = c.repo_acl("r", grant=["user:nobody=write"], revoke=["everyone"])
        assert acl.entries == [AclEntry("user:nobody", "user", 65534, "write")]
        assert acl.raw["acl"][0]["who"] == "user:nobody"
        with pytest.raises(InvalidArgumentError, match="role"):
            c.repo_acl("r", grant=["user:nobody=boss"])
