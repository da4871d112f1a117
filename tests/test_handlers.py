"""In-process tests of the socket handlers: the daemon's parts built by
``daemon.wiring.build_service`` over a real store and state directory, a
real ``Connection`` over a Unix socketpair, and the handlers of ``HANDLERS``
called directly with a ``Request``.  No daemon process, no FUSE: a failure
here points at the handlers or the history queries below them."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from trunkfs.store.changes import CommitMeta, ReplaceRoot
from trunkfs.daemon.config import Config
from trunkfs.daemon.connection import Connection
from trunkfs.daemon.handlers import HANDLERS, Request
from trunkfs.daemon.main import open_store
from trunkfs.daemon.server import ControlServer
from trunkfs.daemon.service import Service
from trunkfs.daemon.wiring import build_service
from trunkfs.store import history
from trunkfs.store.errors import AlreadyExists, InvalidArgument, NotFound

Entry = tuple[dict, bytes | None]   # an entry head and, for a file, its bytes


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    config = Config(state=str(tmp_path / "state"))
    store = await trio.to_thread.run_sync(open_store, config)
    try:
        svc = await build_service(config, store, mountpoint=None)
        try:
            yield svc
        finally:
            svc.staging.close()
    finally:
        store.close()


class Peer:
    """The two ends of a Unix socketpair: ``conn`` is the daemon's
    Connection (it reads SO_PEERCRED), ``peer`` the client's end, read and
    written with the same framing.  ``pair`` is a socketpair another user
    made (tests/test_auth.py): the daemon's end then sees that user."""

    def __init__(self, svc: Service, pair: tuple[socket.socket, socket.socket] | None = None) -> None:
        a, b = pair or socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.svc = svc
        self.conn = Connection(trio.SocketStream(trio.socket.from_stdlib_socket(a)))
        self.peer = Connection(trio.SocketStream(trio.socket.from_stdlib_socket(b)))

    async def aclose(self) -> None:
        await self.peer.aclose()
        await self.conn.aclose()

    async def call(self, op: str, **args: Any) -> Any:
        """One handler, called directly; its result (or its exception)."""
        return await HANDLERS[op](Request(self.svc, self.conn, op, args))

    async def put(self, repo: str, entries: list[Entry], **args: Any) -> dict:
        """``put`` with the client writing the entries' frames at the same time."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_entries, entries)
            return await self.call("put", repo=repo, **args)

    async def _send_entries(self, entries: list[Entry]) -> None:
        for head, data in entries:
            await self.peer.send({"entry": head})
            if data is not None:
                for i in range(0, len(data), 1 << 20):
                    await self.peer.send_data(data[i:i + (1 << 20)])
                await self.peer.send({"eof": True})
        await self.peer.send({"end": True})

    async def get(self, repo: str, path: str = "/", **args: Any) -> tuple[dict, list[Entry]]:
        """``get``: its reply and the entries it streamed, read as they come."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._call_get, repo, path, args)
            reply = await self.peer.read_message()
            assert reply is not None and reply["ok"], reply
            entries: list[Entry] = []
            while (msg := await self.peer.read_message()) is not None and not msg.get("end"):
                head = msg["entry"]
                data = None
                if head["type"] == "file":
                    parts = []
                    while not (frame := await self.peer.read_message() or {}).get("eof"):
                        parts.append(await self.peer.read_frame_body(frame))
                    data = b"".join(parts)
                entries.append((head, data))
        return reply["result"], entries

    async def _call_get(self, repo: str, path: str, args: dict) -> None:
        req = Request(self.svc, self.conn, "get", dict(args, repo=repo, path=path))
        assert await HANDLERS["get"](req) is None
        assert req.started, "get replies itself"


@pytest.fixture
async def peer(service: Service) -> AsyncIterator[Peer]:
    p = Peer(service)
    try:
        yield p
    finally:
        await p.aclose()


def file(path: str, data: bytes, mode: int = 0o644, mtime: int = 1_700_000_000_000_000_000) -> Entry:
    return {"type": "file", "path": path, "mode": mode, "mtime": mtime}, data


def directory(path: str, mode: int = 0o755) -> Entry:
    return {"type": "dir", "path": path, "mode": mode, "mtime": 1_600_000_000_000_000_000}, None


def symlink(path: str, target: str) -> Entry:
    return {"type": "symlink", "path": path, "target": target, "mtime": 5}, None


