"""Writable branch views, used by real tools: cp -a, rsync -a/-aX, a tar round
trip, git clone/fsck/status, sqlite (rollback journal and WAL) and fio with
verification. Each test checks the branch view, then commits it and checks the
committed view (and/or the branch view after a daemon restart).

The tools are required: a missing one fails the test (setup.sh installs them)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

MiB = 1024 * 1024
MTIME0 = 1_600_000_000_123_456_789  # ns, with a sub-second part on purpose


# -- helpers ------------------------------------------------------------------------

def run(*cmd, cwd: Path | None = None, env: dict | None = None, timeout: float = 120) -> str:
    """Run a real tool; fail with its output unless it exits 0. A missing tool fails too."""
    assert shutil.which(str(cmd[0])), f"{cmd[0]} is not installed (setup.sh test installs it)"
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
        f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc.stdout


def write(path: Path, data: bytes, mode: int = 0o644, mtime_ns: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def make_tree(root: Path, seed: int = 1, big: int = 5 * MiB) -> Path:
    """Files of several sizes (an empty one, a big one), nested directories,
    symlinks, modes 0600/0755/0700, set mtimes."""
    rng = random.Random(seed)
    files = {
        "empty": (b"", 0o644),
        "small.txt": (b"hello, trunkfs\n", 0o644),
        "secret.key": (rng.randbytes(300), 0o600),
        "bin/run.sh": (b"#!/bin/sh\necho run\n", 0o755),
        "a/mid.bin": (rng.randbytes(MiB + 17), 0o644),
        "a/b/c/deep.bin": (rng.randbytes(100_003), 0o644),
        "a/b/text.csv": (b"x,y\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(2000)), 0o640),
        "big.bin": (rng.randbytes(big), 0o644),
        "private/notes.txt": (b"private\n" * 100, 0o600),
    }
    for i, (rel, (data, mode)) in enumerate(sorted(files.items())):
        write(root / rel, data, mode, MTIME0 + i * 1_000_000_007)
    (root / "emptydir").mkdir()
    os.symlink("b/c/deep.bin", root / "a" / "link-to-deep")
    os.symlink("a/b", root / "dirlink")
    os.symlink("does/not/exist", root / "dangling")
    os.chmod(root / "private", 0o700)
    return root


def snapshot(root: Path, mtimes: bool = True) -> dict[str, tuple]:
    """path -> what must survive a copy: type, mode, content digest, symlink target, file mtime."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", oct(stat.S_IMODE(st.st_mode)))
            else:
                assert stat.S_ISREG(st.st_mode), f"{p}: unexpected type {st.st_mode:o}"
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                out[rel] = ("file", oct(stat.S_IMODE(st.st_mode)), st.st_size, digest,
                            st.st_mtime_ns if mtimes else None)
    return out


def commit(d, msg: str, ref: str = "r") -> str:
    cid = d.cli("commit", ref, "-m", msg).out.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid), cid
    assert d.cli("status", ref).out.strip() == "", "status is not empty after a commit"
    return cid


def restart(d) -> None:
    d.stop()
    assert not d.left_mounted, "the mount was left behind by a clean stop"
    d.start()


@pytest.fixture
def repo(mounted) -> Path:
    """Repo ``r`` on a live mount; returns the writable view of branch main."""
    mounted.cli("repo", "create", "r")
    view = mounted.mount / "r"
    assert view.is_dir()
    return view


# -- 1. cp -a -------------------------------------------------------------------------

def test_cp_a_in_and_out(mounted, repo, workdir):
    src = make_tree(workdir / "src")
    want = snapshot(src)

    run("cp", "-a", src, repo / "tree")
    assert snapshot(repo / "tree") == want

    run("cp", "-a", repo / "tree", workdir / "out")
    assert snapshot(workdir / "out") == want
    run("diff", "-r", "--no-dereference", src, workdir / "out")

    cid = commit(mounted, "cp -a")
    assert snapshot(mounted.mount / f"r@{cid}" / "tree") == want
    assert snapshot(repo / "tree") == want

    restart(mounted)
    assert snapshot(repo / "tree") == want
    assert snapshot(mounted.mount / f"r@{cid}" / "tree") == want


# -- 2. rsync -------------------------------------------------------------------------

