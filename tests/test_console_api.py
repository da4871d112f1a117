"""The web console's HTTP side, in process: a real service, hypercorn on a
real loopback port, real HTTP requests (in a worker thread).  Tokens,
what each uid may see (the socket's own checks), previews, diffs, the
history graph, paging, downloads, live events, and hostile requests."""

from __future__ import annotations

import http.client
import io
import json
import socket
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import trio

from trunkfs.daemon.console.api import PAGE_MAX, RAW_WINDOW
from trunkfs.daemon.console.tokens import ConsoleTokens
from trunkfs.daemon.http import build_app, serve_http
from trunkfs.daemon.metrics import DaemonMetrics
from trunkfs.daemon.service import Service
from trunkfs.store.errors import InvalidArgument

from .test_auth import NOBODY, Users, users  # noqa: F401  (the fixture)
from .test_handlers import Peer, directory, file, peer, service  # noqa: F401  (the fixtures)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Console:
    port: int
    tokens: ConsoleTokens

    def _get(self, path: str, token: str | None, headers: dict[str, str] | None, method: str) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            sent = dict(headers or {})
            if token is not None:
                sent.setdefault("Authorization", f"Bearer {token}")
            conn.request(method, path, headers=sent)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    async def get(self, path: str, token: str | None = None, headers: dict[str, str] | None = None,
                  method: str = "GET") -> Reply:
        return await trio.to_thread.run_sync(self._get, path, token, headers, method)

    async def api(self, path: str, token: str, status: int = 200) -> Any:
        reply = await self.get("/api/" + path, token)
        assert reply.status == status, (path, reply.status, reply.body[:500])
        return reply.json()


@pytest.fixture
async def console(service: Service, nursery: trio.Nursery) -> AsyncIterator[Console]:  # noqa: F811
    port = free_port()
    address = f"127.0.0.1:{port}"
    service.metrics = DaemonMetrics(service)
    service.console = ConsoleTokens()
    service.console_url = f"http://{address}"
    await nursery.start(serve_http, address, build_app(address, service, service.console))
    yield Console(port, service.console)


def png_1x1() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0\xff\0\0")) + chunk(b"IEND", b""))


def parquet_bytes() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.table({"id": list(range(100)), "name": [f"n{i}" for i in range(100)]})
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=50)
    return out.getvalue()


# -- tokens and who may ask ---------------------------------------------------------

async def test_tokens_cookie_and_refusals(console: Console, peer: Peer) -> None:  # noqa: F811
    url = (await peer.call("console"))["url"]
    assert url.startswith(f"http://127.0.0.1:{console.port}/?token=")
    token = url.split("token=", 1)[1]
    # the printed URL sets an HttpOnly cookie and drops the token from the address bar
    first = await console.get("/?token=" + token)
    assert first.status == 303 and first.headers["location"] == "/"
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and token in cookie
    jar = {"Cookie": cookie.split(";", 1)[0]}
    page = await console.get("/", headers=jar)
    assert page.status == 200 and b"console.js" in page.body
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert (await console.get("/api/whoami", headers=jar)).json() == {"uid": 0, "gid": 0, "user": "root"}
    # no token, a wrong one, a forged cookie: 401 for the API and the page
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Cookie": "trunkfs_console=" + "A" * 43},
                    {"Authorization": "Bearer " + "x" * 10_000}):
        assert (await console.get("/api/repos", headers=headers)).status == 401
        assert (await console.get("/", headers=headers)).status == 401
    assert (await console.get("/?token=wrong")).status == 401
    # revoked: the cookie stops working
    assert (await peer.call("console", revoke=True))["revoked"] == 1
    assert (await console.get("/api/whoami", headers=jar)).status == 401
    # an expired token is refused
    console.tokens.lifetime = -1
    stale = console.tokens.issue(0, 0)
    assert (await console.get("/api/whoami", stale)).status == 401


