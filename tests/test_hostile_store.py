"""What is stored cannot stop the daemon: a commit whose trees hold hostile
values (as another machine on the same bucket, or anyone with write access to
it, could write them) is served with clear errors, through the mount and the
socket, and everything else stays readable."""

from __future__ import annotations

import errno
import os

import pytest

from tests.conftest import open_local_store
from trunkfs.store.objects import DIR, FILE, SYMLINK, Commit
from trunkfs.store.refs import Refs

# each entry: (name, entry fields) - wrong types, out-of-range numbers, unknown kinds
HOSTILE = [
    ("huge-mtime", {"type": FILE, "mode": 0o644, "mtime": 2 ** 80, "size": 0, "chunks": []}),
    ("neg-mtime", {"type": FILE, "mode": 0o644, "mtime": -(2 ** 70), "size": 0, "chunks": []}),
    ("str-mode", {"type": FILE, "mode": "rwx", "mtime": 1, "size": 0, "chunks": []}),
    ("huge-mode", {"type": FILE, "mode": 2 ** 40, "mtime": 1, "size": 0, "chunks": []}),
    ("neg-size", {"type": FILE, "mode": 0o644, "mtime": 1, "size": -5, "chunks": []}),
    ("huge-size", {"type": FILE, "mode": 0o644, "mtime": 1, "size": 2 ** 70, "chunks": []}),
    ("bad-chunks", {"type": FILE, "mode": 0o644, "mtime": 1, "size": 3, "chunks": [["zz", "x"]]}),
    ("missing-chunk", {"type": FILE, "mode": 0o644, "mtime": 1, "size": 3, "chunks": [["00" * 32, 3]]}),
    ("no-chunks", {"type": FILE, "mode": 0o644, "mtime": 1, "size": 3}),
    ("odd-type", {"type": "door", "mode": 0o644, "mtime": 1}),
    ("dev-no-rdev", {"type": "char", "mode": 0o644, "mtime": 1}),
    ("dev-str-rdev", {"type": "block", "mode": 0o644, "mtime": 1, "rdev": "8,1"}),
    ("dev-huge-rdev", {"type": "char", "mode": 0o644, "mtime": 1, "rdev": 2 ** 64}),
    ("bad-link-id", {"type": FILE, "mode": 0o644, "mtime": 1, "size": 0, "chunks": [], "link": "../x"}),
    ("int-link-id", {"type": "fifo", "mode": 0o644, "mtime": 1, "link": 7}),
    ("link-int", {"type": SYMLINK, "mode": 0o777, "mtime": 1, "target": 5}),
    ("dir-bad-tree", {"type": DIR, "mode": 0o755, "mtime": 1, "tree": "not-hex", "size": 0, "files": 0, "dirs": 0}),
    ("dir-missing-tree", {"type": DIR, "mode": 0o755, "mtime": 1, "tree": "ab" * 32, "size": 0, "files": 0}),
    ("huge-uid", {"type": FILE, "mode": 0o644, "mtime": 1, "size": 0, "chunks": [], "uid": 2 ** 40, "gid": -1}),
    ("xattr-bad", {"type": FILE, "mode": 0o644, "mtime": 1, "size": 0, "chunks": [], "xattrs": {"user.a": "zz"}}),
]


