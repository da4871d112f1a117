"""Names are bytes: any name of 1-255 bytes without NUL or '/' works through
the mount and every command, in plain and ``--json`` output, in pipelines
(``TRUNKFS_DATUM``), and is stored and read back byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.harness import TRUNKFS

LATIN1 = b"caf\xe9.txt"                 # the case: Latin-1, not UTF-8
NAMES = [LATIN1, b"\xff\xfe", b"ok-\xc3\xa9", b"nl\nand\\back", b"\xed\xb3\xa9",  # UTF-8 of a surrogate
         b"\xc3\xa9" + b"\xe9" * 253]   # 255 bytes, mixed
DIRNAME = b"d\xe9"
TARGET = b"../\xe9\xff-target"


def bpath(base: Path | str, *parts: bytes) -> bytes:
    return b"/".join([os.fsencode(base), *parts])


def cli_bytes(d, *args: bytes | str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the CLI with byte arguments, as a shell passes them."""
    argv = [os.fsencode(a) if isinstance(a, str) else a for a in [*TRUNKFS, *args]]
    proc = subprocess.run(argv, capture_output=True, env=d.env, stdin=subprocess.DEVNULL, timeout=300)
    if check:
        assert proc.returncode == 0, (args, proc.stderr.decode(errors="replace"))
    return proc


def json_names(raw: bytes) -> object:
    """Parse --json output (valid JSON; non-UTF-8 bytes as \\udcXX escapes)."""
    raw.decode("utf-8")       # strict: the output is UTF-8 text
    return json.loads(raw)


def make_files(root: bytes) -> None:
    os.mkdir(root + b"/" + DIRNAME)
    for n in NAMES:
        with open(root + b"/" + n, "wb") as f:
            f.write(b"data of " + n)
        with open(root + b"/" + DIRNAME + b"/" + n, "wb") as f:
            f.write(b"inner " + n)
    os.symlink(TARGET, root + b"/" + DIRNAME + b"/link\xe9")


def test_byte_names_through_the_mount_and_every_command(mounted, workdir):
    d = mounted
    d.cli("repo", "create", "r")
    root = bpath(d.mount, b"r")
    make_files(root)
    assert set(os.listdir(root)) == {*NAMES, DIRNAME}

    # status, plain and --json: the daemon answers and lives on
    plain = cli_bytes(d, "status", "r").stdout
    for n in NAMES:
        assert b"A /" + n.replace(b"\n", b"\\n") in plain or b"/" + n in plain, (n, plain)
    staged = json_names(cli_bytes(d, "--json", "status", "r").stdout)
    paths = {os.fsencode(c["path"]) for c in staged["changes"]}
    assert {b"/" + n for n in NAMES} <= paths

    cli_bytes(d, "commit", "r", "-m", "bytes")
    commit = d.cli("log", "r", "--json").json()[0]["id"]
    # the committed view and the branch view hold the same bytes
    for view in (root, bpath(d.mount, b"r@" + commit.encode())):
        assert set(os.listdir(view)) == {*NAMES, DIRNAME}
        for n in NAMES:
            assert open(view + b"/" + n, "rb").read() == b"data of " + n
        assert os.readlink(view + b"/" + DIRNAME + b"/link\xe9") == TARGET

    # ls and cat
    listed = json_names(cli_bytes(d, "--json", "ls", b"r:/" + DIRNAME).stdout)
    assert os.fsencode(listed["path"]) == b"/" + DIRNAME
    assert {os.fsencode(e["name"]) for e in listed["entries"]} == {*NAMES, b"link\xe9"}
    plain_ls = cli_bytes(d, "ls", "r:/").stdout
    assert LATIN1 in plain_ls
    for n in NAMES:
        assert cli_bytes(d, "cat", b"r:/" + DIRNAME + b"/" + n).stdout == b"inner " + n

    # get: the local copy has the same byte names, contents and symlink target
    out = bpath(workdir, b"out")
    cli_bytes(d, "get", b"r:/" + DIRNAME, out)
    assert set(os.listdir(out)) == {*NAMES, b"link\xe9"}
    assert os.readlink(out + b"/link\xe9") == TARGET
    for n in NAMES:
        assert open(out + b"/" + n, "rb").read() == b"inner " + n

    # put from a local directory with byte names, into a byte-named destination
    src = bpath(workdir, b"src\xe9")
    os.mkdir(src)
    with open(src + b"/\xfe\xfd", "wb") as f:
        f.write(b"put me")
    cli_bytes(d, "put", b"r:/up\xe9", src)
    assert open(root + b"/up\xe9/src\xe9/\xfe\xfd", "rb").read() == b"put me"

    # log, show, diff name the paths
    second = d.cli("log", "r", "--json").json()[0]["id"]
    shown = json_names(cli_bytes(d, "--json", "diff", f"r@{commit}", f"r@{second}").stdout)
    assert b"/up\xe9/src\xe9/\xfe\xfd" in {os.fsencode(c["path"]) for c in shown["changes"]}
    assert b"/up\xe9/src\xe9/\xfe\xfd" in cli_bytes(d, "diff", f"r@{commit}", f"r@{second}").stdout
    cli_bytes(d, "show", f"r@{second}")
    cli_bytes(d, "log", "r")

    # rm of a byte path, then discard of a staged byte path
    cli_bytes(d, "rm", b"r:/" + LATIN1)
    assert LATIN1 not in os.listdir(root)
    with open(root + b"/new\xe9", "wb") as f:
        f.write(b"staged")
    cli_bytes(d, "discard", "r", b"/new\xe9")
    assert b"new\xe9" not in os.listdir(root)

    # the store is consistent, and a restart reads it all back
    assert d.cli("fsck", "--json").json()["problems"] == []
    d.stop()
    d.start()
    assert set(os.listdir(root + b"/" + DIRNAME)) == {*NAMES, b"link\xe9"}


