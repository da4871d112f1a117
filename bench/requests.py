#!/usr/bin/env python3
"""What one FUSE request costs, and how many a small file takes: trunkfs
against the native file system, bindfs (libfuse in C) and a minimal pyfuse3
file system (bench/minfuse.py: pyfuse3 and trio with nothing of trunkfs),
all in the same run.

A `tar x` of small files is a string of requests, each waited for by tar,
so what it costs is requests per file times the time of one. This bench
measures both, to tell trunkfs's own cost from the binding's:

  request_us_*          a loop of getxattr(2) of a missing user.* name on one
                        file (no cache in the kernel keeps its answer: one
                        request each), best of --repeat rounds, microseconds
                        per call, for native, bindfs, pyfuse3 (minimal) and
                        trunkfs (a file in a branch view)
  request_ratio_bindfs  bindfs's time / trunkfs's (higher is better)
  request_us_trunkfs_stock, untar_us_per_file_trunkfs_stock
                        the same through a daemon run with --request-loop
                        stock (pyfuse3's own read lock, not the lean one of
                        mountfs/fuseloop.py), side by side with the other:
                        the two take turns, round by round
  lean_gain             request_us_trunkfs_stock / request_us_trunkfs
  pyfuse3_share         the minimal pyfuse3 file system's time / trunkfs's:
                        how much of a trunkfs request is the binding's floor
  requests_per_file     FUSE requests the daemon answered (its /metrics) for
                        a `tar x` of --files small files into a branch view,
                        per file; the busiest ones are printed
  untar_us_per_file_*   that `tar x` (and a sync), microseconds per file,
                        through trunkfs (best of two) and through bindfs
  handler_us_per_file   the time trunkfs's handlers took (the sum of the
                        /metrics latencies) during that `tar x`, per file
  handler_share         handler_us_per_file / that run's time per file: what
                        is trunkfs's own; the rest is the kernel's round
                        trips, pyfuse3 and trio, and tar itself
  inprocess_us_per_file the same twelve requests a file, in the order the
                        kernel sends them, called straight on the daemon's
                        TrunkOperations in this process (no kernel, no
                        pyfuse3): the handlers' CPU alone, best of --repeat

Needs root (FUSE mounts). bindfs comes with `./setup.sh test`. The temp
dir is removed at the end (unless --keep); every mount made under it is
unmounted, the daemon stopped by its pid.

Usage: python bench/requests.py [--calls N] [--repeat N] [--files N]
                               [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pyfuse3
import trio

from benchlib import Bindfs, bench_daemon, cleanup, free_port, log, need_root, unmount

MISSING = b"user.trunkfs-bench-missing"


def request_us(path: Path, calls: int, repeat: int) -> float:
    """Microseconds per getxattr of a missing name on ``path``, best round."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            try:
                os.getxattr(path, MISSING)
            except OSError:
                pass
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def wait_for(path: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} did not appear")
        time.sleep(0.05)