BIG = random.Random(7).randbytes(3_000_000)


async def test_repos_and_branches_create_list_delete(peer: Peer) -> None:
    created = await peer.call("repo.create", name="images")
    assert set(created) == {"name", "id"} and created["name"] == "images"
    await peer.call("repo.create", name="labels")
    with pytest.raises(AlreadyExists):
        await peer.call("repo.create", name="images")
    listed = await peer.call("repo.list")
    assert [(r["name"], r["branches"], r["head"], r["size"]) for r in listed] == [
        ("images", ["main"], None, 0), ("labels", ["main"], None, 0)]

    assert await peer.call("branch.create", repo="images", branch="dev") == {
        "repo": "images", "branch": "dev", "head": None}
    assert await peer.call("branch.list", repo="images") == [
        {"name": "dev", "head": None}, {"name": "main", "head": None}]
    assert await peer.call("branch.delete", repo="images", branch="dev") == {
        "repo": "images", "deleted": "dev"}
    with pytest.raises(NotFound):
        await peer.call("branch.delete", repo="images", branch="dev")
    assert await peer.call("branch.list", repo="images") == [{"name": "main", "head": None}]

    assert await peer.call("repo.delete", name="labels") == {"deleted": "labels"}
    assert [r["name"] for r in await peer.call("repo.list")] == ["images"]
    with pytest.raises(NotFound):
        await peer.call("repo.delete", name="labels")


async def test_put_then_read_it_back(peer: Peer) -> None:
    await peer.call("repo.create", name="raw")
    first = await peer.put("raw", [directory("data", 0o750), file("data/a.csv", b"x,y\n1,2\n", 0o600),
                                   file("data/sub/big.bin", BIG), symlink("data/link", "a.csv"),
                                   file("readme.txt", b"hello\n")], message="first")
    cid = first["commit"]
    assert first == {"commit": cid, "branch": "main", "files": 3, "bytes": len(BIG) + 14,
                     "new_bytes": first["new_bytes"], "size": len(BIG) + 14, "jobs": []}
    assert first["new_bytes"] > 0

    top = await peer.call("ls", repo="raw")
    assert top["commit"] == cid and top["path"] == "/"
    assert [(e["name"], e["type"], e.get("files")) for e in top["entries"]] == [
        ("data", "dir", 2), ("readme.txt", "file", None)]
    sub = await peer.call("ls", repo="raw", path="/data")
    listed = {e["name"]: e for e in sub["entries"]}["a.csv"]
    assert listed == {"name": "a.csv", "type": "file", "mode": 0o600, "mtime": 1_700_000_000_000_000_000,
                      "size": 8, "content": listed["content"]}
    assert len(listed["content"]) == 32
    assert {e["name"]: e for e in sub["entries"]}["link"]["target"] == "a.csv"
    assert (await peer.call("ls", repo="raw", path="data/a.csv", ref=cid[:8]))["entries"][0]["size"] == 8

    reply, entries = await peer.get("raw", "/data")
    assert reply == {"commit": cid, "type": "dir", "size": len(BIG) + 8, "files": 2}
    assert [(h["path"], h["type"]) for h, _ in entries] == [
        ("", "dir"), ("a.csv", "file"), ("link", "symlink"), ("sub", "dir"), ("sub/big.bin", "file")]
    heads = {h["path"]: (h, data) for h, data in entries}
    assert heads[""][0]["mode"] == 0o750
    assert heads["a.csv"] == ({"path": "a.csv", "type": "file", "mode": 0o600,
                               "mtime": 1_700_000_000_000_000_000, "size": 8}, b"x,y\n1,2\n")
    assert heads["sub/big.bin"][1] == BIG
    assert heads["link"][0]["target"] == "a.csv"
    reply, entries = await peer.get("raw")
    assert reply == {"commit": cid, "type": "dir", "size": len(BIG) + 14, "files": 3}
    commit = await peer.svc.workers.run(peer.svc.store.read_commit, cid)
    assert entries[0] == ({"path": "", "type": "dir", "mode": 0o755,
                           "mtime": int(commit.time * 1e9)}, None), "the root is the commit's root entry"
    assert [h["path"] for h, _ in entries[1:]] == [
        "data", "data/a.csv", "data/link", "data/sub", "data/sub/big.bin", "readme.txt"]
    reply, entries = await peer.get("raw", "/readme.txt", file_only=True)
    assert reply == {"commit": cid, "type": "file", "size": 6, "files": 1}
    assert [(h["path"], data) for h, data in entries] == [("", b"hello\n")]

    second = await peer.put("raw", [file("readme.txt", b"changed\n"), file("new/n.txt", b"n")],
                            dest="/")
    removed = await peer.call("rm", repo="raw", paths=["/data/link"], message="no link")
    assert removed == {"commit": removed["commit"], "removed": ["/data/link"], "jobs": []}

    log = await peer.call("log", repo="raw")
    assert [c["id"] for c in log] == [removed["commit"], second["commit"], cid]
    assert [c["message"] for c in log] == ["no link", "put 2 files", "first"]
    assert [c["id"] for c in await peer.call("log", repo="raw", limit=1)] == [removed["commit"]]
    shown = await peer.call("show", repo="raw", ref=cid)
    assert shown == dict(log[2], branch=None)
    assert shown["author"]["uid"] == os.getuid() and shown["files"] == 3
    assert (await peer.call("show", repo="raw"))["branch"] == "main"

    assert await peer.call("diff", repo="raw", ref1=second["commit"]) == {
        "from": cid, "to": second["commit"],
        "changes": [{"status": "A", "path": "/new/n.txt"}, {"status": "M", "path": "/readme.txt"}]}
    assert await peer.call("diff", repo="raw", ref1=cid, ref2="main") == {
        "from": cid, "to": removed["commit"],
        "changes": [{"status": "D", "path": "/data/link"}, {"status": "A", "path": "/new/n.txt"},
                    {"status": "M", "path": "/readme.txt"}]}
    # the handlers answer what the history queries say
    at = history.resolve(peer.svc.refs, "raw", "main")
    assert (await peer.call("ls", repo="raw", path="/new"))["entries"] == \
        history.list_path(peer.svc.store, at, ["new"]).entries


