"""Authorization of socket operations, in-process: the handlers called
directly (as in tests/test_handlers.py) over a socketpair made by another
user, so that the daemon's end reads that user's credentials through
SO_PEERCRED, as it does for a client of the real socket.

Users: root (uid 0), ``nobody`` (65534, group ``nogroup``), uid 1
(``daemon``) as a second user, and ``postgres`` when the system has it (a
user with a supplementary group, ``ssl-cert``)."""

from __future__ import annotations

import grp
import json
import pwd
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from trunkfs.daemon.handlers import HANDLERS, Request
from trunkfs.daemon.service import Service
from trunkfs.store.errors import TrunkError
from trunkfs.store.objects import RepoInfo
from trunkfs.store.refs import Refs

from .test_handlers import Peer, directory, file, service  # noqa: F401  (the fixture)

NOBODY = (65534, 65534)
OTHER = (1, 1)

# Run by the other user: a socketpair, both ends handed back over fd ``N``.
_SOCKETPAIR = ("import socket; s = socket.socket(fileno={fd}); a, b = socket.socketpair(); "
               "socket.send_fds(s, [b'p'], [a.fileno(), b.fileno()])")


def socketpair_as(uid: int, gid: int) -> tuple[socket.socket, socket.socket]:
    """A connected socketpair created by a process running as ``uid:gid``."""
    here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with here, there:
        proc = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                               "/usr/bin/python3", "-c", _SOCKETPAIR.format(fd=there.fileno())],
                              pass_fds=[there.fileno()], capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        _, fds, _, _ = socket.recv_fds(here, 16, 2)
    a, b = (socket.socket(fileno=fd) for fd in fds)
    return a, b


