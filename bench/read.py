#!/usr/bin/env python3
"""Read benchmark for the trunkfs mount, against the native filesystem and
bindfs (a C FUSE passthrough: the floor of FUSE overhead) in the same run.

It makes its own data in one temporary directory, commits it to a trunkfs
store on the same disk, mounts it, and reads the same bytes three ways. Each
``*_ratio_*`` is trunkfs's speed divided by the other's speed on the same
work (higher is better). Progress goes to stderr; the table and, as the last
line, ``RESULT key=value ...`` go to stdout.

  hot_ratio_native   1 GiB committed file, sequential read, page cache full,
                     against native with its page cache full
  cold_ratio_native  the same read with every cache dropped (drop_caches and
                     an empty chunk cache), against a cold native read
  warm_ratio_bindfs  chunk cache full, kernel caches dropped, against a cold
                     read through bindfs
  meta_ratio_bindfs  `ls -lR` + `find` over 50,000 files in 500 directories
                     (kernel caches dropped before each), against bindfs
  readers_mbps       8 processes reading different 128 MiB files at once, cold
  daemon_rss_mib     the daemon's peak RSS (VmHWM) up to the end of the metadata walk

Needs root (FUSE, drop_caches). Installs bindfs with apt-get if missing.

Usage: python bench/read.py [--quick] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import Bindfs, bench_daemon, cleanup, drop_caches, log, make_random, need_root, peak_rss_mib

MiB = 1 << 20
GiB = 1 << 30


def read_file(path: Path, block: int = 1 * MiB) -> int:
    """Read sequentially into one reused buffer (as dd does)."""
    buf = bytearray(block)
    n = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            got = f.readinto(buf)
            if not got:
                return n
            n += got


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def walk(root: Path) -> None:
    subprocess.run(["ls", "-lR", str(root)], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["find", str(root)], check=True, stdout=subprocess.DEVNULL)


def parallel_read(paths: list[Path]) -> float:
    t = time.perf_counter()
    procs = [subprocess.Popen(["dd", f"if={p}", "of=/dev/null", "bs=1M", "status=none"]) for p in paths]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"dd failed on {p.args}")
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="sizes / 16, a smoke test")
    ap.add_argument("--workdir", default=None, help="make the temp dir inside this directory")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    need_root("read.py", bindfs=True)
    scale = 16 if args.quick else 1
    big_size = GiB // scale
    n_dirs, n_per_dir = 500 // (4 if args.quick else 1), 100
    reader_size = 128 * MiB // scale

    tmp = Path(tempfile.mkdtemp(prefix="trunkfs-bench-read-", dir=args.workdir))
    d = bench_daemon(tmp, mount=True)
    rows = []
    result: dict[str, str] = {}
    try:
        src = tmp / "src"
        log(f"making data in {src}")
        (src / "big").mkdir(parents=True)
        make_random(src / "big" / "file.bin", big_size)
        for i in range(8):
            (src / "readers").mkdir(exist_ok=True)
            make_random(src / "readers" / f"r{i}.bin", reader_size)
        meta = src / "meta"
        for i in range(n_dirs):
            dd = meta / f"d{i:03d}"
            dd.mkdir(parents=True)
            for j in range(n_per_dir):
                (dd / f"f{j:03d}.txt").write_bytes(b"%d\n" % j)
        n_files = n_dirs * n_per_dir
        d.start()
        d.cli("repo", "create", "bench")
        log("committing the data")
        commit = d.cli("put", "bench", str(src / "big"), str(src / "readers"), str(src / "meta")).out.strip()
        mnt_file = d.mount / f"bench@{commit}" / "big" / "file.bin"  # the committed file

        # hot: page cache full on both sides; the best of three reads each
        read_file(src / "big" / "file.bin")
        native_hot = min(timed(read_file, src / "big" / "file.bin") for _ in range(3))
        read_file(mnt_file)
        trunk_hot = min(timed(read_file, mnt_file) for _ in range(3))
        rows.append(("hot read 1 GiB", big_size / native_hot / 1e6, None, big_size / trunk_hot / 1e6))

        # cold: restart the daemon with an empty chunk cache, drop kernel caches
        d.stop()
        shutil.rmtree(d.state / "cache", ignore_errors=True)
        d.start()
        drop_caches()
        native_cold = timed(read_file, src / "big" / "file.bin")
        drop_caches()
        trunk_cold = timed(read_file, mnt_file)
        # warm: chunk cache full (it is now), kernel caches dropped
        drop_caches()
        trunk_warm = timed(read_file, mnt_file)
        with Bindfs(src, tmp / "bindfs") as bmnt:
            drop_caches()
            bindfs_cold = timed(read_file, bmnt / "big" / "file.bin")
            drop_caches()
            bindfs_meta = timed(walk, bmnt / "meta")
        rows.append(("cold read 1 GiB", big_size / native_cold / 1e6, big_size / bindfs_cold / 1e6,
                     big_size / trunk_cold / 1e6))
        rows.append(("warm read (chunk cache full)", None, big_size / bindfs_cold / 1e6,
                     big_size / trunk_warm / 1e6))
        drop_caches()
        native_meta = timed(walk, meta)
        drop_caches()
        trunk_meta = timed(walk, d.mount / "bench" / "meta")
        rss = peak_rss_mib(d)
        rows.append((f"ls -lR + find, {n_files} files (s)", native_meta, bindfs_meta, trunk_meta))

        # 8 parallel readers, cold
        d.stop()
        shutil.rmtree(d.state / "cache", ignore_errors=True)
        d.start()
        drop_caches()
        par = parallel_read([d.mount / "bench" / "readers" / f"r{i}.bin" for i in range(8)])
        readers_mbps = 8 * reader_size / par / 1e6
        rows.append(("8 readers x 128 MiB, cold (MB/s total)", None, None, readers_mbps))

        result = {
            "hot_ratio_native": f"{native_hot / trunk_hot:.2f}",
            "cold_ratio_native": f"{native_cold / trunk_cold:.2f}",
            "warm_ratio_bindfs": f"{bindfs_cold / trunk_warm:.2f}",
            "meta_ratio_bindfs": f"{bindfs_meta / trunk_meta:.2f}",
            "readers_mbps": f"{readers_mbps:.0f}",
            "daemon_rss_mib": f"{rss:.0f}",
        }
    finally:
        d.stop()
        cleanup(tmp, args.keep)

    print(f"{'work':<42} {'native':>10} {'bindfs':>10} {'trunkfs':>10}   (MB/s unless noted)")
    for name, native, bindfs, trunk in rows:
        cell = lambda v: f"{v:10.2f}" if isinstance(v, float) and v < 100 else (f"{v:10.0f}" if v else f"{'-':>10}")
        print(f"{name:<42} {cell(native)} {cell(bindfs)} {cell(trunk)}")
    targets = {"hot_ratio_native": 0.8, "cold_ratio_native": 0.4, "warm_ratio_bindfs": 0.5,
               "meta_ratio_bindfs": 0.33}
    for key, target in targets.items():
        ok = float(result[key]) >= target
        print(f"{key:<20} {result[key]:>8}   target >= {target}  {'ok' if ok else 'MISSED'}")
    print(f"{'daemon_rss_mib':<20} {result['daemon_rss_mib']:>8}   target <= 250  "
          f"{'ok' if float(result['daemon_rss_mib']) <= 250 else 'MISSED'}")
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
