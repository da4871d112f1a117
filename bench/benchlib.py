"""What the benches (read.py, pipeline.py, write.py, ingest.py) share: progress
lines, the daemon harness of the test suite (tests/harness.py: one trunkfs
daemon started and stopped by pid in a temporary directory), and a clean-up
that never deletes through a mount left behind."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout: tests.harness
from tests.harness import TRUNKFS, DaemonProcess  # noqa: E402

T0 = time.perf_counter()
MiB = 1 << 20
__all__ = ["TRUNKFS", "DaemonProcess", "bench_daemon", "peak_rss_mib", "log", "cleanup",
           "make_random", "unmount", "mounts_under", "BenchError", "run", "timed", "drop_caches",
           "Bindfs", "need_root", "free_port"]


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (deepest first), from /proc/self/mounts."""
    root = os.path.realpath(path)
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            mnt = line.split()[1].replace("\\040", " ")
            if mnt == root or mnt.startswith(root + "/"):
                found.append(mnt)
    return sorted(found, key=len, reverse=True)


def unmount(path: Path | str) -> None:
    """Lazily unmount a FUSE mount (ours: made under the bench's temp dir)."""
    subprocess.run(["fusermount3", "-u", "-z", str(path)], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def need_root(script: str, bindfs: bool = False) -> None:
    """Stop unless root (FUSE mounts, drop_caches); with ``bindfs``, install
    it with apt-get if it is missing."""
    if os.geteuid() != 0:
        raise SystemExit(f"bench/{script} needs root (FUSE mounts, drop_caches)")
    if bindfs and shutil.which("bindfs") is None:
        log("installing bindfs")
        subprocess.run(["apt-get", "install", "-y", "-qq", "bindfs"], check=True)


class Bindfs:
    """bindfs (a C FUSE passthrough, the floor of FUSE overhead) of ``source``
    at ``mount`` for a ``with`` block; unmounted by path."""

    def __init__(self, source: Path, mount: Path, options: list[str] | None = None) -> None:
        self.source, self.mount, self.options = source, mount, options or []

    def __enter__(self) -> Path:
        self.source.mkdir(parents=True, exist_ok=True)
        self.mount.mkdir(parents=True, exist_ok=True)
        run(["bindfs", *self.options, self.source, self.mount], what="bindfs")
        return self.mount

    def __exit__(self, *exc: object) -> None:
        unmount(self.mount)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drop_caches() -> None:
    """Write back and drop the kernel's page cache, dentries and inodes (root)."""
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def make_random(path: Path, size: int) -> None:
    """A file of ``size`` random bytes, written 8 MiB at a time."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(8 * MiB, left)
            f.write(os.urandom(n))
            left -= n


def cleanup(tmp: Path, keep: bool) -> None:
    """Remove the bench's temp dir; first detach any mount still under it, so
    that rmtree never deletes through a mount."""
    for mnt in mounts_under(tmp):
        log(f"unmounting {mnt}, still mounted at clean-up")
        unmount(mnt)
    if keep:
        log(f"kept {tmp}")
    elif mounts_under(tmp):
        log(f"NOT removing {tmp}: {', '.join(mounts_under(tmp))} still mounted")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_daemon(base: Path, mount: bool = False) -> DaemonProcess:
    """The test suite's daemon harness, as the benches run it: state, socket
    (and mount) under ``base``, the store in the state directory (the
    daemon's default), warnings and errors only in its log."""
    return DaemonProcess(base, f"file://{base / 'state' / 'store'}", mount=mount,
                         log_level="WARNING")


def peak_rss_mib(d: DaemonProcess) -> float:
    """The daemon's peak resident memory so far (VmHWM), in MiB."""
    return d.vm_kib("VmHWM") / 1024


class BenchError(Exception):
    pass


# -- helpers ------------------------------------------------------------------

def run(cmd: list, *, env: dict | None = None, what: str | None = None) -> str:
    p = subprocess.run([str(c) for c in cmd], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-6:]
        raise BenchError(f"{what or cmd[0]} exited {p.returncode}: " + " | ".join(tail))
    return p.stdout


def timed(fn, sync: bool = True) -> float:
    """Seconds of ``fn()`` (plus a final sync); earlier dirty data is synced first."""
    os.sync()
    t = time.perf_counter()
    fn()
    if sync:
        os.sync()
    return time.perf_counter() - t
