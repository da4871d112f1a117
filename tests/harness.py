"""The one harness for a real ``trunkfs daemon`` process, shared by the test
suite (``tests/conftest.py``) and the benchmarks (``bench/benchlib.py``).

A :class:`DaemonProcess` has its own state directory, store, socket and
(optionally) mount point under one base directory; it is started and
stopped by its pid only, waits for readiness by asking the daemon (never by
sleeping a fixed time), and never leaves its mount behind on ``stop``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TRUNKFS = [sys.executable, "-m", "trunkfs.daemon.cli"]


class CLIResult:
    """A finished ``trunkfs`` command: exit status, raw output, decoded helpers."""

    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.returncode = proc.returncode
        self.stdout: bytes = proc.stdout
        self.stderr: bytes = proc.stderr

    @property
    def out(self) -> str:
        return self.stdout.decode()

    @property
    def err(self) -> str:
        return self.stderr.decode()

    def json(self) -> Any:
        return json.loads(self.stdout)


def is_mounted(path: Path | str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == real for line in f if len(line.split()) > 2)


def mount_is_live(path: Path | str) -> bool:
    """A FUSE mount answers at ``path`` (statfs reaches the daemon; a stale one fails)."""
    try:
        return is_mounted(path) and os.statvfs(path) is not None and os.stat(path).st_ino == 1
    except OSError:
        return False


def unmount_lazily(path: Path | str) -> None:
    subprocess.run(["fusermount3", "-u", "-z", str(path)], check=False, capture_output=True)


def log_problems(text: str) -> list[str]:
    return [line for line in text.splitlines() if " WARNING " in line or " ERROR " in line]


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``condition()`` until it returns something true; its value, or
    TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``48m``) mounted at ``path`` (made) for a ``with``
    block, lazily unmounted after it; a test that needs one fails unless root."""
    if os.geteuid() != 0:
        import pytest
        pytest.fail("this test mounts a tmpfs and needs root (CI runs as root)")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


class DaemonProcess:
    """One ``trunkfs daemon`` subprocess with its own state, store and socket."""

    def __init__(self, base: Path, store_url: str | None = None, extra: list[str] | None = None,
                 mount: bool = False, *, log_level: str | None = None,
                 socket_path: str | None = None) -> None:
        self.base = base
        self.mount: Path | None = base / "mnt" if mount else None
        self.state = base / "state"
        self.socket = socket_path or str(base / "sock" / "trunkfs.sock")
        self.store_url = store_url or f"file://{base / 'store'}"
        self.extra = list(extra or [])
        if log_level:
            self.extra += ["--log-level", log_level]
        self.log_path = base / "daemon.log"
        self.proc: subprocess.Popen | None = None
        self.left_mounted = False  # a clean stop left the mount behind
        self.env = dict(os.environ, TRUNKFS_SOCKET=self.socket, PYTHONUNBUFFERED="1")
        self._log: Any = None

    @property
    def store_dir(self) -> Path:
        assert self.store_url.startswith("file://")
        return Path(self.store_url[len("file://"):])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        try:
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(self.socket)
            finally:
                s.close()
        except OSError:
            return False
        return self.mount is None or mount_is_live(self.mount)

    def start(self, timeout: float = 30) -> "DaemonProcess":
        os.makedirs(os.path.dirname(self.socket), exist_ok=True)
        self.base.mkdir(parents=True, exist_ok=True)
        mount_args: list[str] = []
        if self.mount is not None:
            try:
                self.mount.mkdir(parents=True)
            except FileExistsError:
                pass  # maybe a stale mount: the daemon must cope with it
            mount_args = ["--mount", str(self.mount)]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*TRUNKFS, "daemon", "--store", self.store_url, "--state", str(self.state),
             "--socket", self.socket, *mount_args, *self.extra],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
            start_new_session=True)
        try:
            wait_for(self._answers, timeout, f"the daemon in {self.base} to answer")
        except TimeoutError:
            self.kill()
            raise RuntimeError(f"daemon did not start:\n{self.log()}") from None
        return self

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, wait (SIGKILL after ``timeout``); returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        self._log.close()
        if self.clear_mount():
            self.left_mounted = True
        return rc

    def kill(self) -> None:
        """SIGKILL, as a crash would; leaves a stale mount behind on purpose."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            self.proc = None
            self._log.close()

    def clear_mount(self) -> bool:
        """Lazily unmount a mount left behind; True if there was one."""
        if self.mount is not None and is_mounted(self.mount):
            unmount_lazily(self.mount)
            return True
        return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cli(self, *args: str, input: bytes | None = None, check: bool = True,
            timeout: float = 3600) -> CLIResult:
        """Run ``trunkfs ARGS`` against this daemon; with ``check`` a non-zero
        exit raises AssertionError with its stderr."""
        proc = subprocess.run([*TRUNKFS, *args], input=input, capture_output=True, env=self.env,
                              timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
        res = CLIResult(proc)
        if check and proc.returncode != 0:
            raise AssertionError(f"trunkfs {' '.join(args)} failed ({proc.returncode}):\n{res.err}")
        return res

    def client(self) -> Any:
        from trunkfs.client import Client
        return Client(self.socket, timeout=60)

    def vm_kib(self, field: str = "VmHWM") -> int:
        """A Vm* figure of the daemon from /proc (VmHWM: the peak RSS so far)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0


@contextlib.contextmanager
def fake_get_daemon(path: str, lines: list[dict]) -> Iterator[None]:
    """A fake daemon on the Unix socket ``path`` that answers one ``get`` with
    a directory and then ``lines`` (entry messages) and one data frame: what
    a hostile or broken daemon could send the client."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.makefile("rb").readline()  # the get request
            reply = [{"ok": True, "result": {"commit": "c" * 64, "type": "dir", "size": 1}}] + lines
            try:
                conn.sendall(b"".join(json.dumps(x).encode() + b"\n" for x in reply)
                             + b'{"data":1}\nx{"eof":true}\n{"end":true}\n')
            except OSError:
                pass  # the client hung up after refusing
    t = threading.Thread(target=serve)
    t.start()
    try:
        yield
    finally:
        t.join(30)
        server.close()


# a stdlib-only client that sends one pipeline.create (run as another uid, which
# may not be able to read the checkout)
_CREATE_PIPELINE = (
    "import json, socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
    "spec = json.load(open(sys.argv[2])); "
    "s.sendall(json.dumps({'op': 'pipeline.create', 'args': {'spec': spec}}).encode() + b'\\n'); "
    "print(s.makefile().readline())")


def create_pipeline_as(uid: int, socket_path: str, spec_path: str | Path) -> subprocess.CompletedProcess:
    """``pipeline.create`` of the spec file, sent as ``uid`` (gid the same, no
    groups); pytest.skip when the test's Python is not runnable by that uid."""
    import pytest
    proc = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable,
                           "-c", _CREATE_PIPELINE, socket_path, str(spec_path)], capture_output=True)
    if proc.returncode != 0 and b"Permission denied" in proc.stderr:
        pytest.skip(f"the test's Python is not runnable by uid {uid}")
    return proc
