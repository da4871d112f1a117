"""``put`` and ``get`` of FIFOs, sockets, character devices and hard links
(issue 14), in process: the daemon's parts of tests/test_handlers.py
serving a real control socket (``ControlServer``), the real client
(``trunkfs.client``, in a worker thread) and the CLI (a subprocess) on it,
and the handlers called directly for the streams a hostile client sends.

Run as root (device nodes, files of another uid); a caller that is not
root is ``nobody`` (uid 65534), through ``setpriv``."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.harness import TRUNKFS, fake_get_daemon
from trunkfs.client import Client, ClientError, ProtocolError
from trunkfs.client.tree_writer import Destination, TreeWriter
from trunkfs.daemon.server import ControlServer
from trunkfs.daemon.service import Service
from trunkfs.store import walk
from trunkfs.store.errors import TrunkError
from trunkfs.store.links import link_census
from trunkfs.store.objects import TREE_VERSION_LINKS

from .test_auth import socketpair_as
from .test_handlers import Peer, file, service  # noqa: F401  (the fixture)

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="needs root (device nodes, another uid)")

NOBODY = 65534
NULL = os.makedev(1, 3)
MTIME = 1_600_000_000_123_456_789


# -- the daemon in process, on a real socket ----------------------------------------

class Served:
    """The service, its control socket, and the client and CLI on it."""

    def __init__(self, svc: Service, socket_path: str) -> None:
        self.svc, self.socket = svc, socket_path

    async def client(self, call: Callable[[Client], Any]) -> Any:
        """``call(client)`` in a worker thread (the client blocks; the daemon runs here)."""
        def run() -> Any:
            with Client(self.socket, timeout=60) as c:
                return call(c)
        return await trio.to_thread.run_sync(run)

    async def cli(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, TRUNKFS_SOCKET=self.socket)
        return await trio.to_thread.run_sync(lambda: subprocess.run(
            [*TRUNKFS, *args], capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=120))

    def root(self, repo: str, commit: str | None = None) -> dict:
        """The root entry of ``commit`` (default: the head of main)."""
        if commit is None:
            commit, _ = self.svc.refs.read_branch(repo, "main")
        assert commit is not None
        return self.svc.store.read_commit(commit).root_entry()

    def entry(self, repo: str, path: str, commit: str | None = None) -> dict:
        return walk.lookup(self.svc.store, self.root(repo, commit), path.strip("/").split("/"))

    def head(self, repo: str) -> str | None:
        return self.svc.refs.read_branch(repo, "main")[0]


@pytest.fixture
async def served(service: Service, workdir: Path, nursery: trio.Nursery) -> AsyncIterator[Served]:  # noqa: F811
    """The service serving ``workdir/sock/trunkfs.sock`` (0660, group
    ``nogroup``: nobody may connect too)."""
    os.chmod(workdir, 0o755)
    path = str(workdir / "sock" / "trunkfs.sock")
    os.makedirs(os.path.dirname(path), mode=0o755)
    await nursery.start(ControlServer(service, path, group="nogroup").serve)
    yield Served(service, path)


# -- local trees ----------------------------------------------------------------------

def make_special_tree(root: Path) -> Path:
    """``root/data``: a FIFO, a socket, a character device (1, 3), a file
    with three names in two directories (a/one, a/two, b/three), a pair
    (pair, b/pair2) and a plain file."""
    data = root / "data"
    (data / "a").mkdir(parents=True)
    (data / "b").mkdir()
    os.mkfifo(data / "pipe", 0o640)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(data / "sock"))
    os.chmod(data / "sock", 0o750)
    os.mknod(data / "null", stat.S_IFCHR, NULL)
    os.chmod(data / "null", 0o620)
    (data / "a" / "one").write_bytes(b"three names\n" * 1000)
    os.chmod(data / "a" / "one", 0o640)
    os.link(data / "a" / "one", data / "a" / "two")
    os.link(data / "a" / "one", data / "b" / "three")
    (data / "pair").write_bytes(b"two names")
    os.link(data / "pair", data / "b" / "pair2")
    (data / "plain").write_bytes(b"one name")
    for p in ("pipe", "sock", "null", "a/one", "pair", "plain"):
        os.utime(data / p, ns=(MTIME, MTIME), follow_symlinks=False)
    return data


def make_source(workdir: Path) -> Path:
    return make_special_tree(workdir / "src")


# -- put ------------------------------------------------------------------------------

async def test_put_commits_special_files_and_hard_link_groups(served: Served, workdir: Path) -> None:
    src = make_source(workdir)
    put = await served.client(lambda c: (c.repo_create("r"), c.put("r", [str(src)]))[1])
    assert put.skipped == [] and put.skipped_reasons == {}
    assert put.files == 6                       # every name of a file, each linked name too
    assert put.bytes == 12_000 + 9 + 8          # a linked file's bytes once

    e = {p: served.entry("r", f"/data/{p}") for p in
         ("pipe", "sock", "null", "a/one", "a/two", "b/three", "pair", "b/pair2", "plain")}
    assert (e["pipe"]["type"], e["pipe"]["mode"], e["pipe"]["mtime"]) == ("fifo", 0o640, MTIME)
    assert (e["sock"]["type"], e["sock"]["mode"]) == ("socket", 0o750)
    assert (e["null"]["type"], e["null"]["mode"], e["null"]["rdev"]) == ("char", 0o620, NULL)
    assert "rdev" not in e["pipe"] and "chunks" not in e["null"]
    assert not any("link" in e[p] for p in ("pipe", "sock", "null", "plain"))

    three = {e[p]["link"] for p in ("a/one", "a/two", "b/three")}
    two = {e[p]["link"] for p in ("pair", "b/pair2")}
    assert len(three) == 1 and len(two) == 1 and three != two
    assert all(len(x) == 16 and int(x, 16) >= 0 for x in three | two)
    for p in ("a/two", "b/three"):                   # each name a complete entry, one content
        assert {k: v for k, v in e[p].items() if k != "name"} == {k: v for k, v in e["a/one"].items()
                                                                  if k != "name"}
    assert e["a/one"]["mode"] == 0o640 and e["a/one"]["size"] == 12_000
    census = link_census(served.svc.store, served.root("r"))
    assert census == {three.pop(): 3, two.pop(): 2}
    assert served.entry("r", "/data")["links"] == 5 and served.entry("r", "/data/b")["links"] == 2
    raw = served.svc.store.read_blob(bytes.fromhex(served.entry("r", "/data")["tree"]))
    assert json.loads(raw)["v"] == TREE_VERSION_LINKS


async def test_ls_stat_and_the_cli_show_types_rdev_and_link_counts(served: Served, workdir: Path) -> None:
    src = make_source(workdir)
    await served.client(lambda c: (c.repo_create("r"), c.put("r", [str(src)])))
    listing = await served.client(lambda c: c.ls("r", "/data"))
    by_name = {x.name: x for x in listing.entries}
    assert (by_name["pipe"].type, by_name["sock"].type, by_name["null"].type) == ("fifo", "socket", "char")
    assert by_name["null"].rdev == NULL and by_name["pipe"].rdev is None
    assert by_name["pair"].nlink == 2 and by_name["plain"].nlink == 1 and by_name["pair"].link
    stat_a = await served.client(lambda c: c.call("stat", repo="r", path="/data/a/two"))
    assert stat_a["entry"]["nlink"] == 3

    res = await served.cli("ls", "r:/data")
    assert res.returncode == 0, res.stderr
    lines = {line.split()[-1]: line for line in res.stdout.decode().splitlines()}
    assert lines["pipe"].startswith("prw-r-----") and lines["sock"].startswith("srwxr-x---")
    assert lines["null"].startswith("crw--w----") and " 1, 3 " in lines["null"]


async def test_a_hard_link_group_is_put_once_even_when_a_first_name_changes(served: Served,
                                                                           workdir: Path) -> None:
    """Names whose local file is one inode are one group; a name put alone
    (its other names not in the put) is no hard link in the commit."""
    src = make_source(workdir)
    await served.client(lambda c: (c.repo_create("r"), c.put("r", [str(src / "a"), str(src / "pair")])))
    one, two, pair = (served.entry("r", p) for p in ("/a/one", "/a/two", "/pair"))
    assert one["link"] == two["link"] and "link" not in pair
    assert link_census(served.svc.store, served.root("r")) == {one["link"]: 2}


# -- get ------------------------------------------------------------------------------

async def test_get_makes_fifos_sockets_devices_and_hard_links(served: Served, workdir: Path) -> None:
    src = make_source(workdir)
    await served.client(lambda c: (c.repo_create("r"), c.put("r", [str(src)])))
    out = workdir / "out"
    out.mkdir()
    got = await served.client(lambda c: c.get("r", "/data", str(out)))
    data = out / "data"
    assert got.not_written == {} and got.files == 6

    pipe, sock, null = (os.lstat(data / n) for n in ("pipe", "sock", "null"))
    assert stat.S_ISFIFO(pipe.st_mode) and stat.S_IMODE(pipe.st_mode) == 0o640 and pipe.st_mtime_ns == MTIME
    assert stat.S_ISSOCK(sock.st_mode) and stat.S_IMODE(sock.st_mode) == 0o750
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == NULL and stat.S_IMODE(null.st_mode) == 0o620

    names = [os.lstat(data / p) for p in ("a/one", "a/two", "b/three")]
    assert {s.st_ino for s in names} == {names[0].st_ino} and names[0].st_nlink == 3
    assert stat.S_IMODE(names[0].st_mode) == 0o640 and names[0].st_mtime_ns == MTIME
    pair = [os.lstat(data / p) for p in ("pair", "b/pair2")]
    assert pair[0].st_ino == pair[1].st_ino and pair[0].st_nlink == 2 and pair[0].st_ino != names[0].st_ino
    assert os.lstat(data / "plain").st_nlink == 1
    for p in ("a/one", "a/two", "b/three", "pair", "b/pair2", "plain"):
        assert (data / p).read_bytes() == (src / p).read_bytes()
    assert not [n for n in os.listdir(data) + os.listdir(data / "b") if n.startswith(".trunkfs-get-")]


async def test_get_never_writes_through_symlinks_planted_at_the_names(served: Served, workdir: Path) -> None:
    src = make_source(workdir)
    await served.client(lambda c: (c.repo_create("r"), c.put("r", [str(src)])))
    victim = workdir / "victim"
    victim.write_bytes(b"precious\n")
    os.chmod(victim, 0o600)
    os.utime(victim, ns=(5, 5))
    before = os.stat(victim)
    data = workdir / "out" / "data"
    (data / "a").mkdir(parents=True)
    (data / "b").mkdir()
    for name in ("pipe", "null", "sock", "a/one", "a/two", "b/three", "b/pair2"):
        os.symlink(victim, data / name)            # the first name and the later names of groups

    got = await served.client(lambda c: c.get("r", "/data", str(workdir / "out")))
    assert got.not_written == {}
    after = os.stat(victim)
    assert victim.read_bytes() == b"precious\n"
    assert (after.st_mode, after.st_mtime_ns, after.st_nlink, after.st_ino) == \
        (before.st_mode, before.st_mtime_ns, 1, before.st_ino)
    assert stat.S_ISFIFO(os.lstat(data / "pipe").st_mode) and stat.S_ISCHR(os.lstat(data / "null").st_mode)
    linked = {os.lstat(data / p).st_ino for p in ("a/one", "a/two", "b/three")}
    assert len(linked) == 1 and linked != {before.st_ino}
    assert not os.path.islink(data / "b" / "pair2")


async def test_a_hostile_daemons_link_to_is_refused(workdir: Path) -> None:
    """A get stream whose later name refers to a name that is not an earlier
    name of its group (or to one of another group) is ``bad_reply``; nothing
    is linked to what the daemon names."""
    victim = workdir / "victim"
    victim.write_bytes(b"precious")
    link = "ab" * 8
    cases = [
        [{"entry": {"path": "x", "type": "file", "link": link, "link_to": "../victim"}}],
        [{"entry": {"path": "y", "type": "symlink", "target": "t", "link": "cd" * 8}},
         {"entry": {"path": "x", "type": "symlink", "link": link, "link_to": "y"}}],
    ]
    for i, lines in enumerate(cases):
        sock, out = str(workdir / f"fake{i}.sock"), workdir / f"out{i}"
        out.mkdir()
        top = [{"entry": {"path": "", "type": "dir", "mode": 0o755}}]

        def get() -> None:
            with Client(sock, timeout=30) as c:
                c.get("r", "/d", str(out))
        with fake_get_daemon(sock, top + lines):
            with pytest.raises(ProtocolError, match="not an earlier name of its group"):
                await trio.to_thread.run_sync(get)
        assert not (out / "d" / "x").exists() and os.stat(victim).st_nlink == 1


@pytest.mark.parametrize("swap", ["a file of theirs", "a symlink to the victim"])
def test_get_does_not_link_to_a_first_name_swapped_after_it_was_written(workdir: Path, swap: str) -> None:
    """The other user replaces the first name of a group after get wrote
    it: the later name is refused, naming it, and nothing is linked to
    what they put there."""
    victim = workdir / "victim"
    victim.write_bytes(b"precious")
    d = workdir / "out" / "d"
    d.parent.mkdir()
    dest = Destination.at(str(d))
    writer = TreeWriter(dest)
    try:
        writer.entry({"path": "", "type": "dir", "mode": 0o777})
        writer.entry({"path": "a", "type": "file", "mode": 0o644, "link": L1})
        writer.data(b"ours")
        writer.eof()
        os.rename(d / "a", d / "moved")
        if swap == "a symlink to the victim":
            os.symlink(victim, d / "a")
        else:
            (d / "theirs").write_bytes(b"theirs")
            os.link(d / "theirs", d / "a")
        with pytest.raises(ClientError, match="no longer the file get wrote"):
            writer.entry({"path": "b", "type": "file", "link": L1, "link_to": "a"})
    finally:
        writer.abort()
        dest.close()
    assert not os.path.lexists(d / "b") and os.stat(victim).st_nlink == 1
    assert os.lstat(d / "a").st_nlink == (1 if swap == "a symlink to the victim" else 2)
    assert [n for n in os.listdir(d) if n.startswith(".trunkfs-get-")] == []


# -- diff -----------------------------------------------------------------------------

async def test_diff_reports_a_changed_device_and_a_fifo_become_a_device(served: Served, workdir: Path) -> None:
    src = make_source(workdir)
    first = await served.client(lambda c: (c.repo_create("r"), c.put("r", [str(src)]))[1])
    os.unlink(src / "null")
    os.mknod(src / "null", stat.S_IFCHR, os.makedev(1, 5))
    os.unlink(src / "pipe")
    os.mknod(src / "pipe", stat.S_IFBLK, os.makedev(7, 0))
    for p, mode in (("null", 0o620), ("pipe", 0o640)):     # mode and mtime as before: rdev and type changed
        os.chmod(src / p, mode)
        os.utime(src / p, ns=(MTIME, MTIME))
    second = await served.client(lambda c: c.put("r", [str(src)]))
    changes = await served.client(lambda c: c.diff("r", first.commit, second.commit))
    assert sorted((ch.status, ch.path) for ch in changes.changes) == [("M", "/data/null"), ("M", "/data/pipe")]
    res = await served.cli("diff", f"r@{first.commit}", f"r@{second.commit}")
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.decode().splitlines()) == ["M /data/null", "M /data/pipe"]


# -- a caller that is not root ----------------------------------------------------------

_AS_NOBODY = """
import json, sys
from trunkfs.client import Client
action, sock, local = sys.argv[1:4]
with Client(sock, timeout=60) as c:
    if action == "put":
        c.repo_create("mine")
        r = c.put("mine", [local])
        print(json.dumps({"commit": r.commit, "skipped": r.skipped_reasons}))
    else:
        r = c.get("r", "/data", local)
        print(json.dumps({"files": r.files, "not_written": r.not_written}))