def test_rsync_a_in_out_and_incremental(mounted, repo, workdir):
    src = make_tree(workdir / "src")
    want = snapshot(src)

    run("rsync", "-a", f"{src}/", f"{repo / 'rs'}/")
    assert snapshot(repo / "rs") == want
    run("rsync", "-a", f"{repo / 'rs'}/", f"{workdir / 'out'}/")
    assert snapshot(workdir / "out") == want

    # A second run after one source file changed (same size, new content and mtime):
    # rsync sends only that file, and only that file differs in the mount afterwards.
    before = snapshot(repo / "rs")
    changed = src / "a" / "mid.bin"
    data = bytearray(changed.read_bytes())
    data[1000:1010] = b"0123456789"
    write(changed, bytes(data), 0o644, MTIME0 + 42 * 1_000_000_000)
    out = run("rsync", "-a", "--itemize-changes", f"{src}/", f"{repo / 'rs'}/")
    sent = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith(">f")]
    assert sent == ["a/mid.bin"], out
    after = snapshot(repo / "rs")
    assert after == snapshot(src)
    assert {k for k in after if after[k] != before.get(k)} == {"a/mid.bin"}
    assert set(after) == set(before)

    # Nothing left to do on a third run.
    out = run("rsync", "-a", "--itemize-changes", f"{src}/", f"{repo / 'rs'}/")
    assert [line for line in out.splitlines() if line.startswith(">f")] == [], out

    cid = commit(mounted, "rsync")
    assert snapshot(mounted.mount / f"r@{cid}" / "rs") == after
    run("rsync", "-a", "--delete", f"{mounted.mount / f'r@{cid}' / 'rs'}/", f"{workdir / 'out'}/")
    assert snapshot(workdir / "out") == after


def test_rsync_ax_user_xattr(mounted, repo, workdir):
    src = workdir / "xsrc"
    write(src / "x.dat", b"with an xattr\n" * 100, 0o644, MTIME0)
    write(src / "sub" / "plain.txt", b"no xattr\n", 0o600, MTIME0 + 1)
    os.setxattr(src / "x.dat", "user.test", b"some value")
    os.setxattr(src / "sub", "user.dirattr", b"on a directory")

    run("rsync", "-aX", f"{src}/", f"{repo / 'xa'}/")
    dst = repo / "xa"
    assert os.getxattr(dst / "x.dat", "user.test") == b"some value"
    assert "user.test" in os.listxattr(dst / "x.dat")
    assert os.getxattr(dst / "sub", "user.dirattr") == b"on a directory"
    assert snapshot(dst) == snapshot(src)

    run("rsync", "-aX", f"{dst}/", f"{workdir / 'xout'}/")
    assert os.getxattr(workdir / "xout" / "x.dat", "user.test") == b"some value"
    assert os.getxattr(workdir / "xout" / "sub", "user.dirattr") == b"on a directory"
    assert snapshot(workdir / "xout") == snapshot(src)

    # A second -aX run with nothing changed sends nothing.
    out = run("rsync", "-aX", "--itemize-changes", f"{src}/", f"{dst}/")
    assert [line for line in out.splitlines() if line.startswith(">f")] == [], out

    # Staged xattrs survive a restart like the rest of the staged data.
    restart(mounted)
    assert os.getxattr(dst / "x.dat", "user.test") == b"some value"
    assert snapshot(dst) == snapshot(src)
    cid = commit(mounted, "rsync -aX")
    assert snapshot(mounted.mount / f"r@{cid}" / "xa") == snapshot(src)


# -- 3. tar round trip -------------------------------------------------------------------

def test_tar_round_trip(mounted, repo, workdir):
    src = make_tree(workdir / "src", seed=3, big=2 * MiB)
    tar_in = workdir / "in.tar"
    run("tar", "--format=posix", "-cf", tar_in, "-C", src, ".")

    ref = workdir / "x-ref"   # the same tarball extracted on the local disk
    ref.mkdir()
    run("tar", "-xf", tar_in, "-C", ref)

    (repo / "t").mkdir()
    run("tar", "-xf", tar_in, "-C", repo / "t")
    assert snapshot(repo / "t") == snapshot(ref) == snapshot(src)

    tar_out = workdir / "out.tar"
    run("tar", "--format=posix", "-cf", tar_out, "-C", repo / "t", ".")
    names_in = sorted(run("tar", "-tf", tar_in).splitlines())
    names_out = sorted(run("tar", "-tf", tar_out).splitlines())
    assert names_in == names_out

    back = workdir / "x-back"
    back.mkdir()
    run("tar", "-xf", tar_out, "-C", back)
    run("diff", "-r", "--no-dereference", ref, back)
    assert snapshot(back) == snapshot(ref)

    cid = commit(mounted, "tar x")
    tar_c = workdir / "committed.tar"
    run("tar", "--format=posix", "-cf", tar_c, "-C", mounted.mount / f"r@{cid}" / "t", ".")
    back2 = workdir / "x-committed"
    back2.mkdir()
    run("tar", "-xf", tar_c, "-C", back2)
    run("diff", "-r", "--no-dereference", ref, back2)
    assert snapshot(back2) == snapshot(ref)


# -- 4. git -------------------------------------------------------------------------------

