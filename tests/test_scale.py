"""A tree of 200,000 files (150 directories of 1,000 and one of 50,000), end to end, with the daemon's peak memory held
under stated bounds: put by the CLI, walked through the mount after a
restart, changed in 1,000 places through the branch view, then status,
commit and diff.  The daemon's caches are set small (16 MiB of decoded
trees, 16 MiB of chunks), so what it holds per file and per inode the
kernel holds is what moves its peak (VmHWM, read from /proc, over each
phase: a restart starts it again).

The bounds leave room for the caches, the daemon's own 50 MiB and about
400 bytes per held inode; a put that kept its entries until the commit
(about 1.5 KB per file, as before ``store.puttree``) or inodes that kept
their entries (about 1.1 KB each) go past them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import Daemon

FILES, DIRS, WIDE, CHANGES = 200_000, 150, 50_000, 1_000
PER_DIR = (FILES - WIDE) // DIRS   # and one directory of WIDE files
# measured here: 132, 148 and 166 MiB
PUT_PEAK_MIB = 170     # the put: entries written to trees as they come, a few directories held
WALK_PEAK_MIB = 190    # the walk: about 300 bytes per held inode, the tree cache at its limit
CHANGE_PEAK_MIB = 210  # the changes, status, commit and diff with the tree held


def make_tree(root: Path) -> None:
    for i in range(DIRS):
        d = root / f"d{i:03d}"
        d.mkdir(parents=True)
        for j in range(PER_DIR):
            fd = os.open(d / f"f{j:04d}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, b'{"i":%d,"j":%d}\n' % (i, j))
            os.close(fd)
    (root / "wide").mkdir()
    for j in range(WIDE):
        os.close(os.open(root / "wide" / f"w{j:06d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


def peak_mib(d: Daemon) -> float:
    return d.vm_kib("VmHWM") / 1024


def test_two_hundred_thousand_files_with_flat_memory(daemon_factory, workdir: Path) -> None:
    src = workdir / "data"
    make_tree(src)
    d = daemon_factory(mount=True, extra=["--tree-cache", "16M", "--cache-memory", "16M"])
    d.cli("repo", "create", "big")
    first = d.cli("put", "big", str(src)).out.strip()
    put_peak = peak_mib(d)
    assert put_peak < PUT_PEAK_MIB, f"the put of {FILES} files peaked at {put_peak:.0f} MiB"

    d.stop()
    d.start()
    # -links: find stats every name, so the listings turn to whole entries
    # after the first directories and the kernel holds an inode per file
    found = subprocess.run(["find", str(d.mount / f"big@{first}"), "-links", "+0"], check=True,
                           capture_output=True).stdout.splitlines()
    assert len(found) == FILES + DIRS + 3            # the view root, /data, its dirs and files
    assert sum(1 for p in found if p.endswith(b".json")) == FILES - WIDE
    trees = d.cli("stats", "--json").json()["tree_cache"]     # the limit set, and kept
    assert trees["bytes_limit"] == 16 << 20 and trees["bytes"] > 0, trees
    assert trees["bytes"] <= 16 << 20 or trees["trees"] == 1, trees   # (one tree larger than it stays)
    walk_peak = peak_mib(d)
    assert walk_peak < WALK_PEAK_MIB, f"walking {FILES} files through the mount peaked at {walk_peak:.0f} MiB"
    sample = d.mount / f"big@{first}" / "data" / "d123" / "f0456.json"
    assert sample.read_bytes() == b'{"i":123,"j":456}\n'
    # the wide directory, read a page at a time from its tree, in the branch view too
    names = os.listdir(d.mount / "big" / "data" / "wide")
    assert len(names) == WIDE and len(set(names)) == WIDE
    ls = subprocess.run(["ls", "-f", str(d.mount / "big" / "data" / "wide")], check=True, capture_output=True)
    assert len(ls.stdout.split()) == WIDE + 2        # with . and ..

    step = (FILES - WIDE) // CHANGES
    changed = []
    for k in range(CHANGES):
        n = k * step + k % 7                             # spread over every directory
        rel = f"data/d{n // PER_DIR:03d}/f{n % PER_DIR:04d}.json"
        with open(d.mount / "big" / rel, "ab") as f:
            f.write(b"changed\n")
        changed.append(f"M /{rel}")
    status = d.cli("status", "big").out.splitlines()
    assert sorted(status) == sorted(changed)
    second = d.cli("commit", "big", "-m", "changes").out.strip()
    diff = d.cli("diff", f"big@{first}", f"big@{second}").out.splitlines()
    assert sorted(diff) == sorted(changed)
    assert (d.mount / f"big@{second}" / "data" / "d123" / "f0456.json").read_bytes().endswith(b"\n")
    n = CHANGES // 2 * step + CHANGES // 2 % 7
    assert (d.mount / f"big@{second}" / "data" / f"d{n // PER_DIR:03d}" / f"f{n % PER_DIR:04d}.json"
            ).read_bytes().endswith(b"changed\n")
    change_peak = peak_mib(d)
    assert change_peak < CHANGE_PEAK_MIB, f"the changes, status, commit and diff peaked at {change_peak:.0f} MiB"
