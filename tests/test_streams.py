"""Streamed replies (``stream``: true) of ``diff``, ``status``, ``ls`` and
``log``: the header first, then the items on lines of at most
``STREAM_BATCH``, then ``{"end": true, "count": n}``; the items are those
the whole reply holds, in the same order.  In process, over a socketpair."""

from __future__ import annotations

from typing import Any

import trio

from trunkfs.daemon.handlers import HANDLERS, Request
from trunkfs.daemon.handlers.base import STREAM_BATCH
from trunkfs.store import history
from tests.test_handlers import Peer, file, peer, service  # noqa: F401  (fixtures)


async def streamed(p: Peer, op: str, **args: Any) -> tuple[dict, list[list], dict]:
    """The header, the item lines and the end line of a streamed reply."""
    async def call() -> None:
        req = Request(p.svc, p.conn, op, dict(args, stream=True))
        assert await HANDLERS[op](req) is None and req.started

    lines: list[list] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        reply = await p.peer.read_message()
        assert reply is not None and reply["ok"], reply
        while (msg := await p.peer.read_message()) is not None and not msg.get("end"):
            assert set(msg) == {"items"} and 0 < len(msg["items"]) <= STREAM_BATCH
            lines.append(msg["items"])
    assert msg is not None
    return reply["result"], lines, msg


async def test_diff_ls_log_stream_what_the_whole_replies_hold(peer: Peer, monkeypatch: Any) -> None:
    monkeypatch.setattr(history, "LIST_PAGE", 7)
    n = 2 * STREAM_BATCH + 17
    await peer.call("repo.create", name="r")
    first = (await peer.put("r", [file(f"d/f{i:05d}", b"%d" % i) for i in range(n)], message="one"))["commit"]
    second = (await peer.put("r", [file(f"d/f{i:05d}", b"new") for i in range(0, n, 3)]
                             + [file("e/added", b"a")], message="two"))["commit"]

    header, lines, end = await streamed(peer, "diff", repo="r", ref1=first, ref2=second)
    whole = await peer.call("diff", repo="r", ref1=first, ref2=second)
    assert header == {"from": first, "to": second}
    assert [c for line in lines for c in line] == whole["changes"] and end == {"end": True, "count": len(whole["changes"])}
    assert len(lines) == 1 + (len(whole["changes"]) - 1) // STREAM_BATCH
    header, lines, _ = await streamed(peer, "diff", repo="r", ref1=second)       # what one commit changed
    assert header == {"from": first, "to": second}
    assert [c for line in lines for c in line] == whole["changes"]

    header, lines, end = await streamed(peer, "ls", repo="r", path="/d")
    listed = (await peer.call("ls", repo="r", path="/d"))["entries"]
    assert header == {"commit": second, "path": "/d"} and end["count"] == n
    assert [e for line in lines for e in line] == listed                       # pages of 7, in name order
    _, lines, _ = await streamed(peer, "ls", repo="r", path="/e/added")          # a file: its own entry
    assert [e["name"] for line in lines for e in line] == ["added"]

    header, lines, end = await streamed(peer, "log", repo="r")
    assert header == {"repo": "r", "commit": second}
    assert [c for line in lines for c in line] == await peer.call("log", repo="r")
    _, lines, _ = await streamed(peer, "log", repo="r", limit=1)
    assert [c["message"] for line in lines for c in line] == ["two"]


async def test_status_streams_the_staged_changes(peer: Peer) -> None:
    await peer.call("repo.create", name="r")
    await peer.put("r", [file("keep", b"k"), file("gone", b"g")])
    await peer.call("stage.mkdir", repo="r", paths=["/new"])
    await peer.call("stage.rm", repo="r", paths=["/gone"])
    header, lines, end = await streamed(peer, "status", repo="r")
    whole = await peer.call("status", repo="r")
    assert header == {k: whole[k] for k in ("repo", "branch", "head")}
    assert [c for line in lines for c in line] == whole["changes"] != []
    assert end["count"] == len(whole["changes"])
