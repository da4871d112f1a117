"""The `trunkfs` CLI against a real daemon process, as a user runs it."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def tree_of(root: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if os.path.islink(p):
                out[os.path.normpath(os.path.join(rel, d))] = "-> " + os.readlink(p)
            else:
                out[os.path.normpath(os.path.join(rel, d)) + "/"] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            key = os.path.normpath(os.path.join(rel, f))
            out[key] = ("-> " + os.readlink(p)) if os.path.islink(p) else Path(p).read_bytes()
    return out


def test_repo_lifecycle(daemon):
    daemon.cli("repo", "create", "images")
    daemon.cli("repo", "create", "labels")
    listed = daemon.cli("repo", "list", "--json").json()
    assert [r["name"] for r in listed] == ["images", "labels"]
    assert listed[0]["branches"] == ["main"]
    dup = daemon.cli("repo", "create", "images", check=False)
    assert dup.returncode != 0 and "already exists" in dup.err
    daemon.cli("repo", "delete", "labels")
    assert [r["name"] for r in daemon.cli("repo", "list", "--json").json()] == ["images"]
    gone = daemon.cli("repo", "delete", "labels", check=False)
    assert gone.returncode != 0 and "does not exist" in gone.err


@pytest.mark.parametrize("name,why", [
    ("a/b", "'/'"), ("a@b", "'@'"), ("a:b", "':'"), ("a b", "white space"),
    (".x", "starts with '.'"), ("y" * 101, "too long"), ("", "empty"),
])
def test_bad_names_are_refused_with_a_reason(daemon, name, why):
    res = daemon.cli("repo", "create", name, check=False)
    assert res.returncode != 0
    assert why in res.err


def test_put_get_cat_ls_with_cp_semantics(daemon, workdir):
    src = workdir / "src"
    write(src / "data" / "a.csv", b"x,y\n1,2\n")
    write(src / "data" / "sub" / "b.bin", random.Random(1).randbytes(3_000_000))
    write(src / "data" / "empty", b"")
    (src / "data" / "emptydir").mkdir()
    os.symlink("a.csv", src / "data" / "link")
    os.chmod(src / "data" / "a.csv", 0o600)
    write(src / "readme.txt", b"hello\n")
    daemon.cli("repo", "create", "raw")
    cid = daemon.cli("put", "raw", str(src / "data"), str(src / "readme.txt"), "-m", "first").out.strip()
    assert len(cid) == 64

    names = {e["name"]: e for e in daemon.cli("ls", "raw", "--json").json()["entries"]}
    assert set(names) == {"data", "readme.txt"}
    assert names["data"]["type"] == "dir" and names["data"]["files"] == 3
    sub = {e["name"]: e for e in daemon.cli("ls", "raw:/data", "--json").json()["entries"]}
    assert sub["a.csv"]["mode"] == 0o600
    assert sub["link"]["type"] == "symlink" and sub["link"]["target"] == "a.csv"
    assert daemon.cli("cat", "raw:/data/a.csv").stdout == b"x,y\n1,2\n"
    assert daemon.cli("cat", f"raw@{cid[:8]}:/readme.txt").stdout == b"hello\n"

    # get into an existing directory lands at DIR/<basename>, like cp -r
    out = workdir / "out"
    out.mkdir()
    daemon.cli("get", "raw:/data", str(out))
    assert tree_of(out / "data") == tree_of(src / "data")
    assert (os.stat(out / "data" / "a.csv").st_mode & 0o777) == 0o600
    assert os.stat(out / "data" / "a.csv").st_mtime_ns == os.stat(src / "data" / "a.csv").st_mtime_ns
    # get to a new name creates that name
    daemon.cli("get", "raw:/data/sub/b.bin", str(workdir / "copy.bin"))
    assert (workdir / "copy.bin").read_bytes() == (src / "data" / "sub" / "b.bin").read_bytes()
    # the whole repo
    daemon.cli("get", "raw", str(workdir / "whole"))
    assert tree_of(workdir / "whole") == tree_of(src)

    # put into a destination directory; overwriting a file
    write(src / "data" / "a.csv", b"x,y\n3,4\n")
    daemon.cli("put", "raw:/nested/dir", str(src / "data" / "a.csv"))
    daemon.cli("put", "raw:/data", str(src / "data" / "a.csv"))
    assert daemon.cli("cat", "raw:/nested/dir/a.csv").stdout == b"x,y\n3,4\n"
    assert daemon.cli("cat", "raw:/data/a.csv").stdout == b"x,y\n3,4\n"
    assert daemon.cli("cat", f"raw@{cid}:/data/a.csv").stdout == b"x,y\n1,2\n"

    bad = daemon.cli("cat", "raw:/data", check=False)
    assert bad.returncode != 0 and "directory" in bad.err
    missing = daemon.cli("cat", "raw:/nope", check=False)
    assert missing.returncode != 0 and "does not exist" in missing.err
    dotdot = daemon.cli("ls", "raw:/data/../etc", check=False)
    assert dotdot.returncode != 0 and ".." in dotdot.err


def test_log_show_diff_rm(daemon, workdir):
    daemon.cli("repo", "create", "r")
    write(workdir / "v1" / "keep", b"keep")
    write(workdir / "v1" / "change", b"one")
    write(workdir / "v1" / "drop", b"drop")
    c1 = daemon.cli("put", "r", str(workdir / "v1" / "keep"), str(workdir / "v1" / "change"),
                    str(workdir / "v1" / "drop"), "-m", "v1").out.strip()
    write(workdir / "v2" / "change", b"two")
    write(workdir / "v2" / "new", b"new")
    c2 = daemon.cli("put", "r", str(workdir / "v2" / "change"), str(workdir / "v2" / "new"), "-m", "v2").out.strip()
    c3 = daemon.cli("rm", "r:/drop", "-m", "drop it").out.strip()

    log = daemon.cli("log", "r", "--json").json()
    assert [c["id"] for c in log] == [c3, c2, c1]
    assert [c["message"] for c in log] == ["drop it", "v2", "v1"]
    assert log[0]["author"]["uid"] == os.getuid()
    text = daemon.cli("log", "r").out
    assert c1 in text and "v2" in text

    show = daemon.cli("show", f"r@{c2[:10]}", "--json").json()
    assert show["id"] == c2 and show["parents"] == [c1] and show["files"] == 4
    assert "Tree:" in daemon.cli("show", "r@main").out

    d = daemon.cli("diff", f"r@{c1}", f"r@{c3}", "--json").json()
    assert d["changes"] == [{"status": "M", "path": "/change"}, {"status": "D", "path": "/drop"},
                            {"status": "A", "path": "/new"}]
    assert daemon.cli("diff", f"r@{c3}").out.strip() == "D /drop"
    missing = daemon.cli("rm", "r:/drop", check=False)
    assert missing.returncode != 0 and "does not exist" in missing.err
    assert daemon.cli("log", "r", "--json").json()[0]["id"] == c3


def test_branches(daemon, workdir):
    daemon.cli("repo", "create", "r")
    write(workdir / "f", b"on main")
    c1 = daemon.cli("put", "r", str(workdir / "f")).out.strip()
    daemon.cli("branch", "create", "r@dev")
    write(workdir / "f", b"on dev")
    daemon.cli("put", "r@dev", str(workdir / "f"))
    assert daemon.cli("cat", "r:/f").stdout == b"on main"
    assert daemon.cli("cat", "r@dev:/f").stdout == b"on dev"
    daemon.cli("branch", "create", "r@old", "--from", c1[:7])
    branches = {b["name"]: b["head"] for b in daemon.cli("branch", "list", "r", "--json").json()}
    assert set(branches) == {"main", "dev", "old"} and branches["old"] == c1
    dup = daemon.cli("branch", "create", "r@dev", check=False)
    assert dup.returncode != 0 and "already exists" in dup.err
    ro = daemon.cli("put", f"r@{c1}", str(workdir / "f"), check=False)
    assert ro.returncode != 0 and "read-only" in ro.err
    daemon.cli("branch", "delete", "r@dev")
    assert daemon.cli("cat", "r@dev:/f", check=False).returncode != 0
    bad = daemon.cli("branch", "create", "r@bad name", check=False)
    assert bad.returncode != 0 and "white space" in bad.err


def test_empty_branch_and_errors(daemon, workdir):
    daemon.cli("repo", "create", "r")
    assert daemon.cli("ls", "r", "--json").json()["entries"] == []
    assert daemon.cli("log", "r", "--json").json() == []
    res = daemon.cli("ls", "nope", check=False)
    assert res.returncode != 0 and "repo 'nope' does not exist" in res.err
    res = daemon.cli("put", "r", str(workdir / "missing"), check=False)
    assert res.returncode != 0 and "no such file" in res.err
    res = daemon.cli("ls", "r", "--json", check=False)
    assert res.returncode == 0


def test_stats_and_fsck(daemon, workdir):
    daemon.cli("repo", "create", "r")
    data = random.Random(9).randbytes(4_000_000)
    write(workdir / "a", data)
    write(workdir / "b", data)
    daemon.cli("put", "r", str(workdir / "a"), str(workdir / "b"))
    stats = daemon.cli("stats", "--json").json()
    assert stats["logical_bytes"] == 8_000_000
    assert stats["unique_bytes"] == 4_000_000
    assert 1.9 < stats["dedup_ratio"] < 2.1
    assert stats["packs"] >= 2 and stats["chunks"] >= 2
    report = daemon.cli("fsck", "--read-data", "--json").json()
    assert report["ok"] and report["files"] == 2 and report["blobs_verified"] == report["chunks"]
    report = daemon.cli("fsck", "--rebuild-index", "--json").json()
    assert report["ok"] and report["rebuilt_index"]["packs_added"] == stats["packs"]
    def figures(s: dict) -> dict:   # the store's request counts and caches move with every call
        return {k: v for k, v in s.items() if k not in ("requests", "tree_cache")}
    trees = stats["tree_cache"]        # the caches' sizes and their limits
    assert trees["bytes_limit"] == 64 << 20           # the default tree_cache
    assert 0 < trees["bytes"] <= trees["bytes_limit"] and 0 <= trees["indexed"] <= trees["trees"]
    shown = daemon.cli("stats").out
    assert "trees cached:" in shown and "indexed by name" in shown
    assert figures(daemon.cli("stats", "--json").json()) == figures(stats)
    assert stats["requests"]["put"]["requests"] >= stats["packs"]


def test_restart_keeps_everything(daemon_factory, workdir):
    d = daemon_factory()
    d.cli("repo", "create", "r")
    write(workdir / "f", b"persisted")
    cid = d.cli("put", "r", str(workdir / "f")).out.strip()
    assert d.stop() == 0
    d.start()
    assert d.cli("cat", f"r@{cid[:6]}:/f").stdout == b"persisted"
    # delete the index: the daemon rebuilds it from the store at start
    d.stop()
    import shutil
    shutil.rmtree(d.state / "index")
    d.start()
    assert d.cli("cat", f"r@{cid[:6]}:/f").stdout == b"persisted"
    assert d.cli("fsck", "--json").json()["ok"]


def test_concurrent_puts_to_one_branch_all_land(daemon, workdir):
    import subprocess
    import sys
    daemon.cli("repo", "create", "r")
    procs = []
    for i in range(6):
        write(workdir / f"src{i}" / f"file{i}", random.Random(i).randbytes(300_000 * (i + 1)))
        procs.append(subprocess.Popen([sys.executable, "-m", "trunkfs.daemon.cli", "put", "r",
                                       str(workdir / f"src{i}" / f"file{i}")],
                                      env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    log = daemon.cli("log", "r", "--json").json()
    assert len(log) == 6
    names = {e["name"] for e in daemon.cli("ls", "r", "--json").json()["entries"]}
    assert names == {f"file{i}" for i in range(6)}
    for i in range(6):
        assert daemon.cli("cat", f"r:/file{i}").stdout == random.Random(i).randbytes(300_000 * (i + 1))


# -- what the CLI shows: the numbers against what was written ---------------------

def test_pipeline_output_shows_its_true_size_author_and_provenance(daemon, workdir):
    import json
    import pwd
    d = daemon
    d.cli("repo", "create", "raw")
    # two datums (one per input file); each writes one 2-byte file: 4 B in 2 files
    spec = {"name": "counts", "input": {"repo": "raw", "glob": "/*"},
            "transform": {"cmd": ["/bin/sh", "-c", 'for f in "$TRUNKFS_INPUT"/*; do '
                                  'printf ok > "$TRUNKFS_OUTPUT/$(basename "$f").ok"; done']}}
    (workdir / "counts.json").write_text(json.dumps(spec))
    d.cli("pipeline", "create", "-f", str(workdir / "counts.json"))
    write(workdir / "in" / "a", b"12345")
    write(workdir / "in" / "b", b"67890")
    put = d.cli("put", "raw", str(workdir / "in" / "a"), str(workdir / "in" / "b"), "--json").json()
    job_id = put["jobs"][0]
    assert d.cli("job", "wait", job_id[:12]).returncode == 0
    assert d.cli("cat", "counts:/a.ok").stdout == b"ok" and d.cli("cat", "counts:/b.ok").stdout == b"ok"

    show = d.cli("show", "counts@main").out
    assert "Size:   4 B in 2 files" in show
    user = pwd.getpwuid(os.getuid()).pw_name
    assert f"Author: {user} (uid {os.getuid()})" in show
    assert f"Provenance: raw@{put['commit'][:12]} (branch main)" in show.splitlines()
    assert "{" not in show  # no raw JSON object
    shown = d.cli("show", "counts@main", "--json").json()
    assert (shown["size"], shown["files"], shown["author"]["name"]) == (4, 2, user)

    repos = {line.split()[0]: line for line in d.cli("repo", "list").out.splitlines()}
    assert repos["counts"].split()[1:3] == ["4", "B"] and repos["raw"].split()[1:3] == ["10", "B"]
    assert {r["name"]: r["size"] for r in d.cli("repo", "list", "--json").json()} == {"counts": 4, "raw": 10}
    assert d.cli("stats", "--json").json()["logical_bytes"] == 10 + 4

    # a job is shown by a short prefix of its id, and says which datum count is which
    line = d.cli("job", "list").out.strip()
    shown_id = line.split()[0]
    assert job_id.startswith(shown_id) and len(shown_id) == min(12, len(job_id))
    assert "datums: 2 processed, 0 skipped, 0 failed of 2" in line
    assert d.cli("job", "show", shown_id).out.splitlines()[0] == line  # one formatter for jobs
    assert f"pipeline counts v1 job {shown_id}" in d.cli("provenance", "counts").out


def test_status_and_diff_print_paths_alike(mounted):
    d = mounted
    d.cli("repo", "create", "r")
    os.makedirs(d.mount / "r" / "sub")
    (d.mount / "r" / "sub" / "new.txt").write_bytes(b"new")
    (d.mount / "r" / "top.txt").write_bytes(b"top")
    status = d.cli("status", "r").out.splitlines()
    assert status == ["A /sub/new.txt", "A /top.txt"]
    d.cli("commit", "r", "-m", "two files")
    assert d.cli("diff", "r@main").out.splitlines() == status


def test_short_job_ids_grow_until_they_differ():
    from trunkfs.daemon.format import short_ids
    assert short_ids(["1795929938457092208-a47d8e80", "1795929938557092208-b47d8e80"]) == 12
    assert short_ids(["1795929938457092208-a47d8e80", "1795929938457092209-b47d8e80"]) == 19
    assert short_ids(["abc"]) == 12 and short_ids([]) == 12


def test_a_socket_group_member_gets_only_what_the_acl_and_modes_allow(daemon_factory, workdir):
    """A daemon with --socket-group; the CLI run as nobody, a member of the group."""
    import subprocess

    from .harness import TRUNKFS
    d = daemon_factory(extra=["--socket-group", "nogroup"])
    for p in (workdir, workdir / "d", workdir / "d" / "sock"):
        os.chmod(p, 0o755)
    out = workdir / "out"
    out.mkdir(mode=0o777)
    os.chmod(out, 0o777)

    def as_nobody(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--init-groups", *TRUNKFS, *args],
                              capture_output=True, env=d.env, timeout=120, stdin=subprocess.DEVNULL)
        if proc.returncode != 0 and b"Permission denied" in proc.stderr and b"trunkfs:" not in proc.stderr:
            pytest.skip("the trunkfs command is not runnable by uid 65534")
        return proc

    src = workdir / "src"
    write(src / "public", b"for all\n")
    os.chmod(write(src / "secret", b"root only\n"), 0o600)
    d.cli("repo", "create", "data")
    d.cli("put", "data:/", str(src / "public"), str(src / "secret"))
    assert as_nobody("cat", "data:/public").stdout == b"for all\n"
    refused = as_nobody("cat", "data:/secret")
    assert refused.returncode == 1 and b"permission denied" in refused.stderr and b"data:/secret" in refused.stderr
    # get of the whole repo skips the secret and says so, as cp does
    got = as_nobody("get", "data:/", str(out / "data"))
    assert got.returncode == 1 and b"/secret" in got.stderr, got.stderr
    assert sorted(os.listdir(out / "data")) == ["public"]
    gone = as_nobody("repo", "delete", "data")
    assert gone.returncode == 1 and b"admin" in gone.stderr
    # the access list: revoke everyone, then grant the group
    acl = d.cli("repo", "acl", "data", "--revoke", "everyone", "--json").json()
    assert acl["acl"] == [] and acl["owner"]["uid"] == 0
    assert "data" not in as_nobody("repo", "list").stdout.decode()
    shown = d.cli("repo", "acl", "data", "--grant", "group:nogroup=read").out
    assert "owner: root" in shown and "group:nogroup" in shown and "read" in shown
    assert as_nobody("cat", "data:/public").stdout == b"for all\n"
    bad = d.cli("repo", "acl", "data", "--grant", "group:nogroup=owner", check=False)
    assert bad.returncode == 1 and "role" in bad.err