def test_names_of_staged_work_survive_a_restart_and_commit(mounted):
    """The issue's sequence: a Latin-1 name staged, `status`, restart, `commit`."""
    d = mounted
    d.cli("repo", "create", "demo")
    with open(bpath(d.mount, b"demo", LATIN1), "wb") as f:
        f.write(b"x")
    assert b"caf" in cli_bytes(d, "status", "demo").stdout
    d.stop()
    d.start()
    cli_bytes(d, "commit", "demo", "-m", "latin-1")
    assert cli_bytes(d, "cat", b"demo:/" + LATIN1).stdout == b"x"


def test_pipelines_see_byte_names_in_inputs_outputs_and_datum(daemon, workdir):
    d = daemon
    d.cli("repo", "create", "raw")
    src = bpath(workdir, b"src")
    os.mkdir(src)
    for n in (LATIN1, b"\xff\xfe"):
        with open(src + b"/" + n, "wb") as f:
            f.write(n)
    script = ('import os, sys\n'
              'inp, out = os.environb[b"TRUNKFS_INPUT"], os.environb[b"TRUNKFS_OUTPUT"]\n'
              'datum = os.environb[b"TRUNKFS_DATUM"]\n'
              'for n in os.listdir(inp):\n'
              '    data = open(inp + b"/" + n, "rb").read()\n'
              '    open(out + b"/" + n + b".seen\\xe9", "wb").write(data + b"|" + datum)\n')
    spec = {"name": "echo", "input": {"repo": "raw", "glob": "/*"},
            "transform": {"cmd": [sys.executable, "-c", script]}}
    (workdir / "echo.json").write_text(json.dumps(spec))
    d.cli("pipeline", "create", "-f", str(workdir / "echo.json"))
    cli_bytes(d, "put", "raw", src + b"/" + LATIN1, src + b"/\xff\xfe")
    job = d.cli("job", "list", "--json").json()[0]
    d.cli("job", "wait", job["id"], timeout=120)
    assert d.cli("job", "show", job["id"], "--json").json()["state"] == "succeeded"
    listed = json_names(cli_bytes(d, "--json", "ls", "echo:/").stdout)
    assert {os.fsencode(e["name"]) for e in listed["entries"]} == {LATIN1 + b".seen\xe9", b"\xff\xfe.seen\xe9"}
    for n in (LATIN1, b"\xff\xfe"):
        assert cli_bytes(d, "cat", b"echo:/" + n + b".seen\xe9").stdout == n + b"|/" + n


