"""What the benches (read.py, pipeline.py, write.py) share: progress lines,
one trunkfs daemon started and stopped by pid in a temporary directory, and a
clean-up that never deletes through a mount left behind."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

T0 = time.perf_counter()
MiB = 1 << 20
TRUNKFS = [sys.executable, "-m", "trunkfs.daemon.cli"]


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


class BenchDaemon:
    """``trunkfs daemon`` with its state, socket (and mount) under ``base``."""

    def __init__(self, base: Path, mount: bool = False) -> None:
        self.base = base
        self.state = base / "state"
        self.mount = base / "mnt" if mount else None
        self.store = self.state / "store"  # the daemon's default store: file://<state>/store
        self.socket = str(base / "trunkfs.sock")
        self.env = dict(os.environ, TRUNKFS_SOCKET=self.socket)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = [*TRUNKFS, "daemon", "--state", str(self.state), "--socket", self.socket,
                "--log-level", "WARNING"]
        if self.mount is not None:
            self.mount.mkdir(parents=True, exist_ok=True)
            args += ["--mount", str(self.mount)]
        self.logfile = open(self.base / "daemon.log", "ab")
        self.proc = subprocess.Popen(args, stdout=self.logfile, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the daemon exited: see {self.base / 'daemon.log'}")
            if self.mount is None or os.path.ismount(self.mount):
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(self.socket)
                    s.close()
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise SystemExit("the daemon did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.mount is not None and os.path.ismount(self.mount):
            unmount(self.mount)

    def cli(self, *args: str) -> str:
        return subprocess.run([*TRUNKFS, *args], env=self.env, check=True,
                              capture_output=True, text=True).stdout

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """A client command, not checked: the caller reads returncode/stderr."""
        return subprocess.run([*TRUNKFS, *args], env=self.env, capture_output=True, text=True)

    def rss_mib(self, field: str = "VmRSS") -> float:
        """VmRSS (or another Vm* field, e.g. VmHWM) of the daemon, in MiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        return 0.0
