"""Staging by path through the socket (``stage.put``, ``stage.rm``: what
``trunkfs://`` writes outside a transaction do), against a real mounted
daemon: the branch view serves what was staged, status and commit see it,
a replaced committed file keeps its base for the conflict check, and bad
paths, modes and targets are refused without changing anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trunkfs.client import ClientError, ConflictError, InvalidArgumentError, NotFoundError


def _local(workdir: Path, name: str, data: bytes) -> str:
    p = workdir / name
    p.write_bytes(data)
    return str(p)


def test_staged_files_show_in_the_branch_view_and_commit(mounted, workdir):
    d = mounted
    d.cli("repo", "create", "raw")
    src = workdir / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "old.txt").write_text("old")
    (src / "a" / "keep.txt").write_text("keep")
    d.cli("put", "raw", str(src / "a"))
    view = d.mount / "raw" / "a"
    assert sorted(p.name for p in view.iterdir()) == ["keep.txt", "old.txt"]   # the kernel saw them
    with d.client() as c:
        c.stage_files("raw", [("a/old.txt", _local(workdir, "n1", b"replaced")),
                              ("a/new/deep.txt", _local(workdir, "n2", b"deep" * 100_000))])
        c.stage_rm("raw", ["a/keep.txt"])
        assert (view / "old.txt").read_bytes() == b"replaced"
        assert (view / "new" / "deep.txt").read_bytes() == b"deep" * 100_000
        assert not (view / "keep.txt").exists()
        changes = {(ch.status, ch.path) for ch in c.status("raw").changes}
        assert changes == {("M", "/a/old.txt"), ("A", "/a/new"), ("A", "/a/new/deep.txt"), ("D", "/a/keep.txt")} \
            or changes == {("M", "/a/old.txt"), ("A", "/a/new/deep.txt"), ("D", "/a/keep.txt")}
        c.commit("raw", message="staged by path")
        assert c.cat("raw", "/a/old.txt") == b"replaced"
        assert c.cat("raw", "/a/new/deep.txt") == b"deep" * 100_000
        with pytest.raises(NotFoundError):
            c.cat("raw", "/a/keep.txt")
    assert (view / "old.txt").read_bytes() == b"replaced"


def test_a_replaced_file_conflicts_with_a_commit_that_changed_it(daemon, workdir):
    d = daemon
    d.cli("repo", "create", "raw")
    d.cli("put", "raw", _local(workdir, "f.txt", b"v1"))
    with d.client() as c:
        c.stage_files("raw", [("f.txt", _local(workdir, "mine", b"mine"))])
        d.cli("put", "raw", _local(workdir, "f.txt", b"theirs"))   # the head moves under the staging
        with pytest.raises(ConflictError) as caught:
            c.commit("raw", message="mine")
        assert caught.value.details["paths"] == ["/f.txt"]
        assert c.cat("raw", "/f.txt") == b"theirs"


@pytest.mark.parametrize("path, why", [("../x", "'..'"), ("a/\0b", "NUL"), ("f.txt/below", "not a directory"),
                                       ("dir", "is a directory"), ("/", "root")])
def test_bad_targets_are_refused_and_change_nothing(daemon, workdir, path, why):
    d = daemon
    d.cli("repo", "create", "raw")
    (workdir / "dir").mkdir()
    (workdir / "dir" / "in.txt").write_text("in")
    d.cli("put", "raw", _local(workdir, "f.txt", b"v1"), str(workdir / "dir"))
    with d.client() as c:
        with pytest.raises(InvalidArgumentError, match=why):
            c.stage_files("raw", [(path, _local(workdir, "x", b"x"))])
    with d.client() as c:     # a new connection: a refused stream may end the old one
        assert c.status("raw").changes == []
        with pytest.raises(InvalidArgumentError, match="mode"):
            c.stage_files("raw", [("m.txt", _local(workdir, "m", b"m"))], mode=0o4755)
        with pytest.raises(NotFoundError):
            c.stage_rm("raw", ["nothing.txt"])
        with pytest.raises(InvalidArgumentError):
            c.stage_rm("raw", ["dir"])
        with pytest.raises(ClientError):
            c.stage_rm("raw", [])
        with pytest.raises(InvalidArgumentError, match="not a directory"):
            c.stage_mkdir("raw", ["f.txt/sub"])
        with pytest.raises(InvalidArgumentError, match="'..'"):
            c.stage_mkdir("raw", ["../up"])
        assert c.status("raw").changes == []


def test_names_in_any_bytes_are_staged_by_path_and_shown_as_those_bytes(mounted, workdir):
    """Paths staged through the socket are PEP 383 strings: Latin-1 bytes, a
    newline, a backslash and bytes that are not UTF-8 reach the branch view,
    the commit and a later read as exactly those bytes."""
    from tests.test_byte_names import NAMES
    d = mounted
    d.cli("repo", "create", "raw")
    with d.client() as c:
        staged = [(os.fsdecode(b"d\xe9/" + name), _local(workdir, f"n{i}", name)) for i, name in enumerate(NAMES)]
        c.stage_files("raw", staged)
        c.stage_mkdir("raw", [os.fsdecode(b"d\xe9/empty-\xff")])
        shown = set(os.listdir(os.fsencode(d.mount / "raw") + b"/d\xe9"))
        assert shown == set(NAMES) | {b"empty-\xff"}
        for name in NAMES:
            with open(os.fsencode(d.mount / "raw") + b"/d\xe9/" + name, "rb") as f:
                assert f.read() == name
        c.stage_rm("raw", [os.fsdecode(b"d\xe9/" + NAMES[0])])
        c.commit("raw", message="odd names")
        for name in NAMES[1:]:
            assert c.cat("raw", os.fsdecode(b"/d\xe9/" + name)) == name
        with pytest.raises(NotFoundError):
            c.cat("raw", os.fsdecode(b"/d\xe9/" + NAMES[0]))
