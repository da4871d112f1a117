"""Setuid and setgid bits: a non-root caller's are dropped on the way in
(put, pipeline output), as the kernel drops them on a write by a non-owner;
``get`` restores them only when root asks (``--preserve-setuid``)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from trunkfs.pipelines.datums import store_output

from .harness import TRUNKFS, create_pipeline_as

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="needs root (setuid files, another uid)")


def _mode_of(d, repo: str, path: str) -> int:
    parent, name = path.rsplit("/", 1)
    for e in d.client().ls(repo, parent or "/").entries:
        if e.name == name:
            return int(e.mode)
    raise AssertionError(f"{repo}:{path} not found")


def _setid_tree(root: Path) -> Path:
    """``root/tool`` (04755), ``root/group`` (02755), ``root/shared/`` (a 02775 directory)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, mode in (("tool", 0o4755), ("group", 0o2755)):
        (root / name).write_bytes(b"#!/bin/sh\n")
        os.chmod(root / name, mode)
    (root / "shared").mkdir(exist_ok=True)
    os.chmod(root / "shared", 0o2775)
    (root / "shared" / "f").write_bytes(b"f")
    os.chmod(root / "shared" / "f", 0o644)
    return root


def test_a_non_root_put_drops_setuid_and_setgid_of_files(daemon_factory, workdir):
    d = daemon_factory(extra=["--socket-group", "nogroup"])
    for p in (workdir, workdir / "d", workdir / "d" / "sock"):
        os.chmod(p, 0o755)
    src = _setid_tree(workdir / "src")
    for p in (src, src / "shared"):
        os.chmod(p, stat.S_IMODE(os.stat(p).st_mode) | 0o005)
    d.cli("repo", "create", "data")
    d.cli("repo", "acl", "data", "--grant", "user:nobody=write")
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *TRUNKFS,
                           "put", "data:/", str(src / "tool"), str(src / "group"), str(src / "shared")],
                          capture_output=True, env=d.env, timeout=120, stdin=subprocess.DEVNULL)
    if proc.returncode != 0 and b"Permission denied" in proc.stderr and b"trunkfs:" not in proc.stderr:
        pytest.skip("the trunkfs command is not runnable by uid 65534")
    assert proc.returncode == 0, proc.stderr
    assert _mode_of(d, "data", "/tool") == 0o755
    assert _mode_of(d, "data", "/group") == 0o755
    assert _mode_of(d, "data", "/shared") == 0o2775   # setgid on a directory stays, as the kernel keeps it


def test_a_root_put_keeps_setuid_and_setgid(daemon, workdir):
    src = _setid_tree(workdir / "src")
    daemon.cli("repo", "create", "data")
    daemon.cli("put", "data:/", str(src / "tool"), str(src / "group"), str(src / "shared"))
    assert _mode_of(daemon, "data", "/tool") == 0o4755
    assert _mode_of(daemon, "data", "/group") == 0o2755
    assert _mode_of(daemon, "data", "/shared") == 0o2775


def test_get_restores_setuid_only_when_root_asks(daemon, workdir):
    src = _setid_tree(workdir / "src")
    daemon.cli("repo", "create", "data")
    daemon.cli("put", "data:/", str(src / "tool"), str(src / "group"), str(src / "shared"))
    plain = workdir / "plain"
    daemon.cli("get", "data:/", str(plain))
    assert stat.S_IMODE(os.stat(plain / "tool").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(plain / "group").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(plain / "shared").st_mode) == 0o2775
    kept = workdir / "kept"
    daemon.cli("get", "--preserve-setuid", "data:/", str(kept))
    assert stat.S_IMODE(os.stat(kept / "tool").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(kept / "group").st_mode) == 0o2755
    # the client's keyword, one file
    one = workdir / "one"
    daemon.client().get("data", "/tool", str(one), preserve_setuid=True)
    assert stat.S_IMODE(os.stat(one).st_mode) == 0o4755
    daemon.client().get("data", "/tool", str(workdir / "two"))
    assert stat.S_IMODE(os.stat(workdir / "two").st_mode) == 0o755


def test_pipeline_output_of_a_non_root_datum_drops_setuid(store, workdir):
    """The uid a datum ran as owns its output directory (the runner chowns
    it); a non-root datum's setuid and setgid files lose those bits."""
    out = _setid_tree(workdir / "out")
    os.chown(out, 65534, 65534)
    tree = store_output(store, str(out))
    modes = {e["name"]: e["mode"] for e in _entries(store, tree)}
    assert modes["tool"] == 0o755 and modes["group"] == 0o755
    os.chown(out, 0, 0)
    tree = store_output(store, str(out))
    modes = {e["name"]: e["mode"] for e in _entries(store, tree)}
    assert modes["tool"] == 0o4755 and modes["group"] == 0o2755
    # an explicit owner wins over the directory's
    tree = store_output(store, str(out), owner_uid=1000)
    assert {e["name"]: e["mode"] for e in _entries(store, tree)}["tool"] == 0o755


def _entries(store, tree: str) -> list[dict]:
    from trunkfs.store import walk
    from trunkfs.store.objects import DIR
    return [dict(e, name=p.rsplit("/", 1)[-1]) for p, e in walk.children(store, {"type": DIR, "tree": tree})]


def test_a_pipeline_run_as_nobody_commits_its_setuid_output_without_the_bit(daemon, workdir):
    d = daemon
    d.cli("repo", "create", "raw")
    os.chmod(workdir, 0o755)
    os.chmod(d.socket, 0o666)
    spec = workdir / "suid.json"
    spec.write_text(json.dumps({"name": "suid", "input": {"repo": "raw", "glob": "/"},
                                "transform": {"cmd": ["/bin/sh", "-c",
                                                      'echo x > "$TRUNKFS_OUTPUT/tool"; '
                                                      'chmod 4755 "$TRUNKFS_OUTPUT/tool"']}}))
    os.chmod(spec, 0o644)
    reg = create_pipeline_as(65534, d.socket, spec)
    assert reg.returncode == 0 and json.loads(reg.stdout)["ok"], reg
    src = workdir / "in"
    src.mkdir()
    (src / "x").write_bytes(b"1")
    d.cli("put", "raw:/", str(src / "x"))
    deadline = time.monotonic() + 60
    while True:
        jobs = d.cli("job", "list", "--json").json()
        if jobs and all(j["state"] in ("succeeded", "failed", "cancelled") for j in jobs):
            break
        assert time.monotonic() < deadline, jobs
        time.sleep(0.1)
    assert jobs[-1]["state"] == "succeeded", d.cli("job", "logs", jobs[-1]["id"]).out
    assert _mode_of(d, "suid", "/tool") == 0o755