def git_env(workdir: Path) -> dict:
    cfg = workdir / "gitconfig"
    cfg.write_text("[user]\n\tname = Test\n\temail = test@example.com\n"
                   "[safe]\n\tdirectory = *\n[init]\n\tdefaultBranch = main\n"
                   "[gc]\n\tauto = 0\n[maintenance]\n\tauto = false\n")
    return dict(os.environ, GIT_CONFIG_GLOBAL=str(cfg), GIT_CONFIG_NOSYSTEM="1",
                HOME=str(workdir), GIT_TERMINAL_PROMPT="0")


def test_git_clone_fsck_status(mounted, repo, workdir):
    env = git_env(workdir)
    origin = workdir / "origin"
    origin.mkdir()
    run("git", "init", "-q", origin, env=env)
    rng = random.Random(4)
    write(origin / "README", b"first\n")
    write(origin / "src" / "main.c", b"int main(void) { return 0; }\n")
    write(origin / "tools" / "build.sh", b"#!/bin/sh\nmake\n", 0o755)
    os.symlink("src/main.c", origin / "main-link")
    run("git", "add", "-A", cwd=origin, env=env)
    run("git", "commit", "-q", "-m", "one", cwd=origin, env=env)
    write(origin / "data" / "blob.bin", rng.randbytes(300_000))
    write(origin / "README", b"first\nsecond\n")
    run("git", "add", "-A", cwd=origin, env=env)
    run("git", "commit", "-q", "-m", "two", cwd=origin, env=env)
    (origin / "src" / "main.c").unlink()
    write(origin / "src" / "lib.c", b"int f(void) { return 1; }\n")
    run("git", "add", "-A", cwd=origin, env=env)
    run("git", "commit", "-q", "-m", "three", cwd=origin, env=env)
    head = run("git", "rev-parse", "HEAD", cwd=origin, env=env).strip()

    clone = repo / "clone"
    # A local path clone tries link() first; the mount refuses hard links, git copies.
    run("git", "clone", "-q", origin, clone, env=env)
    run("git", "fsck", "--full", "--strict", cwd=clone, env=env)
    assert run("git", "status", "--porcelain", cwd=clone, env=env) == ""
    assert run("git", "rev-parse", "HEAD", cwd=clone, env=env).strip() == head
    assert run("git", "rev-list", "--count", "HEAD", cwd=clone, env=env).strip() == "3"
    assert os.access(clone / "tools" / "build.sh", os.X_OK)
    assert os.readlink(clone / "main-link") == "src/main.c"

    # Work inside the mounted clone: a commit of its own, then gc packs loose objects.
    write(clone / "new.txt", b"made in the mount\n")
    write(clone / "README", b"changed in the mount\n")
    run("git", "add", "-A", cwd=clone, env=env)
    run("git", "commit", "-q", "-m", "four", cwd=clone, env=env)
    run("git", "gc", "-q", cwd=clone, env=env)
    run("git", "fsck", "--full", "--strict", cwd=clone, env=env)
    assert run("git", "status", "--porcelain", cwd=clone, env=env) == ""
    head4 = run("git", "rev-parse", "HEAD", cwd=clone, env=env).strip()

    cid = commit(mounted, "git clone")
    assert run("git", "status", "--porcelain", cwd=clone, env=env) == ""
    run("git", "fsck", "--full", cwd=clone, env=env)

    committed = mounted.mount / f"r@{cid}" / "clone"
    run("git", "fsck", "--full", "--strict", cwd=committed, env=env)
    assert run("git", "status", "--porcelain", cwd=committed, env=env) == ""
    assert run("git", "rev-parse", "HEAD", cwd=committed, env=env).strip() == head4

    restart(mounted)
    assert run("git", "status", "--porcelain", cwd=clone, env=env) == ""
    assert run("git", "log", "--format=%s", cwd=clone, env=env).split() == [
        "four", "three", "two", "one"]


# -- 5. sqlite ------------------------------------------------------------------------------

ROWS = 10_000


def fill_db(path: Path, journal_mode: str) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    try:
        got = con.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()[0]
        assert got == journal_mode.lower()
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, payload BLOB)")
        con.execute("CREATE INDEX t_name ON t(name)")
        con.execute("BEGIN")
        con.executemany("INSERT INTO t VALUES (?, ?, ?)",
                        ((i, f"row {i:05d}", random.Random(i).randbytes(i % 200)) for i in range(ROWS)))
        con.execute("COMMIT")
        if journal_mode == "WAL":
            # The WAL and the shared-memory index (mmapped MAP_SHARED) live beside the db.
            assert Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
            other = sqlite3.connect(path)   # a second connection reads through the -shm index
            try:
                assert other.execute("SELECT count(*) FROM t").fetchone()[0] == ROWS
                other.execute("BEGIN")  # a reader holding a snapshot while the writer goes on
                assert other.execute("SELECT max(id) FROM t").fetchone()[0] == ROWS - 1
                con.execute("UPDATE t SET name = name || '!' WHERE id % 100 = 0")
                assert other.execute("SELECT count(*) FROM t WHERE name LIKE '%!'").fetchone()[0] == 0
                other.execute("COMMIT")
                assert other.execute("SELECT count(*) FROM t WHERE name LIKE '%!'").fetchone()[0] == ROWS // 100
            finally:
                other.close()
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            con.execute("UPDATE t SET name = name || '!' WHERE id % 100 = 0")
            assert not Path(f"{path}-journal").exists()
        check_db(con, journal_mode)
    finally:
        con.close()


