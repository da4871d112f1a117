"""Tags and branch reset through the CLI and the mount: a tag names a commit
for good and shows as a read-only view; a reset moves a branch, keeps what
it left readable by id, and keeps the staging."""

from __future__ import annotations

import errno
import os
import time

import pytest

from tests.harness import wait_for


def test_a_tag_is_a_read_only_view_that_never_moves(mounted, workdir):
    d = mounted
    d.cli("repo", "create", "r")
    (workdir / "f").write_bytes(b"one\n")
    c1 = d.cli("put", "r:/", str(workdir / "f")).out.strip()
    made = d.cli("tag", "create", "r", "v1", "--json").json()
    assert made == {"repo": "r", "tag": "v1", "commit": c1}
    (workdir / "f").write_bytes(b"two\n")
    d.cli("put", "r:/", str(workdir / "f"))
    view = d.mount / "r@v1"
    assert (view / "f").read_bytes() == b"one\n"
    assert (d.mount / "r" / "f").read_bytes() == b"two\n"
    with pytest.raises(OSError) as err:
        (view / "g").write_bytes(b"no")
    assert err.value.errno == errno.EROFS
    assert d.cli("cat", "r@v1:/f").stdout == b"one\n"
    again = d.cli("tag", "create", "r", "v1", check=False)     # a tag never moves
    assert again.returncode == 1 and "already exists" in again.err
    clash = d.cli("branch", "create", "r@v1", check=False)
    assert clash.returncode == 1 and "tag" in clash.err
    assert d.cli("tag", "create", "r", "main", check=False).returncode == 1   # a branch's name
    assert d.cli("tag", "list", "r", "--json").json() == [made]
    assert d.cli("tag", "list", "r").out.split() == ["v1", c1[:12]]
    d.cli("tag", "delete", "r", "v1")
    assert d.cli("tag", "list", "r", "--json").json() == []
    wait_for(lambda: not os.path.exists(view), 5, "r@v1 to go from the mount")
    assert d.cli("cat", "r@v1:/f", check=False).returncode == 1
    assert d.cli("cat", f"r@{c1}:/f").stdout == b"one\n"          # the commit stays


def test_reset_moves_a_branch_keeps_what_it_left_and_the_staging(mounted, workdir):
    d = mounted
    d.cli("repo", "create", "r")
    ids = []
    for n in range(3):
        (workdir / "f").write_bytes(f"v{n}\n".encode())
        ids.append(d.cli("put", "r:/", str(workdir / "f")).out.strip())
    (d.mount / "r" / "staged").write_bytes(b"staged\n")
    out = d.cli("branch", "reset", "r@main", "--to", ids[0][:12], "--json").json()
    assert out["head"] == ids[0] and out["before"] == ids[2]
    assert [c["id"] for c in d.cli("log", "r", "--json").json()] == [ids[0]]
    wait_for(lambda: (d.mount / "r" / "f").read_bytes() == b"v0\n", 5, "the mount to show the reset")
    assert d.cli("cat", f"r@{ids[2]}:/f").stdout == b"v2\n"         # left, but readable by id
    changes = d.cli("status", "r", "--json").json()["changes"]
    assert [(c["status"], c["path"]) for c in changes] == [("A", "/staged")]
    done = d.cli("commit", "r", "-m", "after reset").out.strip()
    assert [c["id"] for c in d.cli("log", "r", "--json").json()] == [done, ids[0]]
    d.cli("branch", "reset", "r@main", "--to", ids[2])                # forward again, by id
    assert d.cli("cat", "r:/f").stdout == b"v2\n"
    bad = d.cli("branch", "reset", "r@main", "--to", "nosuchref", check=False)
    assert bad.returncode == 1 and "nosuchref" in bad.err