OLD_STORE = Path(__file__).parent / "data" / "store-62148d7"


def test_a_store_written_before_byte_names_reads_and_grows(daemon_factory, workdir):
    """tests/data/store-62148d7 was written by trunkfs at commit 62148d7 (tree
    format 1 only).  Today's daemon reads every commit of it, fsck is clean,
    and a new commit with a byte name writes format 2 for that one tree only:
    the unchanged subtree keeps its id."""
    import shutil
    from trunkfs.store.objects import TREE_VERSION_BYTES
    shutil.copytree(OLD_STORE, workdir / "old")
    d = daemon_factory("old", store_url=f"file://{workdir / 'old'}")
    log = d.cli("log", "legacy@dev", "--json").json()
    assert [c["message"] for c in log] == ["on dev", "first"]
    assert d.cli("cat", "legacy:/a.txt").out == "hello\n"
    assert d.cli("cat", "legacy:/dir/é.txt").out == "café ok"
    assert d.cli("cat", "legacy@dev:/b.txt").out == "second\n"
    assert len(d.cli("cat", "legacy:/dir/random.bin").stdout) == 300000
    assert d.cli("fsck", "--read-data", "--json").json()["problems"] == []
    before = {e["name"]: e for e in d.cli("ls", "legacy:/", "--json").json()["entries"]}

    src = bpath(workdir, b"caf\xe9")
    with open(src, "wb") as f:
        f.write(b"latin-1")
    cli_bytes(d, "put", "legacy:/", src)
    after = {e["name"]: e for e in d.cli("ls", "legacy:/", "--json").json()["entries"]}
    assert cli_bytes(d, "cat", b"legacy:/caf\xe9").stdout == b"latin-1"
    assert after["dir"] == before["dir"]      # same subtree, same format-1 object
    root = json.loads(raw_tree(d, "legacy"))
    assert root["v"] == TREE_VERSION_BYTES
    assert d.cli("fsck", "--json").json()["problems"] == []


def raw_tree(d, repo: str) -> bytes:
    """The stored bytes of a branch head's root tree, read with the store's own code."""
    from trunkfs.store.backends.factory import open_backend
    from trunkfs.store.store import Store
    head = d.cli("log", repo, "--json").json()[0]["id"]
    st = Store(open_backend(d.store_url), str(d.base / "peek-index"), str(d.base / "peek-tmp")).open()
    try:
        return st.read_blob(bytes.fromhex(st.read_commit(head).tree))
    finally:
        st.close()


def test_on_a_terminal_hostile_names_are_shown_escaped(daemon, workdir):
    """Into a pipe a name is its own bytes; on a terminal (a pty here) its
    control characters and non-UTF-8 bytes are escaped, so a name cannot
    send escape sequences to the terminal of whoever lists it."""
    import pty
    d = daemon
    d.cli("repo", "create", "r")
    evil = b"\x1b]0;owned\x07\x1b[2J\xe9\xe2\x80\xae"     # retitle, clear screen, Latin-1, RLO
    src = bpath(workdir, evil)
    with open(src, "wb") as f:
        f.write(b"x")
    cli_bytes(d, "put", "r", src)
    assert evil in cli_bytes(d, "ls", "r:/").stdout            # a pipe: the bytes themselves
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([*TRUNKFS, "ls", "r:/"], stdout=slave, stderr=subprocess.PIPE, env=d.env,
                              stdin=subprocess.DEVNULL, timeout=60)
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:          # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    assert proc.returncode == 0, proc.stderr
    assert b"\x1b" not in shown and b"\x07" not in shown and b"\xe2\x80\xae" not in shown, shown
    assert b"\\x1b]0;owned\\x07\\x1b[2J\\xe9\\u202e" in shown, shown