def check_db(con: sqlite3.Connection, journal_mode: str | None) -> None:
    assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == ROWS
    assert con.execute("SELECT count(*) FROM t WHERE name LIKE '%!'").fetchone()[0] == ROWS // 100
    assert con.execute("SELECT sum(length(payload)) FROM t").fetchone()[0] == sum(i % 200 for i in range(ROWS))
    row = con.execute("SELECT name, payload FROM t WHERE id = 4321").fetchone()
    assert row == ("row 04321", random.Random(4321).randbytes(4321 % 200))
    if journal_mode is not None:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == journal_mode.lower()


def header_mode(path: Path) -> str:
    """The journal mode the database file records: bytes 18-19 are 2 for WAL, 1 otherwise."""
    with open(path, "rb") as f:
        header = f.read(100)
    assert header.startswith(b"SQLite format 3\0")
    return {(1, 1): "DELETE", (2, 2): "WAL"}[header[18], header[19]]


@pytest.mark.parametrize("journal_mode", ["DELETE", "WAL"])
def test_sqlite(mounted, repo, journal_mode):
    db = repo / "db" / f"{journal_mode.lower()}.sqlite"
    db.parent.mkdir()
    fill_db(db, journal_mode)

    cid = commit(mounted, f"sqlite {journal_mode}")
    con = sqlite3.connect(db, isolation_level=None)   # reopened on the branch view: writable
    try:
        check_db(con, journal_mode)
        con.execute("INSERT INTO t VALUES (?, ?, ?)", (ROWS, "after commit", b""))
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == ROWS + 1
        con.execute("DELETE FROM t WHERE id = ?", (ROWS,))
    finally:
        con.close()

    # The committed view is read-only: open the file as immutable (which reports
    # journal_mode "delete" whatever the file says, so read the header instead).
    committed = mounted.mount / f"r@{cid}" / "db" / db.name
    assert header_mode(committed) == journal_mode
    con = sqlite3.connect(f"file:{committed}?immutable=1", uri=True)
    try:
        check_db(con, None)
    finally:
        con.close()

    restart(mounted)
    con = sqlite3.connect(db, isolation_level=None)
    try:
        check_db(con, journal_mode)
    finally:
        con.close()


# -- 6. fio --verify ---------------------------------------------------------------------------

def fio(path: Path, *args: str) -> dict:
    cmd = ["fio", "--name=v", f"--filename={path}", "--size=32M", "--ioengine=psync",
           "--verify=crc32c", "--randseed=1234", "--verify_state_save=0", "--output-format=json", *args]
    assert shutil.which("fio"), "fio is not installed (setup.sh test installs it)"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    # fio reports verify errors ("verify: bad magic header ...") on stderr, and
    # a failed job as "fio: pid=..., err=..." before the JSON.
    text = f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, text
    assert "verify" not in proc.stderr.lower(), text
    assert proc.stdout.lstrip().startswith("{"), text
    job = json.loads(proc.stdout)["jobs"][0]
    assert job["error"] == 0, text
    return job


@pytest.mark.parametrize("rw,bs", [("randwrite", "4k"), ("write", "1M")])
def test_fio_verify(mounted, repo, rw, bs):
    target = repo / f"fio-{rw}.dat"
    job = fio(target, f"--rw={rw}", f"--bs={bs}", "--do_verify=1")
    assert job["write"]["io_bytes"] == 32 * MiB
    assert job["read"]["io_bytes"] == 32 * MiB   # the verify pass read everything back
    assert target.stat().st_size == 32 * MiB

    # After a restart the page cache is gone: verify again from what the daemon kept.
    restart(mounted)
    job = fio(target, f"--rw={rw}", f"--bs={bs}", "--verify_only")
    assert job["read"]["io_bytes"] == 32 * MiB

    cid = commit(mounted, f"fio {rw}")
    committed = mounted.mount / f"r@{cid}" / target.name
    assert committed.stat().st_size == 32 * MiB
    with open(committed, "rb") as a, open(target, "rb") as b:
        while True:
            x, y = a.read(MiB), b.read(MiB)
            assert x == y
            if not x:
                break