async def test_hostile_requests(console: Console, peer: Peer) -> None:  # noqa: F811
    token = console.tokens.issue(0, 0)
    await peer.call("repo.create", name="raw")
    await peer.put("raw", [file("/a.txt", b"a\n")])
    # DNS rebinding: a loopback listener answers to loopback names only
    assert (await console.get("/api/repos", token, {"Host": "evil.example:80"})).status == 421
    assert (await console.get("/metrics", None, {"Host": "evil.example"})).status == 421
    # methods other than GET/HEAD
    assert (await console.get("/api/repos", token, method="POST")).status == 405
    assert (await console.get("/api/repos", token, method="DELETE")).status == 405
    # static files never leave their folder
    for path in ("/static/../app.py", "/static/..%2fapp.py", "/static/.hidden", "/static/", "/static/nope.js",
                 "/static/%2e%2e/api.py", "/static/__init__.py"):
        assert (await console.get(path, token)).status == 404, path
    assert (await console.get("/static/console.js")).status == 200
    # malformed parameters: clear errors, never a 500
    for path, code in [("tree?repo=raw&path=/../../etc", 400), ("tree?repo=raw&path=/a%00b", 400),
                       ("tree?repo=raw&limit=-1", 400), (f"tree?repo=raw&limit={PAGE_MAX + 1}", 400),
                       ("tree?repo=raw&offset=1e9", 400), ("tree?repo=..&path=/", 400),
                       ("tree?repo=nosuch", 404), ("tree", 400), ("graph?repo=raw&after=../x", 400),
                       ("graph?repo=raw&after=" + "a" * 64, 404), ("preview?repo=raw&path=/", 400),
                       ("preview?repo=raw&path=/nope", 404), ("job?id=nope", 404), ("nosuch", 404),
                       ("diff?repo=raw&from=nosuch&to=main", 404), ("tree?repo=raw&path=/" + "x" * 300, 400),
                       ("pipeline?name=%ff", 400), ("tree?repo=raw&ref=%ff%fe", 404)]:
        reply = await console.get("/api/" + path, token)
        assert reply.status == code, (path, reply.status, reply.body[:300])
        assert reply.json()["error"]["message"], path
    # a request line too long for the server is refused before the app
    assert (await console.get("/api/tree?repo=raw&path=" + "x" * 70_000, token)).status in (414, 431)
    # a name that is not UTF-8 travels as percent-escaped bytes, both ways
    await peer.put("raw", [file("/caf\udce9.txt", b"latin-1 name\n")])
    listing = await console.api("tree?repo=raw&path=/", token)
    assert "caf\udce9.txt" in [e["name"] for e in listing["entries"]]
    assert b"\\udce9" in (await console.get("/api/tree?repo=raw&path=/", token)).body   # ASCII JSON
    shown = await console.api("preview?repo=raw&path=/caf%E9.txt", token)
    assert shown["text"] == "latin-1 name\n"
    # the metrics are open on loopback, and only GET/HEAD
    assert (await console.get("/metrics")).status == 200


async def test_each_uid_sees_what_the_socket_lets_it(console: Console, users: Users) -> None:  # noqa: F811
    root, nobody = users.as_user(0, 0), users.as_user(*NOBODY)
    await root.call("repo.create", name="secret")
    await root.call("repo.acl", name="secret", revoke=["everyone"])
    await root.put("secret", [file("/plan.txt", b"the plan\n")])
    secret_head = (await root.call("resolve", repo="secret"))["commit"]
    await nobody.call("repo.create", name="mine")
    await nobody.put("mine", [file("/notes.txt", b"mine\n")])
    await root.call("repo.create", name="open")
    await root.put("open", [file("/pub.txt", b"public\n", mode=0o644), file("/root-only.txt", b"x", mode=0o600)])
    theirs = console.tokens.issue(*NOBODY)
    rooted = console.tokens.issue(0, 0)
    names = {r["name"] for r in await console.api("repos", theirs)}
    assert names == {"mine", "open"}
    assert {r["name"] for r in await console.api("repos", rooted)} == {"mine", "open", "secret"}
    for path in ("tree?repo=secret&path=/", "graph?repo=secret", "preview?repo=secret&path=/plan.txt",
                 "raw?repo=secret&path=/plan.txt", "diff?repo=secret&to=main", "commit?repo=secret",
                 "filediff?repo=secret&to=main&path=/plan.txt", "refs?repo=secret", "events?repo=secret"):
        reply = await console.get("/api/" + path, theirs)
        assert reply.status == 403, (path, reply.status, reply.body[:200])
        assert b"the plan" not in reply.body
    # a page of another repo's history is not reached through a readable repo
    reply = await console.get(f"/api/graph?repo=mine&after={secret_head}", theirs)
    assert reply.status == 400 and b"the plan" not in reply.body
    # file modes hold as on the socket: 0600 root file refused, 0644 shown
    assert (await console.get("/api/preview?repo=open&path=/root-only.txt", theirs)).status == 403
    assert (await console.api("preview?repo=open&path=/pub.txt", theirs))["text"] == "public\n"
    assert (await console.api("preview?repo=open&path=/root-only.txt", rooted))["text"] == "x"