async def test_provenance_of_a_derived_commit(peer: Peer) -> None:
    svc = peer.svc
    await peer.call("repo.create", name="raw")
    await peer.call("repo.create", name="counts")
    raw = (await peer.put("raw", [file("f", b"abc")]))["commit"]
    root = (await svc.workers.run(svc.store.read_commit, raw)).root_entry()
    derived = await svc.commits.commit("counts", "main", ReplaceRoot(root), CommitMeta(
        message="derived", author={"uid": 0, "name": "root"},
        origin={"kind": "pipeline", "pipeline": "count", "job": "j1"},
        provenance=[{"repo": "raw", "commit": raw}]))
    steps = await peer.call("provenance", repo="counts")
    assert steps == [
        {"depth": 0, "repo": "counts", "commit": derived.id,
         "origin": {"kind": "pipeline", "pipeline": "count", "job": "j1"},
         "provenance": [{"repo": "raw", "commit": raw}]},
        {"depth": 1, "repo": "raw", "commit": raw, "origin": {"kind": "user"}, "provenance": []}]
    assert await peer.call("provenance", repo="raw", ref=raw[:10]) == [dict(steps[1], depth=0)]


async def test_missing_repos_and_paths_are_not_found(peer: Peer) -> None:
    for op, args in [("ls", {"repo": "nope"}), ("log", {"repo": "nope"}), ("show", {"repo": "nope"}),
                     ("diff", {"repo": "nope"}), ("provenance", {"repo": "nope"}),
                     ("get", {"repo": "nope", "path": "/"}), ("branch.list", {"repo": "nope"}),
                     ("branch.create", {"repo": "nope", "branch": "b"}),
                     ("rm", {"repo": "nope", "paths": ["/x"]})]:
        with pytest.raises(NotFound, match="nope"):
            await peer.call(op, **args)
    await peer.call("repo.create", name="r")
    with pytest.raises(NotFound, match="no commits yet"):
        await peer.call("show", repo="r")
    assert await peer.call("ls", repo="r") == {"commit": None, "path": "/", "entries": []}
    assert await peer.call("log", repo="r") == []
    await peer.put("r", [file("a/b", b"b")])
    with pytest.raises(NotFound, match=r"^r:/a/c does not exist$"):
        await peer.call("ls", repo="r", path="/a/c/d")
    with pytest.raises(NotFound, match=r"^r:/a/b is not a directory$"):
        await peer.call("get", repo="r", path="/a/b/c")
    with pytest.raises(NotFound, match="neither a branch, a tag nor a commit"):
        await peer.call("ls", repo="r", ref="nobranch")
    with pytest.raises(NotFound):
        await peer.call("rm", repo="r", paths=["/a/zzz"])


