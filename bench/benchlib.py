"""What bench/read.py and bench/pipeline.py share: progress lines, and one
trunkfs daemon started and stopped by pid in a temporary directory."""

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
TRUNKFS = [sys.executable, "-m", "trunkfs.daemon.cli"]


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def cleanup(tmp: Path, keep: bool) -> None:
    if keep:
        log(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


class BenchDaemon:
    """``trunkfs daemon`` with its state, socket (and mount) under ``base``."""

    def __init__(self, base: Path, mount: bool = False) -> None:
        self.base = base
        self.state = base / "state"
        self.mount = base / "mnt" if mount else None
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
            subprocess.run(["fusermount3", "-u", "-z", str(self.mount)], check=False)

    def cli(self, *args: str) -> str:
        return subprocess.run([*TRUNKFS, *args], env=self.env, check=True,
                              capture_output=True, text=True).stdout

    def rss_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0
