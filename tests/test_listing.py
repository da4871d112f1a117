"""Directory listings through a real mount, files sent by name only
(``mountfs.nameonly``): every tool that reads a directory sees the same
names and types as with whole entries, ``d_ino`` is the inode number a
later ``stat`` shows, and nothing is left to a lookup that the kernel
would not ask for."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.test_write_tools import commit, write


def source_tree(root: Path) -> Path:
    """Files in a few directories, a symlink, a hard-link pair, a FIFO, and
    names that are not UTF-8, hold a newline or spell a tree's JSON keys."""
    for d in range(3):
        for f in range(40):
            write(root / f"d{d}" / f"f{f:03d}", b"%d/%d\n" % (d, f))
    (root / "d0" / "sub").mkdir()
    write(root / "d0" / "sub" / "leaf", b"leaf")
    os.symlink("d1/f000", root / "link")
    write(root / "a", b"linked")
    os.link(root / "a", root / "b")
    os.mkfifo(root / "fifo")
    # names as an attacker picks them: bytes that are not UTF-8, a newline, a leading dash
    for raw in (b"caf\xe9", b"line\nbreak", b"-rf", b"\xff\xfe sp ace"):
        write(root / "d2" / os.fsdecode(raw), raw)
    # names and a target that spell the keys a listing reads from a tree's bytes
    write(root / "d1" / 'q","type":"dir', b"not a directory")
    write(root / "d1" / '"name":"f000', b"not f000")
    os.symlink('x","type":"dir","name":"evil', root / "d1" / "tricky")
    return root


def kind(mode: int) -> str:
    return {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink",
            stat.S_IFIFO: "fifo"}[stat.S_IFMT(mode)]


def scan(root: Path) -> dict[str, tuple[str, int]]:
    """(type from d_type, d_ino) of every name below ``root``, by relative
    path, from ``os.scandir`` alone (no stat)."""
    out: dict[str, tuple[str, int]] = {}
    todo = [root]
    while todo:
        d = todo.pop()
        with os.scandir(d) as it:
            for e in it:
                t = ("dir" if e.is_dir(follow_symlinks=False) else "symlink" if e.is_symlink()
                     else "file" if e.is_file(follow_symlinks=False) else "other")
                out[os.path.relpath(e.path, root)] = (t, e.inode())
                if t == "dir":
                    todo.append(Path(e.path))
    return out


def check_view(view: Path, src: Path) -> None:
    listed = scan(view)
    assert set(listed) == set(scan(src)), "the same names as the source"
    for rel, (t, d_ino) in listed.items():
        st = os.lstat(view / rel)
        want = kind(st.st_mode)
        assert t == (want if want != "fifo" else "other"), (rel, t, want)
        assert d_ino == st.st_ino, f"{rel}: d_ino {d_ino}, st_ino {st.st_ino}"
    a, b = os.lstat(view / "a"), os.lstat(view / "b")
    assert a.st_ino == b.st_ino and a.st_nlink == 2, "hard links are one inode"
    found = subprocess.run(["find", view, "-print0"], check=True, capture_output=True).stdout
    assert sorted(os.path.relpath(os.fsdecode(p), view) for p in found.split(b"\0")
                  if p and p != os.fsencode(view)) == sorted(listed)


@pytest.mark.parametrize("listing", ["names", "auto"])
def test_listings_by_name_only_show_names_types_and_inode_numbers(daemon_factory, workdir, listing):
    d = daemon_factory(mount=True, extra=["--listing", listing])
    src = source_tree(workdir / "src")
    d.cli("repo", "create", "r")
    cid = d.cli("put", "r", str(src)).out.strip()
    subprocess.run(["sync"], check=True)
    for view in (d.mount / f"r@{cid}" / "src", d.mount / "r" / "src"):
        check_view(view, src)
        # a second listing (inodes held now, sent whole) shows the same numbers
        assert scan(view) == scan(view)
    # a change in the branch view: the changed directory is listed from staging
    branch = d.mount / "r" / "src"
    os.rename(branch / "d1" / "f001", branch / "d2" / "moved")
    os.rename(src / "d1" / "f001", src / "d2" / "moved")
    write(branch / "d2" / "new", b"new")
    write(src / "d2" / "new", b"new")
    check_view(branch, src)
    cid2 = commit(d, "moved")
    d.stop()
    d.start()   # a fresh inode table: every file listed by name only again
    check_view(d.mount / f"r@{cid2}" / "src", src)
    check_view(branch, src)
    assert (branch / "d2" / "moved").read_bytes() == b"1/1\n"


def test_a_huge_directory_lists_the_same_from_its_record_and_from_the_tree_cache(daemon_factory, workdir):
    """Listed by name, a directory's names come from the index's record
    (its tree not read), or, once a lookup put its tree in the cache, from
    the cached tree (built off the event loop beyond ``ON_LOOP_ENTRIES``)."""
    from trunkfs.mountfs.listings import ON_LOOP_ENTRIES
    count = ON_LOOP_ENTRIES + 500
    src = workdir / "src"
    (src / "big").mkdir(parents=True)
    for i in range(count):
        (src / "big" / f"n{i:05d}").touch()
    os.mkfifo(src / "big" / "n99999-fifo")
    d = daemon_factory(mount=True, extra=["--listing", "names"])
    d.cli("repo", "create", "r")
    cid = d.cli("put", "r", str(src)).out.strip()
    d.stop()
    d.start()   # nothing cached: the first listing reads the record
    view = d.mount / f"r@{cid}" / "src" / "big"
    want = scan(src / "big")
    from_record = scan(view)
    os.stat(view / "n00007")   # the lookup reads the tree into the cache
    from_cache = scan(view)
    assert {k: t for k, (t, _) in from_record.items()} == {k: t for k, (t, _) in want.items()}
    assert from_cache == from_record, "the same names, types and d_ino both ways"
    assert len(from_record) == count + 1
