#!/usr/bin/env python3
"""Scale benchmark: a million small files, and the daemon's memory with them.

It makes 1,000,000 files of a few bytes in 1,000 directories once (in its
temp dir), then, against one trunkfs daemon on a local store:

  million_put_files_per_s    ``trunkfs put`` of the whole tree, files per second
  million_put_peak_rss_mib   the daemon's peak RSS (VmHWM) from its start to
                             the end of the put
  million_find_ratio_bindfs  after a restart and with the kernel's caches
                             dropped, ``find`` over the committed tree in the
                             mount, against ``find`` through bindfs over the
                             same source tree (bindfs seconds / trunkfs
                             seconds: higher is better)
  million_walk_rss_mib       the daemon's peak RSS (VmHWM) from the restart to
                             the end of the walk (the kernel still holds every
                             inode it looked up)
  million_statwalk_rss_mib   the same after another restart, for
                             ``find -links +0``, which stats every name: the
                             listings send whole entries and the kernel holds
                             an inode per file (no target; what an ``ls -l``,
                             ``du`` or ``rsync`` of the tree costs)
  million_diff_s             ``trunkfs diff`` of a commit that changed
                             10,000 of the files (written through the branch
                             view, then ``trunkfs commit``) against the one
                             before, its output read to the end
  stage_files_per_s          in a fresh daemon, ``cp -r`` of the first
                             ``--stage`` files (whole directories) into a new
                             directory of the branch view
  stage_peak_rss_mib         its peak RSS over that copy (the kernel holds an
                             inode, and so a staged node, per file it made)
  stage_restart_rss_mib      its RSS after a restart over the staged files
                             (staged nodes are paged from the journal)
  stage_commit_s             ``trunkfs commit`` of them, and
  stage_commit_peak_rss_mib  the peak RSS from the restart to its end

Targets (issue 15): put peak <= 400 MiB, walk peak <= 400 MiB, find ratio
>= 0.5, diff < 5 s.  Needs root (FUSE, drop_caches) and bindfs.  Progress
goes to stderr; the table and, as the last line, ``RESULT key=value ...`` go
to stdout.

Usage: python bench/scale.py [--files N] [--dirs N] [--changes N] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import TRUNKFS, Bindfs, DaemonProcess, bench_daemon, cleanup, drop_caches, log, need_root, peak_rss_mib


def make_tree(src: Path, files: int, dirs: int) -> None:
    """``files`` files of a few bytes each, spread over ``dirs`` directories."""
    per_dir = -(-files // dirs)
    made = 0
    for i in range(dirs):
        d = src / f"d{i:04d}"
        d.mkdir(parents=True)
        for j in range(min(per_dir, files - made)):
            with open(d / f"f{j:05d}.json", "wb") as f:
                f.write(b'{"i":%d,"j":%d}\n' % (i, j))
        made += min(per_dir, files - made)


def timed_find(root: Path) -> tuple[float, int]:
    """Seconds of ``find root`` with cold kernel caches, and how many names it printed."""
    drop_caches()
    t = time.perf_counter()
    out = subprocess.run(["find", str(root)], check=True, capture_output=True).stdout
    return time.perf_counter() - t, out.count(b"\n")


def stage(d: DaemonProcess, src: Path, files: int, per_dir: int, r: dict[str, float]) -> None:
    """``cp -r`` of whole source directories (``files`` in all) into the
    branch view, a restart, and their commit, each in a fresh daemon."""
    d.stop()
    d.start()
    dest = d.mount / "scale" / "staged"
    dest.mkdir()
    dirs = sorted(p for p in src.iterdir() if p.is_dir())[:max(1, files // per_dir)]
    copied = sum(1 for p in dirs for _ in p.iterdir())
    log(f"cp -r of {copied} files in {len(dirs)} directories into the branch view")
    t = time.perf_counter()
    subprocess.run(["cp", "-r", *map(str, dirs), str(dest)], check=True)
    os.sync()
    r["stage_files_per_s"] = copied / (time.perf_counter() - t)
    r["stage_peak_rss_mib"] = peak_rss_mib(d)
    d.stop()
    d.start()
    r["stage_restart_rss_mib"] = d.vm_kib("VmRSS") / 1024
    t = time.perf_counter()
    out = d.cli("commit", "scale", "-m", "staged", "--json").json()
    r["stage_commit_s"] = time.perf_counter() - t
    r["stage_commit_peak_rss_mib"] = peak_rss_mib(d)
    log(f"staged {copied} files at {r['stage_files_per_s']:.0f}/s, peak {r['stage_peak_rss_mib']:.0f} MiB; "
        f"after a restart {r['stage_restart_rss_mib']:.0f} MiB; commit {r['stage_commit_s']:.1f} s, "
        f"peak {r['stage_commit_peak_rss_mib']:.0f} MiB")
    listed = sum(1 for _ in (d.mount / f"scale@{out['commit']}" / "staged" / dirs[0].name).iterdir())
    if listed != sum(1 for _ in dirs[0].iterdir()):
        raise SystemExit(f"the commit lists {listed} files in staged/{dirs[0].name}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--dirs", type=int, default=1_000)
    ap.add_argument("--changes", type=int, default=10_000)
    ap.add_argument("--tree", default=None,
                    help="the source tree: made there if missing, kept (to run again without making it)")
    ap.add_argument("--stage", type=int, default=100_000,
                    help="files copied into the branch view for the stage_* figures (0: skip)")
    ap.add_argument("--workdir", default=None, help="make the temp dir inside this directory")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    need_root("scale.py", bindfs=True)

    tmp = Path(tempfile.mkdtemp(prefix="trunkfs-bench-scale-", dir=args.workdir))
    d = bench_daemon(tmp, mount=True)
    r: dict[str, float] = {}
    try:
        src = Path(args.tree) if args.tree else tmp / "src"
        if not (src / "done").exists():
            log(f"making {args.files} files in {args.dirs} directories under {src}")
            shutil.rmtree(src, ignore_errors=True)
            make_tree(src / "data", args.files, args.dirs)
            (src / "done").touch()
        src = src / "data"

        d.start()
        d.cli("repo", "create", "scale")
        log("trunkfs put of the tree")
        os.sync()
        t = time.perf_counter()
        first = d.cli("put", "scale", str(src)).out.strip()
        put_s = time.perf_counter() - t
        r["million_put_files_per_s"] = args.files / put_s
        r["million_put_peak_rss_mib"] = peak_rss_mib(d)
        log(f"put: {put_s:.1f} s, peak {r['million_put_peak_rss_mib']:.0f} MiB")

        d.stop()
        d.start()
        start_rss = d.vm_kib("VmRSS") / 1024
        view = d.mount / f"scale@{first}"
        trunk_s, trunk_n = timed_find(view)
        r["million_walk_rss_mib"] = peak_rss_mib(d)
        walk_now = d.vm_kib("VmRSS") / 1024
        log(f"find through trunkfs: {trunk_s:.1f} s, {trunk_n} names; RSS {start_rss:.0f} -> "
            f"{walk_now:.0f} MiB, peak {r['million_walk_rss_mib']:.0f} MiB")
        with Bindfs(src, tmp / "bindfs") as bind:
            bind_s, bind_n = timed_find(bind)
        log(f"find through bindfs: {bind_s:.1f} s, {bind_n} names")
        if bind_n + 1 != trunk_n:    # trunkfs's view root holds src/ itself
            raise SystemExit(f"find saw {trunk_n} names through trunkfs, {bind_n} through bindfs")
        r["million_find_ratio_bindfs"] = bind_s / trunk_s

        # a walk that stats every name (ls -l, du, rsync): the listings turn
        # to whole entries and the kernel holds an inode per file
        d.stop()
        d.start()
        drop_caches()
        t = time.perf_counter()
        stat_n = subprocess.run(["find", str(view), "-links", "+0"], check=True,
                                capture_output=True).stdout.count(b"\n")
        stat_s = time.perf_counter() - t
        r["million_statwalk_rss_mib"] = peak_rss_mib(d)
        log(f"find -links +0 (a stat per name) through trunkfs: {stat_s:.1f} s, {stat_n} names, "
            f"peak {r['million_statwalk_rss_mib']:.0f} MiB")
        if stat_n != trunk_n:
            raise SystemExit(f"find -links +0 saw {stat_n} names, find {trunk_n}")

        log(f"changing {args.changes} files through the branch view")
        branch = d.mount / "scale" / "data"
        per_dir = -(-args.files // args.dirs)
        step = max(1, args.files // args.changes)
        for k in range(args.changes):
            n = (k * step) % args.files
            with open(branch / f"d{n // per_dir:04d}" / f"f{n % per_dir:05d}.json", "ab") as f:
                f.write(b"changed\n")
        second = d.cli("commit", "scale", "-m", "changes").out.strip().split()[-1]
        t = time.perf_counter()
        diff = subprocess.run([*TRUNKFS, "diff", f"scale@{first}", f"scale@{second}"], env=d.env,
                              check=True, capture_output=True).stdout
        r["million_diff_s"] = time.perf_counter() - t
        changed = diff.count(b"\n")
        log(f"diff: {r['million_diff_s']:.2f} s, {changed} lines")
        if changed != args.changes:
            raise SystemExit(f"diff printed {changed} lines, {args.changes} files were changed")
        r["daemon_peak_rss_mib"] = peak_rss_mib(d)
        if args.stage:
            stage(d, src, min(args.stage, args.files), per_dir, r)
    finally:
        d.stop()
        cleanup(tmp, args.keep)

    print(f"{'figure':28} {'value':>10}  target")
    targets = {"million_put_peak_rss_mib": "<= 400", "million_walk_rss_mib": "<= 400",
               "million_find_ratio_bindfs": ">= 0.5", "million_diff_s": "< 5"}
    for k, v in r.items():
        print(f"{k:28} {v:10.2f}  {targets.get(k, '')}")
    print("RESULT " + " ".join(f"{k}={v:.2f}" for k, v in r.items())
          + f" files={args.files} dirs={args.dirs} changes={args.changes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