async def test_previews_downloads_and_diffs(console: Console, peer: Peer) -> None:  # noqa: F811
    token = console.tokens.issue(0, 0)
    await peer.call("repo.create", name="raw")
    big = bytes(range(256)) * ((RAW_WINDOW + 300_000) // 256)
    first = await peer.put("raw", [file("/notes.txt", b"one\ntwo\nthree\n"), file("/gone.txt", b"bye\n"),
                                   file("/t.csv", b"a,b\n1,2\n3,\"x,y\"\n"), file("/pic.png", png_1x1()),
                                   file("/d.parquet", parquet_bytes()), file("/blob.bin", b"\0\1\2" * 100),
                                   file("/big.bin", big), file("/empty", b"")], message="first")
    await peer.put("raw", [file("/notes.txt", b"one\n2\nthree\nfour\n"), file("/new.txt", b"new\n")],
                   message="second")
    await peer.call("rm", repo="raw", paths=["/gone.txt"])
    old = first["commit"]
    # previews of each kind, at the older commit and at the head
    assert (await console.api(f"preview?repo=raw&ref={old}&path=/notes.txt", token))["text"] == "one\ntwo\nthree\n"
    assert (await console.api("preview?repo=raw&path=/notes.txt", token))["text"] == "one\n2\nthree\nfour\n"
    csv = await console.api("preview?repo=raw&path=/t.csv", token)
    assert csv["kind"] == "csv" and csv["rows"] == [["a", "b"], ["1", "2"], ["3", "x,y"]]
    pq = await console.api("preview?repo=raw&path=/d.parquet", token)
    assert pq["kind"] == "parquet" and pq["num_rows"] == 100 and pq["row_groups"] == 2
    assert [c["name"] for c in pq["columns"]] == ["id", "name"] and pq["rows"][3] == ["3", "n3"]
    assert (await console.api("preview?repo=raw&path=/pic.png", token))["kind"] == "image"
    assert (await console.api("preview?repo=raw&path=/blob.bin", token))["kind"] == "binary"
    assert (await console.api("preview?repo=raw&path=/empty", token))["kind"] == "empty"
    # an image inline, anything else as a download; a file larger than one read window whole
    png = await console.get("/api/raw?repo=raw&path=/pic.png", token)
    assert png.status == 200 and png.headers["content-type"] == "image/png" and png.body == png_1x1()
    dl = await console.get("/api/raw?repo=raw&path=/big.bin&download=1", token)
    assert dl.status == 200 and dl.body == big and "attachment" in dl.headers["content-disposition"]
    assert dl.headers["content-type"] == "application/octet-stream"
    # the diff of two refs, and of one file
    changes = await console.api(f"diff?repo=raw&from={old}&to=main", token)
    assert {(c["status"], c["path"]) for c in changes["changes"]} == {
        ("M", "/notes.txt"), ("A", "/new.txt"), ("D", "/gone.txt")}
    text = await console.api(f"filediff?repo=raw&from={old}&to=main&path=/notes.txt", token)
    assert text["kind"] == "text" and "-two\n" in text["diff"] and "+2\n" in text["diff"] and "+four\n" in text["diff"]
    added = await console.api(f"filediff?repo=raw&from={old}&to=main&path=/new.txt", token)
    assert "+new\n" in added["diff"] and "/dev/null" in added["diff"]
    assert (await console.api(f"filediff?repo=raw&from={old}&to=main&path=/blob.bin", token))["kind"] == "binary"


async def test_history_graph_with_a_merge_and_paging(console: Console, peer: Peer) -> None:  # noqa: F811
    token = console.tokens.issue(0, 0)
    await peer.call("repo.create", name="g")
    await peer.put("g", [file("/a", b"1")], message="root")
    await peer.call("branch.create", repo="g", branch="dev")
    await peer.put("g", [file("/b", b"2")], message="on dev", branch="dev")
    await peer.put("g", [file("/c", b"3")], message="on main")
    merged = await peer.call("merge", repo="g", source="dev", message="merge dev")
    whole = await console.api("graph?repo=g&limit=50", token)
    assert [c["message"] for c in whole["commits"]][0] == "merge dev" and whole["next"] is None
    assert len(whole["commits"]) == 4 and whole["commits"][0]["parents"] == merged["parents"]
    assert {c["message"] for c in whole["commits"]} == {"root", "on dev", "on main", "merge dev"}
    # pages of one commit each cover the same commits, each once, children first
    seen, after = [], ""
    while True:
        page = await console.api(f"graph?repo=g&limit=1{after}", token)
        seen += [c["id"] for c in page["commits"]]
        if page["next"] is None:
            break
        after = "&after=" + page["next"]
    assert seen == [c["id"] for c in whole["commits"]]
    refs = await console.api("refs?repo=g", token)
    assert {b["name"] for b in refs["branches"]} == {"main", "dev"}


async def test_directory_pages(console: Console, peer: Peer) -> None:  # noqa: F811
    token = console.tokens.issue(0, 0)
    await peer.call("repo.create", name="many")
    await peer.put("many", [directory("/d")] + [file(f"/d/f{i:04d}", b"") for i in range(450)])
    names: list[str] = []
    for offset in range(0, 500, 200):
        page = await console.api(f"tree?repo=many&path=/d&offset={offset}&limit=200", token)
        assert page["total"] == 450 and page["entry"]["type"] == "dir"
        names += [e["name"] for e in page["entries"]]
    assert names == [f"f{i:04d}" for i in range(450)]
    assert (await console.api("tree?repo=many&path=/d&offset=9999", token))["entries"] == []


async def test_live_events_only_of_readable_repos(console: Console, users: Users) -> None:  # noqa: F811
    root, nobody = users.as_user(0, 0), users.as_user(*NOBODY)
    await root.call("repo.create", name="secret")
    await root.call("repo.acl", name="secret", revoke=["everyone"])
    await nobody.call("repo.create", name="mine")
    theirs = console.tokens.issue(*NOBODY)

    def listen(lines: list[str], ready: trio.Event, token: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=20)
        conn.request("GET", "/api/events", headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("content-type") == "text/event-stream"
        trio.from_thread.run_sync(ready.set)
        try:
            while not any(line.startswith("data:") for line in lines):
                lines.append(resp.fp.readline().decode())
        finally:
            conn.close()
    lines: list[str] = []
    ready = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, listen, lines, ready, theirs)
        await ready.wait()
        await trio.sleep(0.2)
        await root.put("secret", [file("/s", b"s")], message="secret commit")   # not for nobody
        await nobody.put("mine", [file("/m", b"m")], message="my commit")
    events = [json.loads(line[5:]) for line in lines if line.startswith("data:")]
    assert [(e["repo"], e["message"]) for e in events] == [("mine", "my commit")]


async def test_console_needs_the_http_listener(peer: Peer) -> None:  # noqa: F811
    with pytest.raises(InvalidArgument, match="--http"):
        await peer.call("console")


async def test_off_loopback_every_request_needs_a_token(service: Service, nursery: trio.Nursery) -> None:  # noqa: F811
    port = free_port()
    address = f"0.0.0.0:{port}"
    service.metrics = DaemonMetrics(service)
    service.console = ConsoleTokens()
    await nursery.start(serve_http, address, build_app(address, service, service.console))
    c = Console(port, service.console)
    token = c.tokens.issue(0, 0)
    assert (await c.get("/metrics")).status == 401
    assert (await c.get("/metrics", token)).status == 200
    assert (await c.get("/api/whoami", None, {"Host": "trunk.example.org"})).status == 401
    assert (await c.get("/api/whoami", token, {"Host": "trunk.example.org"})).status == 200
    # metrics_auth: "token" on loopback too; "none" open everywhere; nothing else
    assert build_app("127.0.0.1:1", service, service.console, "token").metrics_open is False
    assert build_app("0.0.0.0:1", service, service.console, "none").metrics_open is True
    with pytest.raises(InvalidArgument):
        build_app("127.0.0.1:1", service, service.console, "open")


async def test_a_revoked_token_ends_its_event_stream(console: Console, peer: Peer) -> None:  # noqa: F811
    await peer.call("repo.create", name="raw")
    token = console.tokens.issue(0, 0)

    def listen(lines: list[str], ready: trio.Event) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=20)
        conn.request("GET", "/api/events", headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        trio.from_thread.run_sync(ready.set)
        try:
            while line := resp.readline():         # until the server ends the stream
                lines.append(line.decode())
        finally:
            conn.close()
    lines: list[str] = []
    ready = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, listen, lines, ready)
        await ready.wait()
        await trio.sleep(0.2)
        assert console.tokens.revoke(0) == 1
        await peer.put("raw", [file("/after", b"x")], message="after the revoke")
    assert "event: revoked\n" in lines
    assert not any("after the revoke" in line for line in lines)


async def test_a_huge_diff_is_counted_up_to_a_cap(console: Console, peer: Peer, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from trunkfs.daemon.console import api as console_api
    monkeypatch.setattr(console_api, "DIFF_COUNT_MAX", 50)     # the cap, small for the test
    token = console.tokens.issue(0, 0)
    await peer.call("repo.create", name="wide")
    first = await peer.put("wide", [file("/keep", b"k")])
    await peer.put("wide", [directory("/d")] + [file(f"/d/f{i:03d}", b"") for i in range(300)])
    page = await console.api(f"diff?repo=wide&from={first['commit']}&to=main&limit=100&offset=100", token)
    assert [c["path"] for c in page["changes"]] == [f"/d/f{i:03d}" for i in range(100, 200)]
    assert page["complete"] is False and page["total"] == 250 and page["counts"]["A"] == 250
    whole = await console.api(f"diff?repo=wide&from={first['commit']}&to=main&limit=300", token)
    assert whole["complete"] is True and whole["total"] == 300 and len(whole["changes"]) == 300
    assert (await console.api("diff?repo=wide&to=main", token))["total"] == 300   # against the first parent
