"""``trunkfs get`` and ``trunkfs put`` run by root on directories another
user can write: symlinks, hard links, FIFOs and renames that user planted
never make root write, chmod or read anything outside what it was asked to
(issue 10).  The attacker's files are owned by uid 65534; the daemon is a
real process, the CLI a real subprocess or the client in process."""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from tests.harness import fake_get_daemon

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="needs root (files of another uid)")

NOBODY = 65534


def _planted(path: Path) -> Path:
    """``path`` as the other user's: owned by uid 65534 (not following a symlink)."""
    os.lchown(path, NOBODY, NOBODY)
    return path


def _source(root: Path) -> Path:
    """``root/data``: ``a.csv`` (0644), ``sub/b.bin``, ``link`` -> a.csv."""
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "a.csv").write_bytes(b"x,y\n1,2\n")
    os.chmod(root / "data" / "a.csv", 0o644)
    (root / "data" / "sub" / "b.bin").write_bytes(b"bin" * 1000)
    os.symlink("a.csv", root / "data" / "link")
    return root / "data"


def _victim(workdir: Path) -> Path:
    """A root-only file outside every destination."""
    victim = workdir / "victim"
    victim.write_bytes(b"precious\n")
    os.chmod(victim, 0o600)
    return victim


def _shared_destination(workdir: Path) -> Path:
    """``shared/out/data``: a destination the other user has written into
    (a world-writable directory they own), as an earlier get left it."""
    shared = workdir / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    data = shared / "out" / "data"
    data.mkdir(parents=True)
    os.chmod(data, 0o777)
    _planted(data)
    return data


@pytest.fixture
def repo(daemon, workdir):
    """Repo ``r`` holding ``/data`` of :func:`_source`."""
    src = _source(workdir / "src")
    daemon.cli("repo", "create", "r")
    daemon.cli("put", "r", str(src))
    return daemon


# -- get --------------------------------------------------------------------------

def test_get_refuses_a_symlinked_directory_inside_the_destination(repo, workdir):
    data = _shared_destination(workdir)
    outside = workdir / "outside"
    outside.mkdir()
    os.chmod(outside, 0o700)
    os.symlink(outside, data / "sub")
    _planted(data / "sub")

    res = repo.cli("get", "r:/data", str(data.parent), check=False)

    assert res.returncode != 0
    assert str(data / "sub") in res.err and "symlink" in res.err
    assert list(outside.iterdir()) == []
    assert stat.S_IMODE(os.stat(outside).st_mode) == 0o700      # never chmod-ed through the link
    assert os.readlink(data / "sub") == str(outside)


def test_get_refuses_a_planted_symlink_at_the_top_of_the_tree(repo, workdir):
    out = workdir / "shared" / "out"
    out.mkdir(parents=True)
    outside = workdir / "outside"
    outside.mkdir()
    os.symlink(outside, out / "data")
    _planted(out / "data")

    res = repo.cli("get", "r:/data", str(out), check=False)   # lands at out/data

    assert res.returncode != 0 and str(out / "data") in res.err
    assert list(outside.iterdir()) == []


def test_get_replaces_a_planted_hard_link_instead_of_writing_into_it(repo, workdir):
    data = _shared_destination(workdir)
    victim = _victim(workdir)
    os.link(victim, data / "a.csv")
    before = os.stat(victim)

    repo.cli("get", "r:/data", str(data.parent))

    assert victim.read_bytes() == b"precious\n"
    after = os.stat(victim)
    assert (stat.S_IMODE(after.st_mode), after.st_mtime_ns, after.st_nlink) == (0o600, before.st_mtime_ns, 1)
    got = os.lstat(data / "a.csv")
    assert stat.S_ISREG(got.st_mode) and got.st_ino != before.st_ino
    assert (data / "a.csv").read_bytes() == b"x,y\n1,2\n" and stat.S_IMODE(got.st_mode) == 0o644


def test_get_replaces_planted_symlinks_at_files_and_links(repo, workdir):
    data = _shared_destination(workdir)
    victim = _victim(workdir)
    outside = workdir / "outside"
    outside.mkdir()
    os.symlink(victim, data / "a.csv")
    os.symlink(outside, data / "link")
    for p in (data / "a.csv", data / "link"):
        _planted(p)

    repo.cli("get", "r:/data", str(data.parent))

    assert victim.read_bytes() == b"precious\n" and stat.S_IMODE(os.stat(victim).st_mode) == 0o600
    assert list(outside.iterdir()) == []
    assert not (data / "a.csv").is_symlink() and (data / "a.csv").read_bytes() == b"x,y\n1,2\n"
    assert os.readlink(data / "link") == "a.csv"
    assert (data / "sub" / "b.bin").read_bytes() == b"bin" * 1000
    assert [p.name for p in data.iterdir() if p.name.startswith(".")] == []   # no temporary left


