"""Trees deeper than Python's recursion limit: a user can make a directory
chain of any depth through the mount (relative paths have no PATH_MAX).
Committing, reading, listing, diffing and fsck of it must work, and never
stop the daemon."""

from __future__ import annotations

import os
import sys

DEPTH = max(3000, sys.getrecursionlimit() * 3)


def make_chain(top: str, depth: int, leaf: bytes) -> None:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        wfd = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(wfd, leaf)
        os.close(wfd)
    finally:
        os.close(fd)


def read_chain(top: str, depth: int) -> bytes:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        lfd = os.open("leaf", os.O_RDONLY, dir_fd=fd)
        try:
            return os.read(lfd, 100)
        finally:
            os.close(lfd)
    finally:
        os.close(fd)


def test_a_chain_deeper_than_the_recursion_limit_commits_and_reads_back(mounted):
    d = mounted
    d.cli("repo", "create", "r")
    make_chain(str(d.mount / "r"), DEPTH, b"deep")
    assert d.cli("status", "r", "--json").json()["changes"][0]["status"] == "A"
    d.cli("commit", "r", "-m", "deep")
    commit = d.cli("log", "r", "--json").json()[0]["id"]
    assert read_chain(str(d.mount / f"r@{commit}"), DEPTH) == b"deep"
    deep_path = "/d" * DEPTH + "/leaf"
    assert d.cli("cat", f"r:{deep_path}").stdout == b"deep"
    # change the leaf: a second commit edits the whole chain; diff finds it
    fd_path = str(d.mount / "r")
    make_leaf_again = read_chain(fd_path, DEPTH)
    assert make_leaf_again == b"deep"
    d.cli("rm", f"r:{deep_path}")
    second = d.cli("log", "r", "--json").json()[0]["id"]
    diff = d.cli("diff", f"r@{commit}", f"r@{second}", "--json").json()
    assert diff["changes"] == [{"status": "D", "path": deep_path}]
    assert d.cli("fsck", "--json").json()["problems"] == []
    os.mkdir(d.mount / "r" / "e")                 # staged work of that depth survives a restart
    make_chain(str(d.mount / "r" / "e"), DEPTH, b"staged")
    d.stop()
    d.start()
    assert read_chain(str(d.mount / f"r@{commit}"), DEPTH) == b"deep"
    assert read_chain(str(d.mount / "r" / "e"), DEPTH) == b"staged"
    assert {"status": "A", "path": "/e" + "/d" * DEPTH + "/leaf"} in d.cli("status", "r", "--json").json()["changes"]


def test_tree_editor_writes_and_the_walker_reads_any_depth(store):
    """In process: the store's editor and walker, without the mount."""
    from trunkfs.store.diff import diff_trees
    from trunkfs.store.objects import DIR, FILE
    from trunkfs.store.treeedit import TreeEditor
    from trunkfs.store.walk import files_below, lookup
    session = store.session()
    ed = TreeEditor(store, None)
    deep = "/d" * DEPTH + "/leaf"
    chunks, size = session.put_bytes(b"deep")
    ed.put(deep, {"type": FILE, "mode": 0o644, "mtime": 1, "size": size, "chunks": chunks})
    root = ed.write(session)
    session.flush()
    assert root["files"] == 1 and root["size"] == 4
    top = {"type": DIR, "tree": root["tree"]}
    assert lookup(store, top, deep.strip("/").split("/"))["size"] == 4
    assert [p for p, _ in files_below(store, top)] == [deep]
    ed2 = TreeEditor(store, root["tree"])
    ed2.remove(deep)
    session = store.session()
    root2 = ed2.write(session)
    session.flush()
    assert list(diff_trees(store, root["tree"], root2["tree"])) == [("D", deep)]