"""


async def _as_nobody(*args: str) -> dict:
    proc = await trio.to_thread.run_sync(lambda: subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-c",
         _AS_NOBODY, *args], capture_output=True, timeout=120, cwd="/"))
    if proc.returncode != 0 and b"Permission denied" in proc.stderr:
        pytest.skip(f"the test's Python is not runnable by uid {NOBODY}")
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


async def test_a_client_that_is_not_root_leaves_devices_out_of_put_and_get(served: Served,
                                                                           workdir: Path) -> None:
    src = make_source(workdir)
    for d in (src.parent, src, src / "a", src / "b"):
        os.chmod(d, 0o755)
    for f in ("a/one", "pair", "plain"):
        os.chmod(src / f, 0o644)
    put = await _as_nobody("put", served.socket, str(src))
    assert list(put["skipped"]) == [str(src / "null")] and "only root" in put["skipped"][str(src / "null")]
    assert served.entry("mine", "/data/pipe")["type"] == "fifo"
    with pytest.raises(TrunkError):
        served.entry("mine", "/data/null")

    await served.client(lambda c: (c.repo_create("r"), c.put("r", [str(src)])))   # by root: with the device
    out = workdir / "nobodys"
    out.mkdir()
    os.chown(out, NOBODY, NOBODY)
    got = await _as_nobody("get", served.socket, str(out))
    shown = str(out / "data" / "null")
    assert list(got["not_written"]) == [shown] and "only root" in got["not_written"][shown]
    assert got["files"] == 6 and not os.path.lexists(shown)
    assert stat.S_ISFIFO(os.lstat(out / "data" / "pipe").st_mode)
    assert os.lstat(out / "data" / "b" / "three").st_nlink == 3


async def test_the_daemon_refuses_a_device_from_a_caller_that_is_not_root(service: Service) -> None:  # noqa: F811
    """The daemon never trusts the client to have left devices out: a
    device entry from a caller that is not root ends the put with
    ``permission_denied`` and nothing committed, as mknod(2) refuses."""
    peers = [Peer(service, socketpair_as(NOBODY, NOBODY)) for _ in range(2)]  # a refused stream ends its connection
    try:
        await peers[0].call("repo.create", name="mine")
        device = ({"type": "char", "path": "null", "mode": 0o666, "mtime": 1, "rdev": NULL}, None)
        exc = await _put_error(peers[0], "mine", [file("before", b"x"), device, file("after", b"y")])
        assert exc.code == "permission_denied" and "null" in str(exc) and "only root" in str(exc)
        assert service.refs.read_branch("mine", "main")[0] is None      # nothing committed
        fifo = ({"type": "fifo", "path": "pipe", "mode": 0o4644, "mtime": 1}, None)
        await peers[1].put("mine", [fifo])                                # a FIFO is fine, setuid dropped
        head = service.refs.read_branch("mine", "main")[0]
        assert head is not None
        pipe = walk.lookup(service.store, service.store.read_commit(head).root_entry(), ["pipe"])
        assert (pipe["type"], pipe["mode"]) == ("fifo", 0o644)
    finally:
        for p in peers:
            await p.aclose()


# -- streams a hostile client sends ----------------------------------------------------------

async def _put_error(peer: Peer, repo: str, entries: list) -> TrunkError:
    try:
        await peer.put(repo, entries)
    except BaseExceptionGroup as group:
        found = group.subgroup(TrunkError)
        assert found is not None, group
        exc: BaseException = found.exceptions[0]
        while isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
        assert isinstance(exc, TrunkError)
        return exc
    except TrunkError as exc:
        return exc
    raise AssertionError("the put was not refused")


def _named(path: str, link: str, to: str, kind: str = "file") -> tuple[dict, None]:
    return {"type": kind, "path": path, "link": link, "link_to": to}, None


def _linked(path: str, data: bytes, link: Any) -> tuple[dict, bytes]:
    head, _ = file(path, data)
    return dict(head, link=link), data


L1, L2 = "0123456789abcdef", "fedcba9876543210"

HOSTILE_PUTS = {
    "a link id that is no id": [_linked("a", b"x", "../../etc")],
    "a link id of 15 digits": [_linked("a", b"x", "0123456789abcde")],
    "a link id in upper case": [_linked("a", b"x", "0123456789ABCDEF")],
    "a link id that is a number": [_linked("a", b"x", 12)],
    "link_to a name of another group": [_linked("a", b"x", L1), _linked("b", b"y", L2), _named("c", L1, "b")],
    "link_to a name not sent yet": [_linked("a", b"x", L1), _named("c", L1, "d"), _linked("d", b"y", L1)],
    "link_to a name without a link": [file("a", b"x"), _named("c", L1, "a")],
    "link_to itself": [_named("c", L1, "c")],
    "link_to outside the put": [_linked("a", b"x", L1), _named("c", L1, "../a")],
    "link_to without a link id": [_linked("a", b"x", L1), ({"type": "file", "path": "c", "link_to": "a"}, None)],
    "link_to of another type": [_linked("a", b"x", L1), _named("c", L1, "a", "symlink")],
    "a group's content sent twice": [_linked("a", b"x", L1), _linked("c", b"other", L1)],
    "a hard-linked directory": [({"type": "dir", "path": "d", "mode": 0o755, "link": L1}, None)],
    "a device without rdev": [({"type": "char", "path": "n", "mode": 0o600}, None)],
    "a device with a negative rdev": [({"type": "block", "path": "n", "mode": 0o600, "rdev": -1}, None)],
}


@pytest.mark.parametrize("case", list(HOSTILE_PUTS))
async def test_a_hostile_put_is_refused_and_commits_nothing(service: Service, case: str) -> None:  # noqa: F811
    peer = Peer(service)
    try:
        await peer.call("repo.create", name="r")
        exc = await _put_error(peer, "r", [file("first", b"1")] + HOSTILE_PUTS[case])
        assert exc.code == "invalid_argument", exc
        assert service.refs.read_branch("r", "main")[0] is None
    finally:
        await peer.aclose()


async def test_a_put_never_joins_a_link_group_of_the_branch(service: Service) -> None:  # noqa: F811
    """A client's link id groups names within its put only: sending the id
    of a group already committed starts a new group, with a fresh id."""
    peer = Peer(service)
    try:
        await peer.call("repo.create", name="r")
        await peer.put("r", [_linked("a", b"secret", L1), _named("b", L1, "a")])
        root = service.store.read_commit(service.refs.read_branch("r", "main")[0]).root_entry()
        committed = walk.lookup(service.store, root, ["a"])["link"]
        assert committed != L1 and link_census(service.store, root) == {committed: 2}

        await peer.put("r", [_linked("c", b"mine", committed), _named("d", committed, "c")])
        root = service.store.read_commit(service.refs.read_branch("r", "main")[0]).root_entry()
        c, d = (walk.lookup(service.store, root, [n]) for n in ("c", "d"))
        assert c["link"] == d["link"] != committed
        assert link_census(service.store, root) == {committed: 2, c["link"]: 2}
        head = service.refs.read_branch("r", "main")[0]

        exc = await _put_error(peer, "r", [_named("e", committed, "a")])   # a name of the branch, not of the put
        assert exc.code == "invalid_argument" and "not an earlier name" in str(exc)
        assert service.refs.read_branch("r", "main")[0] == head
    finally:
        await peer.aclose()


async def test_stage_put_refuses_what_staging_cannot_hold(service: Service) -> None:  # noqa: F811
    peer = Peer(service)
    try:
        await peer.call("repo.create", name="r")
        for bad, why in ((({"type": "fifo", "path": "p", "mode": 0o644}, None), "a fifo cannot be staged"),
                         (_linked("l", b"x", L1), "hard links cannot be staged"),
                         (_named("m", L1, "l"), "hard links cannot be staged")):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(peer._send_entries, [bad, file("ok", b"fine")])
                with pytest.raises(TrunkError, match=why):
                    await peer.call("stage.put", repo="r")
        status = await peer.call("status", repo="r")
        assert status["changes"] == []
    finally:
        await peer.aclose()


async def test_stage_files_and_put_files_refuse_a_fifo_without_blocking(served: Served, workdir: Path) -> None:
    os.mkfifo(workdir / "pipe")
    await served.client(lambda c: c.repo_create("r"))
    for send in (lambda c: c.stage_files("r", [("p", str(workdir / "pipe"))]),
                 lambda c: c.put_files("r", [("p", str(workdir / "pipe"))])):
        with trio.fail_after(60):
            with pytest.raises(ClientError, match="a FIFO, not a regular file") as refused:
                await served.client(send)
        assert refused.value.code == "io_error"
    assert served.head("r") is None
    assert (await served.client(lambda c: c.status("r"))).changes == []