def test_get_follows_the_destination_the_user_named(repo, workdir):
    """The path on the command line is the caller's choice: a symlink there
    is followed once, and everything below is written through its directory."""
    real = workdir / "real"
    real.mkdir()
    os.symlink(real, workdir / "chosen")

    repo.cli("get", "r:/data", str(workdir / "chosen"))

    assert (real / "data" / "a.csv").read_bytes() == b"x,y\n1,2\n"
    assert os.readlink(real / "data" / "link") == "a.csv"
    repo.cli("get", "r:/data/a.csv", str(workdir / "chosen" / "copy.csv"))
    assert (real / "copy.csv").read_bytes() == b"x,y\n1,2\n"


# -- put --------------------------------------------------------------------------

def _attackers_tree(workdir: Path) -> tuple[Path, Path]:
    """``src/D/A`` and ``src/D/B`` (owned by the other user), and a root-only
    ``secret/B`` beside them."""
    d = workdir / "src" / "D"
    d.mkdir(parents=True)
    (d / "A").write_bytes(b"a" * 10_000)
    (d / "B").write_bytes(b"mine\n")
    for p in (d.parent, d, d / "A", d / "B"):
        _planted(p)
    secret = workdir / "secret"
    secret.mkdir()
    (secret / "B").write_bytes(b"SECRET\n")
    os.chmod(secret / "B", 0o600)
    os.chmod(secret, 0o700)
    return d, secret


def _all_bytes(c, repo: str) -> bytes:
    """Every file's bytes in the head of ``repo``."""
    out = b""
    stack = ["/"]
    while stack:
        path = stack.pop()
        for e in c.ls(repo, path).entries:
            p = path.rstrip("/") + "/" + e.name
            if e.type == "dir":
                stack.append(p)
            elif e.type == "file":
                out += c.cat(repo, p)
    return out


def _put_swapping_after_first_file(c, paths: list[str], swap) -> object:
    """``put`` with a progress callback that runs ``swap`` once, after the
    first file's bytes went out: the other user acting in the middle of the
    walk, deterministically."""
    done: list[bool] = []

    def progress(sent: int, total: int) -> None:
        if not done:
            done.append(True)
            swap()
    result = c.put("p", paths, progress=progress)
    assert done, "the swap never ran"
    return result


def test_put_does_not_look_a_directory_up_again_after_listing_it(daemon, workdir):
    d, secret = _attackers_tree(workdir)

    def swap() -> None:   # D becomes a symlink to the secret directory
        os.rename(d, d.with_name("D.old"))
        os.symlink(secret, d)
    with daemon.client() as c:
        c.repo_create("p")
        _put_swapping_after_first_file(c, [str(d)], swap)
        assert b"SECRET" not in _all_bytes(c, "p")
        assert c.cat("p", "/D/B") == b"mine\n"


def test_put_skips_a_file_swapped_for_a_symlink_after_listing(daemon, workdir):
    d, secret = _attackers_tree(workdir)

    def swap() -> None:
        os.unlink(d / "B")
        os.symlink(secret / "B", d / "B")
    with daemon.client() as c:
        c.repo_create("p")
        result = _put_swapping_after_first_file(c, [str(d)], swap)
        assert result.skipped == [str(d / "B")]
        assert "changed" in result.skipped_reasons[str(d / "B")]
        assert b"SECRET" not in _all_bytes(c, "p")
        assert [e.name for e in c.ls("p", "/D").entries] == ["A"]


def test_put_skips_a_file_swapped_for_another_file_after_listing(daemon, workdir):
    d, secret = _attackers_tree(workdir)
    os.chmod(secret, 0o755)

    def swap() -> None:   # a hard link is another file than the one listed
        os.unlink(d / "B")
        os.link(secret / "B", d / "B")
    with daemon.client() as c:
        c.repo_create("p")
        result = _put_swapping_after_first_file(c, [str(d)], swap)
        assert result.skipped == [str(d / "B")] and "changed" in result.skipped_reasons[str(d / "B")]
        assert b"SECRET" not in _all_bytes(c, "p")