def fuse_figures(port: int) -> tuple[dict[str, float], float]:
    """The daemon's count of answered FUSE requests, by operation, and the
    seconds its handlers took for them all."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    counts: dict[str, float] = {}
    seconds = 0.0
    for line in text.splitlines():
        if line.startswith("trunkfs_fuse_operation_seconds_count{"):
            op = line.split('op="', 1)[1].split('"', 1)[0]
            counts[op] = float(line.rsplit(None, 1)[1])
        elif line.startswith("trunkfs_fuse_operation_seconds_sum{"):
            seconds += float(line.rsplit(None, 1)[1])
    return counts, seconds


def untar_seconds(archive: Path, dest: Path) -> float:
    """``tar x`` of ``archive`` into the new directory ``dest``, and a sync of
    what the kernel still holds dirty there."""
    dest.mkdir()
    start = time.perf_counter()
    subprocess.run(["tar", "xf", str(archive), "-C", str(dest)], check=True)
    subprocess.run(["sync", "-f", str(dest)], check=True)
    return time.perf_counter() - start


def small_files_tar(path: Path, files: int) -> None:
    rng = random.Random(7)
    with tarfile.open(path, "w") as tar:
        for i in range(files):
            data = rng.randbytes(rng.randint(1024, 4096))
            info = tarfile.TarInfo(f"tree/d{i % 20:02d}/f{i:05d}.bin")
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))


class _Ctx:
    """A request context as pyfuse3 passes it (root, as tar runs here)."""

    def __init__(self) -> None:
        self.uid, self.gid, self.pid, self.umask = 0, 0, os.getpid(), 0o022


def _fields(**changed: bool) -> SimpleNamespace:
    base = dict(update_size=False, update_mode=False, update_uid=False, update_gid=False,
                update_mtime=False, update_atime=False, update_ctime=False)
    return SimpleNamespace(**{**base, **changed})


def inprocess_us(state: Path, files: int, repeat: int) -> float:
    """Microseconds per file of tar x's twelve requests called on a
    TrunkOperations over a store in ``state`` (best of ``repeat`` rounds)."""
    from trunkfs.cache.chunkcache import ChunkCache
    from trunkfs.daemon.config import Config
    from trunkfs.daemon.main import open_store
    from trunkfs.daemon.wiring import build_service
    from trunkfs.mountfs.inodes import ROOT_INODE
    from trunkfs.mountfs.operations import TrunkOperations

    ctx = _Ctx()
    data = random.Random(3).randbytes(2000)
    times = {"kernel": _fields(update_mtime=True, update_ctime=True), "tar": _fields(update_mtime=True),
             "owner": _fields(update_uid=True, update_gid=True), "mode": _fields(update_mode=True)}

    async def no_capability(ops: TrunkOperations, ino: int) -> None:
        try:
            await ops.getxattr(ino, b"security.capability", ctx)
        except pyfuse3.FUSEError:
            pass

    async def one_file(ops: TrunkOperations, dino: int, name: bytes) -> None:
        await ops.getattr(dino, ctx)                                # the directory, for the lookup
        if (await ops.lookup(dino, name, ctx)).st_ino != 0:
            raise SystemExit(f"{name!r} exists already")
        fi, attr = await ops.create(dino, name, stat.S_IFREG | 0o600, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ctx)
        ino, new = attr.st_ino, pyfuse3.EntryAttributes()
        await no_capability(ops, ino)                               # write(2)
        await ops.write(fi.fh, 0, data)
        new.st_mtime_ns = new.st_ctime_ns = time.time_ns()          # futimens(2)
        await ops.setattr(ino, new, times["kernel"], fi.fh, ctx)
        new.st_mtime_ns = 1_700_000_000 * 10**9
        await ops.setattr(ino, new, times["tar"], fi.fh, ctx)
        await no_capability(ops, ino)                               # fchown(2)
        await ops.getattr(ino, ctx)
        new.st_uid = new.st_gid = 0
        await ops.setattr(ino, new, times["owner"], fi.fh, ctx)
        new.st_mode = stat.S_IFREG | 0o644
        await ops.setattr(ino, new, times["mode"], fi.fh, ctx)   # fchmod(2)
        await ops.release(fi.fh)                                    # close(2)

    async def run() -> float:
        config = Config(state=str(state / "state"))
        store = open_store(config)
        service = await build_service(config, store, None)
        cache = ChunkCache(store, str(state / "cache"), 0)
        cache.open()
        best = float("inf")
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(cache.run)
                ops = TrunkOperations(store, service.refs, service.heads, service.workers.run, cache,
                                      service.staging, uid=0, gid=0)
                await service.workers.run(service.refs.create_repo, "r", 0)
                repo = await ops.lookup(ROOT_INODE, b"r", ctx)
                for round_ in range(repeat):
                    made = await ops.mkdir(repo.st_ino, b"run%d" % round_, stat.S_IFDIR | 0o755, ctx)
                    start = time.perf_counter()
                    for i in range(files):
                        await one_file(ops, made.st_ino, b"f%06d" % i)
                    best = min(best, (time.perf_counter() - start) / files * 1e6)
                nursery.cancel_scope.cancel()
        finally:
            cache.close()
            service.staging.close()
            store.close()
        return best

    return trio.run(run)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--files", type=int, default=2_000)
    ap.add_argument("--workdir", default="/var/tmp")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    need_root("requests.py", bindfs=True)
    tmp = Path(tempfile.mkdtemp(prefix="trunkfs-bench-requests-", dir=args.workdir))
    port = free_port()
    d = bench_daemon(tmp / "daemon", mount=True)
    d.extra += ["--http", f"127.0.0.1:{port}"]
    stock = bench_daemon(tmp / "stock", mount=True)
    stock.extra += ["--request-loop", "stock"]
    minimal = tmp / "minfuse"
    minimal.mkdir()
    served: subprocess.Popen | None = None
    us: dict[str, float] = {}
    try:
        native = tmp / "native"
        native.mkdir()
        (native / "f").write_bytes(b"x")
        inprocess = inprocess_us(tmp / "inprocess", args.files, args.repeat)
        log(f"in process: {inprocess:.0f} us of handlers a file")
        us["native"] = request_us(native / "f", args.calls, args.repeat)
        log(f"native: {us['native']:.1f} us")
        archive = tmp / "small.tar"
        small_files_tar(archive, args.files)
        with Bindfs(native, tmp / "bindfs") as mnt:
            us["bindfs"] = request_us(mnt / "f", args.calls, args.repeat)
            untar_bindfs = untar_seconds(archive, mnt / "untar")
        log(f"bindfs: {us['bindfs']:.1f} us; tar x of {args.files} files: {untar_bindfs:.2f} s")
        served = subprocess.Popen([sys.executable, str(Path(__file__).with_name("minfuse.py")), str(minimal)])
        wait_for(minimal / "f")
        us["pyfuse3"] = request_us(minimal / "f", args.calls, args.repeat)
        log(f"minimal pyfuse3: {us['pyfuse3']:.1f} us")
        unmount(minimal)
        served.wait(timeout=20)
        served = None

        # the two daemons run side by side and take turns, so that a change in
        # the machine's speed (this VM's varies by minutes) weighs on both alike
        branches = {}
        for daemon, name in ((d, "trunkfs"), (stock, "trunkfs_stock")):
            daemon.start()
            daemon.cli("repo", "create", "r")
            branches[name] = daemon.mount / "r"
            (branches[name] / "f").write_bytes(b"x")
        best: dict[str, float] = {}
        for _ in range(args.repeat):
            for name, branch in branches.items():
                best[name] = min(best.get(name, float("inf")), request_us(branch / "f", args.calls, 1))
        us.update(best)
        log(f"trunkfs: {us['trunkfs']:.1f} us; with pyfuse3's own loop: {us['trunkfs_stock']:.1f} us")

        untars: dict[str, float] = {}
        for round_ in range(2):
            for name, branch in branches.items():
                figures_before = fuse_figures(port) if name == "trunkfs" else None
                took = untar_seconds(archive, branch / f"untar{round_}")
                untars[name] = min(untars.get(name, float("inf")), took)
                if figures_before is not None and round_ == 0:
                    time.sleep(0.5)   # RELEASE is sent in the background
                    before, handled_before = figures_before
                    after, handled_after = fuse_figures(port)
                    per_op = {op: (after[op] - before.get(op, 0)) / args.files for op in after}
                    per_file = sum(per_op.values())
                    handler_us = (handled_after - handled_before) / args.files * 1e6
                    handler_seconds = took
        seconds, seconds_stock = untars["trunkfs"], untars["trunkfs_stock"]
        log(f"tar x of {args.files} files: {seconds:.2f} s (pyfuse3's own loop: {seconds_stock:.2f} s), "
            f"{per_file:.1f} requests and {handler_us:.0f} us of handlers a file")
    finally:
        if served is not None:
            unmount(minimal)
            served.wait(timeout=20)
        d.stop()
        stock.stop()
        cleanup(tmp, args.keep)

    print(f"{'file system':<28}{'us per request':>16}")
    for name, label in (("native", "native (ext4, no FUSE)"), ("bindfs", "bindfs (libfuse, C)"),
                        ("pyfuse3", "minimal pyfuse3 + trio"), ("trunkfs", "trunkfs branch view"),
                        ("trunkfs_stock", "the same, pyfuse3's loop")):
        print(f"{label:<28}{us[name]:>16.1f}")
    print(f"tar x, us per small file: trunkfs {seconds / args.files * 1e6:.0f} (its handlers {handler_us:.0f}; "
          f"in process {inprocess:.0f}), bindfs {untar_bindfs / args.files * 1e6:.0f}")
    print(f"requests per small file in tar x: {per_file:.2f} ("
          + ", ".join(f"{op} {n:.2f}" for op, n in sorted(per_op.items(), key=lambda kv: -kv[1]) if n >= 0.01)
          + ")")
    figures = {
        "request_us_native": us["native"], "request_us_bindfs": us["bindfs"],
        "request_us_pyfuse3": us["pyfuse3"], "request_us_trunkfs": us["trunkfs"],
        "request_ratio_bindfs": us["bindfs"] / us["trunkfs"],
        "pyfuse3_share": us["pyfuse3"] / us["trunkfs"],
        "requests_per_file": per_file,
        "untar_us_per_file_trunkfs": seconds / args.files * 1e6,
        "untar_us_per_file_bindfs": untar_bindfs / args.files * 1e6,
        "handler_us_per_file": handler_us,
        "handler_share": handler_us / (handler_seconds / args.files * 1e6),
        "inprocess_us_per_file": inprocess,
        "request_us_trunkfs_stock": us["trunkfs_stock"],
        "untar_us_per_file_trunkfs_stock": seconds_stock / args.files * 1e6,
        "lean_gain": us["trunkfs_stock"] / us["trunkfs"],
    }
    print("RESULT " + " ".join(f"{k}={v:.2f}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
