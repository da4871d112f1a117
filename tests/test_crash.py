"""SIGKILL of the daemon at many moments of a large put: the branch is at its
old or its new commit, fsck is clean, and a retried put succeeds."""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest


def make_tree(root, seed: int) -> None:
    rng = random.Random(seed)
    (root / "many").mkdir(parents=True)
    for i in range(300):
        (root / "many" / f"f{i:04d}").write_bytes(rng.randbytes(rng.randint(100, 20_000)))
    for i in range(3):
        (root / f"big{i}.bin").write_bytes(rng.randbytes(12 * 1024 * 1024))


@pytest.mark.allow_warnings  # a killed daemon leaves temp files that the restart reports
def test_sigkill_at_many_points_of_a_put(daemon_factory, workdir):
    config = workdir / "small-packs.toml"
    config.write_text("pack_size_mib = 2\n")
    d = daemon_factory(extra=["--config", str(config)])
    d.cli("repo", "create", "r")
    base = workdir / "base"
    base.mkdir()
    (base / "keep.txt").write_bytes(b"committed before the crash")
    old = d.cli("put", "r", str(base / "keep.txt")).out.strip()

    data = workdir / "data"
    make_tree(data, 1)
    # one undisturbed put (on another branch) tells how long a put takes
    d.cli("branch", "create", "r@timing")
    t0 = time.monotonic()
    d.cli("put", "r@timing", str(data))
    duration = time.monotonic() - t0
    d.cli("branch", "delete", "r@timing")

    outcomes = []
    for i, frac in enumerate([0.02, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97, 1.05]):
        make_tree(workdir / f"data{i}", 100 + i)  # new content each round: nothing dedups away
        src = workdir / f"data{i}"
        proc = subprocess.Popen([sys.executable, "-m", "trunkfs.daemon.cli", "put", "r", str(src)],
                                env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(duration * frac)
        d.proc.kill()
        d.proc.wait()
        out, _ = proc.communicate(timeout=60)
        d.kill()
        d.start()
        head = d.cli("log", "r", "-n", "1", "--json").json()[0]["id"]
        assert head in (old, out.decode().strip()) or proc.returncode != 0
        report = d.cli("fsck", "--read-data", "--json", check=False).json()
        assert report["ok"], report["problems"]
        assert d.cli("cat", "r:/keep.txt").stdout == b"committed before the crash"
        moved = head != old
        outcomes.append(moved)
        if moved:  # the put completed before the kill: its content is all there
            assert d.cli("cat", f"r:/data{i}/big0.bin").stdout == (src / "big0.bin").read_bytes()
        # the retried put succeeds and holds the right bytes
        old = d.cli("put", "r", str(src)).out.strip()
        assert d.cli("cat", f"r:/data{i}/big2.bin").stdout == (src / "big2.bin").read_bytes()
        assert d.cli("cat", f"r:/data{i}/many/f0123").stdout == (src / "many" / "f0123").read_bytes()
    # the kills landed both before and after the commit point
    assert not outcomes[0]
    assert d.cli("fsck", "--read-data", "--json").json()["ok"]