async def test_wrong_arguments_are_invalid(peer: Peer) -> None:
    await peer.call("repo.create", name="r")
    cid = (await peer.put("r", [file("a/b", b"b")]))["commit"]
    with pytest.raises(InvalidArgument, match="commits are read-only; name a branch"):
        await peer.call("put", repo="r", branch=cid)
    with pytest.raises(InvalidArgument, match="commits are read-only; name a branch"):
        await peer.call("rm", repo="r", branch=cid[:12], paths=["/a/b"])
    with pytest.raises(InvalidArgument, match=r"^r:/a is a directory, not a file$"):
        await peer.call("get", repo="r", path="/a", file_only=True)
    with pytest.raises(InvalidArgument, match="missing argument 'repo'"):
        await peer.call("ls")
    with pytest.raises(InvalidArgument, match="'limit' must be int"):
        await peer.call("log", repo="r", limit="3")
    with pytest.raises(InvalidArgument, match="contains '..'"):
        await peer.call("ls", repo="r", path="/a/../b")
    with pytest.raises(InvalidArgument, match="non-empty list"):
        await peer.call("rm", repo="r", paths=[])
    with pytest.raises(InvalidArgument, match="contains a '/'"):
        await peer.call("repo.create", name="a/b")


async def test_requests_through_the_connection_loop(peer: Peer) -> None:
    """The server's request loop over the same socketpair: replies and error
    codes as a client sees them, and the connection keeps serving."""
    server = ControlServer(peer.svc, "unused.sock")

    async def ask(msg: dict) -> dict:
        await peer.peer.send(msg)
        reply = await peer.peer.read_message()
        assert reply is not None
        return reply

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_connection, peer.conn)
        assert (await ask({"op": "ping"}))["result"]["uid"] == os.getuid()
        assert await ask({"op": "ls", "args": {"repo": "nope"}}) == {
            "ok": False, "error": {"code": "not_found", "message": "repo 'nope' does not exist"}}
        assert (await ask({"op": "nope"}))["error"]["code"] == "unknown_op"
        assert (await ask({"op": "ls", "args": []}))["error"]["code"] == "bad_request"
        assert (await ask({"op": "repo.create", "args": {"name": "r"}}))["ok"]
        cid = (await ask({"op": "branch.create", "args": {"repo": "r", "branch": "dev"}}))["result"]["head"]
        assert cid is None
        assert await ask({"op": "branch.list", "args": {"repo": "r"}}) == {
            "ok": True, "result": [{"name": "dev", "head": None}, {"name": "main", "head": None}]}
        await peer.peer.stream.send_eof()   # the client hangs up; the loop ends


async def test_bulk_work_has_threads_of_its_own(service: Service) -> None:
    """With every bulk thread taken (as by large puts, gets or an fsck), the
    quick calls the mount and `ls` make still run, and a put waits for a
    bulk thread rather than taking one of theirs."""
    peer = Peer(service)
    await peer.call("repo.create", name="r")
    await peer.put("r", [({"type": "file", "path": "f", "mode": 0o644}, b"x" * 300_000)])
    held = service.bulk.limiter.total_tokens
    tokens = [object() for _ in range(int(held))]
    for t in tokens:
        await service.bulk.limiter.acquire_on_behalf_of(t)
    try:
        with trio.fail_after(30):
            listed = await peer.call("ls", repo="r", path="/")
            assert [e["name"] for e in listed["entries"]] == ["f"]
            assert await service.workers.run(service.store.read_tree, listed_tree(service, "r")) != []
        with trio.move_on_after(0.5) as waited:
            await peer.put("r", [({"type": "file", "path": "g", "mode": 0o644}, b"y" * 300_000)])
        assert waited.cancelled_caught, "a put ran without a bulk thread"
    finally:
        for t in tokens:
            service.bulk.limiter.release_on_behalf_of(t)
    await peer.aclose()


def listed_tree(svc: Service, repo: str) -> str:
    head, _ = svc.refs.read_branch(repo, "main")
    assert head is not None
    return svc.store.read_commit(head).tree