def test_put_never_blocks_on_a_fifo_swapped_in_after_listing(daemon, workdir):
    d, _ = _attackers_tree(workdir)

    def swap() -> None:
        os.unlink(d / "B")
        os.mkfifo(d / "B")
    box: dict[str, object] = {}

    def run() -> None:
        with daemon.client() as c:
            c.repo_create("p")
            try:
                box["result"] = _put_swapping_after_first_file(c, [str(d)], swap)
            except BaseException as exc:  # noqa: BLE001 - reported below
                box["error"] = exc
    t = threading.Thread(target=run)
    t.start()
    t.join(120)
    if t.is_alive():  # blocked in open(): let it go, then fail
        fd = os.open(d / "B", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(60)
        pytest.fail("put blocked opening a FIFO")
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert result.skipped == [str(d / "B")]  # type: ignore[attr-defined]


def test_put_sends_fifos_sockets_and_devices_from_their_listing(daemon, workdir):
    """They are metadata (issue 14): sent by type, mode and device number,
    never opened (a FIFO nobody writes would block an open)."""
    src = workdir / "src"
    src.mkdir()
    (src / "file").write_bytes(b"f")
    os.mkfifo(src / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))
    os.mknod(src / "dev", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    try:
        daemon.cli("repo", "create", "p")
        res = daemon.cli("put", "p", str(src), timeout=120)
    finally:
        sock.close()
    assert "skipping" not in res.err
    with daemon.client() as c:
        listed = {e.name: (e.type, e.rdev) for e in c.ls("p", "/src").entries}
    assert listed == {"dev": ("char", os.makedev(1, 3)), "fifo": ("fifo", None), "file": ("file", None),
                      "sock": ("socket", None)}


def test_get_refuses_paths_outside_the_directories_the_daemon_sent(workdir):
    """A daemon (or a man in the middle) sending a path whose directory it
    did not send, an empty or ``.`` component, gets ``bad_reply``; nothing
    lands beside the target."""
    from trunkfs.client import Client, ClientError

    streams = [
        [{"entry": {"path": "", "type": "dir"}}, {"entry": {"path": "a/f", "type": "file"}}],
        [{"entry": {"path": "", "type": "dir"}}, {"entry": {"path": "a", "type": "dir"}},
         {"entry": {"path": "a//f", "type": "file"}}],
        [{"entry": {"path": "", "type": "dir"}}, {"entry": {"path": "./f", "type": "file"}}],
        [{"entry": {"path": "f", "type": "file"}}],
    ]
    for i, stream in enumerate(streams):
        path = str(workdir / f"fake{i}.sock")
        with fake_get_daemon(path, stream):
            with Client(path, timeout=30) as c:
                with pytest.raises(ClientError) as refused:
                    c.get("r", "/", str(workdir / f"target{i}"))
                assert refused.value.code == "bad_reply", refused.value
        assert sorted(p.name for p in workdir.iterdir() if not p.name.startswith("fake")) == \
            [f"target{j}" for j in range(i + 1) if streams[j][0]["entry"]["path"] == ""]
        assert not (workdir / f"target{i}" / "f").exists()


LEVEL = "level-of-a-deep-tree"    # 21 bytes: 250 levels make a path over PATH_MAX


def _chain(root: Path, depth: int, data: bytes | None = None) -> bytes | None:
    """Make (with ``data``) or read ``root/LEVEL/.../LEVEL/leaf``, ``depth``
    levels deep, by descriptors: the path is longer than PATH_MAX."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            if data is not None:
                os.mkdir(LEVEL, dir_fd=fd)
            nxt = os.open(LEVEL, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        if data is not None:
            leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd)
            os.write(leaf, data)
        else:
            leaf = os.open("leaf", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
            data = os.read(leaf, 100)
        os.close(leaf)
        return data
    finally:
        os.close(fd)


def _remove_chain(root: Path) -> None:
    """Remove what :func:`_chain` made below ``root`` (rmtree cannot: the
    paths are too long for it), deepest first."""
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        while LEVEL in os.listdir(fds[-1]):
            fds.append(os.open(LEVEL, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fds[-1]))
        while fds:
            fd = fds.pop()
            for name in os.listdir(fd):
                os.unlink(name, dir_fd=fd)
            os.close(fd)
            if fds:
                os.rmdir(LEVEL, dir_fd=fds[-1])
    finally:
        for fd in fds:
            os.close(fd)


def test_put_and_get_a_tree_deeper_than_path_max(daemon, workdir):
    """Walking by descriptors, put and get need no path longer than a name."""
    depth = 250
    assert depth * (len(LEVEL) + 1) > 4096
    src, out = workdir / "deep", workdir / "out"
    src.mkdir()
    out.mkdir()
    try:
        _chain(src, depth, b"bottom\n")
        daemon.cli("repo", "create", "deep")
        daemon.cli("put", "deep", str(src), timeout=600)
        daemon.cli("get", "deep:/deep", str(out), timeout=600)
        assert _chain(out / "deep", depth) == b"bottom\n"
    finally:
        _remove_chain(src)
        if (out / "deep").exists():
            _remove_chain(out / "deep")
