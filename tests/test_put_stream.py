"""A put writes its entries to trees as they arrive (``store.puttree``),
sealing the directories the stream has left every ``SEAL_EVERY`` entries,
and grafts its tree onto the head at commit.  These tests seal after every
two entries and send the entries in an order no client of ours would: back
into sealed directories, a file over a directory and a directory over a
file, hard-link names spread over sealed directories, a link name replaced.
What is committed must be what placing the entries one by one, in the
order they came, over the head gives (``expected``, a model of dicts)."""

from __future__ import annotations

import random

import pytest

from trunkfs.store import puttree
from tests.test_handlers import Entry, Peer, directory, file, peer, service  # noqa: F401  (fixtures)

Model = dict[str, tuple]   # path -> ("dir", mode) | ("file", mode, bytes) | ("symlink", target)


def expected(base: Model, entries: list[Entry]) -> Model:
    """What placing ``entries`` in order over ``base`` gives (linked names as files)."""
    tree = dict(base)
    for head, data in entries:
        path = head["path"]
        parts = path.split("/")
        for i in range(1, len(parts)):          # parents: made (over a file) or kept
            p = "/".join(parts[:i])
            if tree.get(p, ("",))[0] != "dir":
                tree[p] = ("dir", 0o755)
        if head["type"] == "dir":   # over a file, or merged into a directory: its mode
            tree[path] = ("dir", head["mode"])
            continue
        for p in [p for p in tree if p == path or p.startswith(path + "/")]:
            del tree[p]
        if head["type"] == "symlink":
            tree[path] = ("symlink", head["target"])
        elif "link_to" in head:
            tree[path] = ("file", tree[head["link_to"]][1], tree[head["link_to"]][2])
        else:
            tree[path] = ("file", head["mode"], data)
    return tree


async def committed(peer: Peer, repo: str) -> Model:
    _, entries = await peer.get(repo, "/")
    out: Model = {}
    for head, data in entries[1:]:
        if head["type"] == "dir":
            out[head["path"]] = ("dir", head["mode"])
        elif head["type"] == "symlink":
            out[head["path"]] = ("symlink", head["target"])
        else:
            out[head["path"]] = ("file", head["mode"], data)
    return out


def linked(path: str, group: str, data: bytes, link_to: str | None = None) -> Entry:
    head = {"type": "file", "path": path, "mode": 0o640, "mtime": 1, "link": group}
    if link_to is not None:
        return dict(head, link_to=link_to), None
    return head, data


@pytest.fixture
def seal_often(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(puttree, "SEAL_EVERY", 2)


async def test_a_put_in_any_order_commits_what_placing_in_order_gives(peer: Peer, seal_often: None) -> None:
    await peer.call("repo.create", name="r")
    first = [directory("a", 0o750), file("a/x", b"ax"), file("a/y", b"ay"), directory("b", 0o700),
             file("b/sub/deep", b"deep"), file("c", b"c"), directory("keep", 0o711), file("keep/k", b"k")]
    await peer.put("r", first)
    base = expected({}, first)
    assert await committed(peer, "r") == base

    second = [
        file("a/z", b"az"), file("b/new", b"bn"),
        file("a/x", b"ax2", 0o600),                 # back into a directory sealed meanwhile
        directory("a", 0o701),                      # named again: its mode changes, entries stay
        file("b/sub", b"file over a directory"),    # a file over a directory of the head
        directory("c", 0o755), file("c/in", b"dir over file"),
        linked("l/one", "00000000000000a1", b"linked bytes"), file("l/pad1", b"p"), file("l/pad2", b"p"),
        linked("m/two", "00000000000000a1", b"", link_to="l/one"),
        linked("n/three", "00000000000000a1", b"", link_to="l/one"),
        file("n/three", b"plain now"),              # a link name replaced by a plain file
        linked("solo", "00000000000000a2", b"one name only"),
        directory("fresh/deeper/still", 0o755), file("fresh/deeper/still/f", b"f"),
        file("a/w", b"aw"),
    ]
    await peer.put("r", second)
    want = expected(base, second)
    got = await committed(peer, "r")
    assert got == want
    assert got["keep"] == ("dir", 0o711) and got["a"] == ("dir", 0o701)

    # the linked names share one group; the name with one name left is no link
    ls = {e["name"]: e for e in (await peer.call("ls", repo="r", path="/l"))["entries"]}
    two = {e["name"]: e for e in (await peer.call("ls", repo="r", path="/m"))["entries"]}
    assert ls["one"]["link"] == two["two"]["link"]
    top = {e["name"]: e for e in (await peer.call("ls", repo="r", path="/"))["entries"]}
    assert "link" not in top["solo"]


async def test_a_put_below_dest_keeps_the_heads_directories(peer: Peer, seal_often: None) -> None:
    await peer.call("repo.create", name="r")
    await peer.put("r", [directory("x", 0o700), directory("x/y", 0o750), file("x/y/old", b"o")])
    rng = random.Random(3)
    names = [f"d{rng.randrange(5)}/f{i}" for i in range(40)]
    await peer.put("r", [file(n, n.encode()) for n in names], dest="/x/y")
    got = await committed(peer, "r")
    assert got["x"] == ("dir", 0o700) and got["x/y"] == ("dir", 0o750)   # passed through: kept
    assert got["x/y/old"] == ("file", 0o644, b"o")
    for n in names:
        assert got[f"x/y/{n}"] == ("file", 0o644, n.encode())
    assert sum(1 for p in got if p.startswith("x/y/d") and got[p][0] == "file") == len(set(names))