class Users:
    """Peers of several users on one service; closed at the end."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.peers: list[Peer] = []

    def as_user(self, uid: int, gid: int) -> Peer:
        p = Peer(self.svc, socketpair_as(uid, gid) if uid else None)
        assert p.conn.uid == uid
        self.peers.append(p)
        return p

    async def aclose(self) -> None:
        for p in self.peers:
            await p.aclose()


@pytest.fixture
async def users(service: Service) -> AsyncIterator[Users]:  # noqa: F811
    u = Users(service)
    try:
        yield u
    finally:
        await u.aclose()


async def refused(call: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """The message of the permission_denied error ``call`` must raise."""
    try:
        await call(*args, **kwargs)
    except BaseExceptionGroup as group:   # out of a nursery (put sends as the handler runs)
        found = group.subgroup(TrunkError)
        assert found is not None, group
        exc: BaseException = found.exceptions[0]
    except TrunkError as error:
        exc = error
    else:
        raise AssertionError(f"{getattr(call, '__name__', call)}{args} was not refused")
    assert isinstance(exc, TrunkError) and exc.code == "permission_denied", exc
    return str(exc)


async def cat(p: Peer, repo: str, path: str) -> bytes:
    _, entries = await p.get(repo, path, file_only=True)
    return entries[0][1] or b""


# -- reads obey the committed modes --------------------------------------------------

async def test_cat_of_a_0600_root_file_is_refused_a_0644_one_allowed(users: Users) -> None:
    root, nobody = users.as_user(0, 0), users.as_user(*NOBODY)
    await root.call("repo.create", name="data")
    await root.put("data", [file("secret", b"root only", 0o600), file("public", b"for all"),
                            directory("private", 0o700), file("private/x", b"x")])
    assert await cat(root, "data", "secret") == b"root only"
    assert await cat(nobody, "data", "public") == b"for all"
    message = await refused(nobody.call, "get", repo="data", path="secret", file_only=True)
    assert "data:/secret" in message
    await refused(nobody.call, "get", repo="data", path="private/x", file_only=True)  # no x on private
    await refused(nobody.call, "ls", repo="data", path="private")
    names = [e["name"] for e in (await nobody.call("ls", repo="data"))["entries"]]
    assert names == ["private", "public", "secret"]      # the root is 0755: anyone lists it


async def test_get_of_a_directory_skips_what_the_caller_may_not_read(users: Users) -> None:
    root, nobody = users.as_user(0, 0), users.as_user(*NOBODY)
    await root.call("repo.create", name="data")
    await root.put("data", [file("a", b"a"), file("secret", b"s", 0o600),
                            directory("private", 0o700), file("private/x", b"x")])
    reply, entries = await nobody.get("data", "/")
    assert sorted(h["path"] for h, _ in entries) == ["", "a"]
    _, all_entries = await root.get("data", "/")
    assert len(all_entries) == 5


# -- repos: owner and access list -----------------------------------------------------

async def test_repo_delete_of_someone_elses_repo_is_refused(users: Users) -> None:
    root, nobody = users.as_user(0, 0), users.as_user(*NOBODY)
    await root.call("repo.create", name="roots")
    message = await refused(nobody.call, "repo.delete", name="roots")
    assert "roots" in message and "admin" in message
    await refused(nobody.call, "branch.delete", repo="roots", branch="main")
    assert "roots" in [r["name"] for r in await root.call("repo.list")]
    # a user's own repo is theirs to delete
    await nobody.call("repo.create", name="mine")
    assert await nobody.call("repo.delete", name="mine") == {"deleted": "mine"}


async def test_writes_need_write(users: Users) -> None:
    root, nobody = users.as_user(0, 0), users.as_user(*NOBODY)
    await root.call("repo.create", name="roots")
    await refused(nobody.put, "roots", [file("x", b"x")])
    await refused(nobody.call, "rm", repo="roots", paths=["x"])
    await refused(nobody.call, "branch.create", repo="roots", branch="b")
    await refused(nobody.call, "commit", repo="roots", allow_empty=True)
    assert await root.call("log", repo="roots") == []
    # a write grant lets nobody put
    await root.call("repo.acl", name="roots", grant=["user:nobody=write"])
    await nobody.put("roots", [file("x", b"x")])
    await refused(nobody.call, "repo.delete", name="roots")   # write is not admin


async def test_repo_list_shows_only_readable_repos(users: Users) -> None:
    root, nobody = users.as_user(0, 0), users.as_user(*NOBODY)
    await root.call("repo.create", name="open")
    await root.call("repo.create", name="closed")
    acl = await root.call("repo.acl", name="closed", revoke=["everyone"])
    assert acl["acl"] == []
    assert [r["name"] for r in await root.call("repo.list")] == ["closed", "open"]
    assert [r["name"] for r in await nobody.call("repo.list")] == ["open"]
    await refused(nobody.call, "ls", repo="closed")
    await refused(nobody.call, "log", repo="closed")


async def test_a_group_grant_lets_its_members_read_and_a_revoke_takes_it_away(users: Users) -> None:
    root = users.as_user(0, 0)
    await root.call("repo.create", name="team")
    await root.put("team", [file("f", b"team data")])
    await root.call("repo.acl", name="team", revoke=["everyone"])
    try:
        pg = pwd.getpwnam("postgres")
        grp.getgrnam("ssl-cert")
        member, group = users.as_user(pg.pw_uid, pg.pw_gid), "ssl-cert"   # a supplementary group
    except KeyError:
        member, group = users.as_user(*NOBODY), "nogroup"                 # the primary group
    await refused(member.call, "ls", repo="team")
    shown = await root.call("repo.acl", name="team", grant=[f"group:{group}=read"])
    assert {"who": f"group:{group}", "role": "read"} in [
        {"who": e["who"], "role": e["role"]} for e in shown["acl"]]
    assert await cat(member, "team", "f") == b"team data"
    await refused(member.put, "team", [file("g", b"g")])   # read is not write
    await root.call("repo.acl", name="team", revoke=[f"group:{group}"])
    await refused(member.call, "get", repo="team", path="f", file_only=True)


async def test_acl_changes_need_admin(users: Users) -> None:
    root, nobody = users.as_user(0, 0), users.as_user(*NOBODY)
    await root.call("repo.create", name="roots")
    await refused(nobody.call, "repo.acl", name="roots", grant=["user:nobody=admin"])
    shown = await nobody.call("repo.acl", name="roots")   # a reader may see it
    assert shown["owner"]["uid"] == 0
    with pytest.raises(TrunkError) as exc:
        await root.call("repo.acl", name="roots", grant=["user:nobody=owner"])
    assert exc.value.code == "invalid_argument"


async def test_repo_records_without_owner_or_acl_still_load(users: Users, service: Service) -> None:  # noqa: F811
    backend = service.refs.backend
    backend.put_if("repos/old", json.dumps({"v": 1, "name": "old", "id": "0" * 32,
                                            "created": 1.0}).encode(), None)
    backend.put_if("refs/old/main", json.dumps({"v": 1, "commit": None}).encode(), None)
    info = Refs(service.store).get_repo("old")
    assert isinstance(info, RepoInfo) and info.owner == 0
    root, nobody = users.as_user(0, 0), users.as_user(*NOBODY)
    assert "old" in [r["name"] for r in await nobody.call("repo.list")]
    await nobody.call("ls", repo="old")                           # read for everyone
    await refused(nobody.put, "old", [file("x", b"x")])           # nothing more
    await root.put("old", [file("x", b"x")])                      # root owns it


async def test_fsck_rebuild_index_is_root_only(users: Users) -> None:
    nobody = users.as_user(*NOBODY)
    await refused(nobody.call, "fsck", rebuild_index=True)


# -- pipelines ----------------------------------------------------------------------

def spec(name: str = "count", repo: str = "raw", output: str | None = None,
         cmd: list[str] | None = None) -> dict:
    out: dict = {"name": name, "input": {"repo": repo, "branch": "main", "glob": "/"},
                 "transform": {"cmd": cmd or ["true"], "env": {"TOKEN": "s3cret"}}}
    if output:
        out["output"] = output
    return out


async def test_pipeline_update_and_delete_of_anothers_pipeline_are_refused(users: Users) -> None:
    root, nobody, other = users.as_user(0, 0), users.as_user(*NOBODY), users.as_user(*OTHER)
    await root.call("repo.create", name="raw")
    made = await nobody.call("pipeline.create", spec=spec())
    assert made["owner"]["uid"] == NOBODY[0]
    await refused(other.call, "pipeline.update", spec=spec(cmd=["false"]))
    await refused(other.call, "pipeline.delete", name="count")
    # root (admin of the output repo) may update; the owner stays nobody, and the reply says so
    updated = await root.call("pipeline.update", spec=spec(cmd=["false"]))
    assert updated["owner"]["uid"] == NOBODY[0] and updated["version"] == 2
    assert "owner" in updated.get("note", "")
    # the env is the owner's and admins' to see
    assert (await other.call("pipeline.show", name="count"))["spec"]["transform"]["env"] == {"TOKEN": "<hidden>"}
    assert (await nobody.call("pipeline.show", name="count"))["spec"]["transform"]["env"] == {"TOKEN": "s3cret"}
    listed = await other.call("pipeline.list")
    assert listed[0]["spec"]["transform"]["env"] == {"TOKEN": "<hidden>"}
    # every version is kept, newest first, with the env hidden alike
    await nobody.call("pipeline.update", spec=spec(cmd=["sh", "-c", "exit 0"]))
    versions = await other.call("pipeline.versions", name="count")
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert [v["spec"]["transform"]["cmd"] for v in versions] == [["sh", "-c", "exit 0"], ["false"], ["true"]]
    assert all(v["spec"]["transform"]["env"] == {"TOKEN": "<hidden>"} for v in versions)
    assert (await nobody.call("pipeline.versions", name="count"))[2]["spec"]["transform"]["env"] == {"TOKEN": "s3cret"}
    history_keys = f"pipeline-versions/{made['id']}/"
    assert len(list(root.svc.store.backend.list(history_keys))) == 3
    await nobody.call("pipeline.delete", name="count")     # its history goes with it
    assert list(root.svc.store.backend.list(history_keys)) == []


async def test_pipeline_create_needs_read_on_the_input_and_write_on_the_output(users: Users) -> None:
    root, nobody = users.as_user(0, 0), users.as_user(*NOBODY)
    await root.call("repo.create", name="raw")
    await root.call("repo.create", name="theirs")
    await refused(nobody.call, "pipeline.create", spec=spec(output="theirs"))
    await root.call("repo.acl", name="raw", revoke=["everyone"])
    await refused(nobody.call, "pipeline.create", spec=spec(output="new-out"))
    assert "new-out" not in [r["name"] for r in await root.call("repo.list")]


async def test_job_logs_of_anothers_job_are_refused(users: Users) -> None:
    root, nobody = users.as_user(0, 0), users.as_user(*NOBODY)
    await root.call("repo.create", name="raw")
    await root.call("pipeline.create", spec=spec())
    job_id = (await root.put("raw", [file("x", b"1")]))["jobs"][0]   # queued (no runner here)
    logs = await root.call("job.logs", id=job_id)
    assert logs["id"] == job_id
    message = await refused(nobody.call, "job.logs", id=job_id)
    assert "count" in message
    assert (await nobody.call("job.show", id=job_id))["id"] == job_id   # its summary stays public


def test_handlers_are_registered() -> None:
    assert "repo.acl" in HANDLERS and Request is not None


async def test_tags_need_write_to_make_and_admin_to_delete_and_reset_needs_admin(users: Users) -> None:
    root, nobody = users.as_user(0, 0), users.as_user(*NOBODY)
    await root.call("repo.create", name="rel")
    first = (await root.put("rel", [file("x", b"1")]))["commit"]
    await root.put("rel", [file("x", b"2")])
    await refused(nobody.call, "tag.create", repo="rel", tag="v1", ref=first)
    await refused(nobody.call, "branch.reset", repo="rel", branch="main", to=first)
    assert [t["tag"] for t in await nobody.call("tag.list", repo="rel")] == []   # reading is open
    await root.call("repo.acl", name="rel", grant=["user:nobody=write"])
    assert (await nobody.call("tag.create", repo="rel", tag="v1", ref=first))["commit"] == first
    await refused(nobody.call, "tag.delete", repo="rel", tag="v1")
    await refused(nobody.call, "branch.reset", repo="rel", branch="main", to="v1")
    assert (await root.call("branch.reset", repo="rel", branch="main", to="v1"))["head"] == first
    assert await root.call("tag.delete", repo="rel", tag="v1") == {"repo": "rel", "deleted": "v1"}


async def test_ranged_reads_stat_and_staging_by_path_obey_the_same_rules(users: Users) -> None:
    """The operations of trunkfs:// (read, stat, resolve, stage.put, stage.rm)
    check what ls, get and put check: a file's mode, search permission on
    every directory on the way, and write on the repo."""
    root, nobody = users.as_user(0, 0), users.as_user(*NOBODY)
    await root.call("repo.create", name="data")
    await root.put("data", [file("secret", b"root only", 0o600), file("public", b"for all"),
                            directory("private", 0o700), file("private/x", b"x")])
    message = await refused(nobody.call, "read", repo="data", path="secret", offset=0, length=4)
    assert "data:/secret" in message
    await refused(nobody.call, "read", repo="data", path="private/x")         # no x on private
    await refused(nobody.call, "stat", repo="data", path="private/x")
    assert (await nobody.call("stat", repo="data", path="public"))["entry"]["size"] == 7
    head = (await nobody.call("resolve", repo="data"))["commit"]
    assert head == (await root.call("show", repo="data"))["id"]
    await refused(nobody.call, "stage.put", repo="data")     # before any byte is read
    await refused(nobody.call, "stage.rm", repo="data", paths=["public"])
    await refused(nobody.call, "stage.mkdir", repo="data", paths=["new"])
    await refused(nobody.call, "put", repo="data", remove=["public"])
    assert (await root.call("status", repo="data"))["changes"] == []
