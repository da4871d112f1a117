"""Shared fixtures: a real daemon process on a temporary store, the CLI as a
real subprocess, and a guard that fails a test whose code logged an
unexpected WARNING or ERROR (as S3QL's test suite does)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest_plugins = ["tests.s3server"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_warnings: the test expects WARNING/ERROR log lines")


# -- in-process log guard -------------------------------------------------------

class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("trunkfs"):
            self.records.append(record)


@pytest.fixture(autouse=True)
def fail_on_logged_warnings(request: pytest.FixtureRequest):
    collector = _Collector()
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        yield collector
    finally:
        root.removeHandler(collector)
    if collector.records and not request.node.get_closest_marker("allow_warnings"):
        lines = "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in collector.records)
        pytest.fail(f"unexpected warnings were logged:\n{lines}")


# -- a real daemon ---------------------------------------------------------------

class CLIResult:
    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def out(self) -> str:
        return self.stdout.decode()

    @property
    def err(self) -> str:
        return self.stderr.decode()

    def json(self):
        return json.loads(self.stdout)


class Daemon:
    """One ``trunkfs daemon`` subprocess with its own state, store and socket."""

    def __init__(self, base: Path, store_url: str | None = None, extra: list[str] | None = None,
                 mount: bool = False) -> None:
        self.base = base
        self.mount: Path | None = base / "mnt" if mount else None
        self.state = base / "state"
        self.socket = str(base / "sock" / "trunkfs.sock")
        self.store_url = store_url or f"file://{base / 'store'}"
        self.extra = extra or []
        self.log_path = base / "daemon.log"
        self.proc: subprocess.Popen | None = None
        self.left_mounted = False  # a clean stop left the mount behind
        self.env = dict(os.environ, TRUNKFS_SOCKET=self.socket, PYTHONUNBUFFERED="1")

    @property
    def store_dir(self) -> Path:
        assert self.store_url.startswith("file://")
        return Path(self.store_url[len("file://"):])

    def start(self, timeout: float = 20) -> "Daemon":
        os.makedirs(os.path.dirname(self.socket), exist_ok=True)
        mount_args: list[str] = []
        if self.mount is not None:
            try:
                self.mount.mkdir(parents=True)
            except FileExistsError:
                pass  # maybe a stale mount: the daemon must cope with it
            mount_args = ["--mount", str(self.mount)]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trunkfs.daemon.cli", "daemon", "--store", self.store_url,
             "--state", str(self.state), "--socket", self.socket, *mount_args, *self.extra],
            stdout=self._log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.socket)
                s.close()
                if self.mount is None or mount_is_live(self.mount):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"daemon did not start:\n{self.log()}")

    def stop(self, timeout: float = 30) -> int:
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
            subprocess.run(["fusermount3", "-u", "-z", str(self.mount)], capture_output=True)
            return True
        return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cli(self, *args: str, input: bytes | None = None, check: bool = True,
            timeout: float = 300) -> CLIResult:
        proc = subprocess.run([sys.executable, "-m", "trunkfs.daemon.cli", *args],
                              input=input, capture_output=True, env=self.env, timeout=timeout)
        res = CLIResult(proc)
        if check and proc.returncode != 0:
            raise AssertionError(f"trunkfs {' '.join(args)} failed ({proc.returncode}):\n{res.err}")
        return res

    def client(self):
        from trunkfs.client import Client
        return Client(self.socket, timeout=60)


def is_mounted(path: Path) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == real for line in f if len(line.split()) > 2)


def mount_is_live(path: Path) -> bool:
    """A FUSE mount answers at ``path`` (statfs reaches the daemon; a stale one fails)."""
    try:
        return is_mounted(path) and os.statvfs(path) is not None and os.stat(path).st_ino == 1
    except OSError:
        return False


def log_problems(text: str) -> list[str]:
    return [line for line in text.splitlines() if " WARNING " in line or " ERROR " in line]


@pytest.fixture
def workdir():
    """A temporary directory on the same disk as the checkout, removed afterwards."""
    d = tempfile.mkdtemp(prefix="trunkfs-test-")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemon_factory(workdir: Path, request: pytest.FixtureRequest):
    started: list[Daemon] = []

    def make(name: str = "d", store_url: str | None = None, extra: list[str] | None = None,
             start: bool = True, mount: bool = False) -> Daemon:
        d = Daemon(workdir / name, store_url, extra, mount)
        started.append(d)
        return d.start() if start else d

    yield make
    problems = []
    for d in started:
        d.stop()
        if d.left_mounted:
            problems.append(f"{d.mount} was still mounted after the daemon stopped")
        problems += log_problems(d.log())
    if problems and not request.node.get_closest_marker("allow_warnings"):
        pytest.fail("the daemon logged warnings or errors:\n" + "\n".join(problems))


@pytest.fixture
def daemon(daemon_factory) -> Daemon:
    return daemon_factory()


@pytest.fixture
def mounted(daemon_factory) -> Daemon:
    """A daemon with its FUSE mount at ``.mount``."""
    return daemon_factory(mount=True)