@pytest.mark.allow_warnings   # the daemon may log what it refused
def test_hostile_entries_get_errors_and_the_rest_stays_readable(daemon_factory, workdir):
    d = daemon_factory(mount=True, start=False)
    st = open_local_store(workdir / "d")
    try:
        refs = Refs(st)
        info = refs.create_repo("r")
        session = st.session()
        chunks, size = session.put_bytes(b"fine")
        good = {"name": "good", "type": FILE, "mode": 0o644, "mtime": 1, "size": size, "chunks": chunks}
        entries = [good] + [dict(e, name=n) for n, e in HOSTILE]
        tree = session.put_tree(entries)
        session.flush()
        cid = st.write_commit(Commit(repo="r", repo_id=info.id, tree=tree, size=4, files=len(entries)))
        _, version = refs.read_branch("r", "main")
        refs.move_branch("r", "main", cid, version)
    finally:
        st.close()
    d.start()
    top = d.mount / "r"
    try:
        names = set(os.listdir(top))
    except OSError as exc:
        raise AssertionError(f"{exc}: {d.log()[-3000:]}") from None
    assert "good" in names
    for name, _ in HOSTILE:
        p = top / name
        try:
            os.lstat(p)
            if not os.path.islink(p) and not os.path.isdir(p):
                with open(p, "rb") as f:
                    f.read()
            elif os.path.isdir(p):
                os.listdir(p)
        except OSError as exc:
            assert exc.errno in (errno.EIO, errno.ENOENT, errno.EOVERFLOW, errno.EINVAL), (name, exc)
        assert (top / "good").read_bytes() == b"fine", name
    # the socket: ls of the whole directory, cat and get of each, show/log
    assert d.cli("ls", "r:/", check=False).returncode in (0, 1)
    for name, _ in HOSTILE:
        res = d.cli("cat", f"r:/{name}", check=False)
        assert "internal" not in res.err, (name, res.err)
        res = d.cli("ls", f"r:/{name}", check=False)
        assert "internal" not in res.err, (name, res.err)
    res = d.cli("get", "r:/", str(workdir / "out"), check=False)
    assert res.returncode == 1 and "ab" * 32 in res.err, res.err   # the missing subtree, named
    d.cli("get", "r:/good", str(workdir / "good"))
    assert (workdir / "good").read_bytes() == b"fine"
    fsck = d.cli("fsck", "--json", check=False)
    assert "internal" not in fsck.err
    assert fsck.json()["problems"], "fsck reports the hostile entries"
    # alive, and a write to the branch still commits
    assert d.cli("cat", "r:/good").stdout == b"fine"
    (top / "new").write_bytes(b"new")
    d.cli("commit", "r", "-m", "after")
    assert d.cli("cat", "r:/new").stdout == b"new"
    assert "Traceback" not in d.log()


@pytest.mark.allow_warnings   # each entry left out is logged
def test_decoding_leaves_out_each_malformed_entry_and_fsck_names_it(workdir):
    """In process: the store's reader and fsck, on a tree with every kind of
    bad entry, written by one Store and read by another (as by another daemon)."""
    from trunkfs.store.fsck import fsck
    good = {"name": "good", "type": FILE, "mode": 0o644, "mtime": 1, "size": 0, "chunks": []}
    weird_but_valid = {"name": "\udce9" * 255, "type": SYMLINK, "target": "\udcff", "mtime": -(2 ** 63)}
    writer = open_local_store(workdir)
    try:
        refs = Refs(writer)
        info = refs.create_repo("r")
        session = writer.session()
        tree = session.put_tree([good, weird_but_valid] + [dict(e, name=n) for n, e in HOSTILE])
        session.flush()
        cid = writer.write_commit(Commit(repo="r", repo_id=info.id, tree=tree))
        refs.move_branch("r", "main", cid, refs.read_branch("r", "main")[1])
    finally:
        writer.close()
    reader = open_local_store(workdir)
    try:
        names = {e["name"] for e in reader.read_tree(tree)}
        # well-formed entries stay (a missing chunk or tree is an error when read, not here)
        assert names == {"good", weird_but_valid["name"], "missing-chunk", "dir-missing-tree",
                         "huge-mtime", "neg-mtime"}    # times clamped into 64 bits
        times = {e["name"]: e["mtime"] for e in reader.read_tree(tree)}
        assert (times["huge-mtime"], times["neg-mtime"]) == (2 ** 63 - 1, -(2 ** 63))
        report = fsck(reader)
    finally:
        reader.close()
    for n, _ in HOSTILE:
        if n not in names:
            assert any(f"entry '{n}' left out" in p for p in report.problems), (n, report.problems)
    assert any("dir-missing-tree" in p for p in report.problems)
    assert any("00" * 32 in p for p in report.problems)


@pytest.mark.allow_warnings
def test_a_hostile_commit_object_is_an_integrity_error_not_a_crash(daemon_factory, workdir):
    d = daemon_factory(mount=True, start=False)
    st = open_local_store(workdir / "d")
    try:
        refs = Refs(st)
        info = refs.create_repo("r")
        session = st.session()
        tree = session.put_tree([])
        session.flush()
        bad = Commit(repo="r", repo_id=info.id, tree=tree, message=["not", "text"],  # type: ignore[arg-type]
                     time="yesterday", size=2 ** 80)  # type: ignore[arg-type]
        cid = st.write_commit(bad)
        refs.move_branch("r", "main", cid, refs.read_branch("r", "main")[1])
    finally:
        st.close()
    d.start()
    res = d.cli("log", "r", check=False)
    assert res.returncode == 1 and "not a valid commit object" in res.err, res.err
    with pytest.raises(OSError) as exc:
        os.listdir(d.mount / f"r@{cid}")
    assert exc.value.errno in (errno.EIO, errno.ENOENT)
    assert d.cli("repo", "list", "--json").json()[0]["name"] == "r"
    assert "Traceback" not in d.log()
