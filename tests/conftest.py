"""Shared fixtures: a real daemon process on a temporary store (the harness
in tests/harness.py, which the benchmarks use too), the CLI as a real
subprocess, and a guard that fails a test whose code logged an unexpected
WARNING or ERROR (as S3QL's test suite does)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from trunkfs.store.backends.factory import open_backend
from trunkfs.store.store import Store

from tests.harness import DaemonProcess, log_problems, wait_for

__all__ = ["Daemon", "open_local_store", "wait_for"]  # for test modules that import them from here

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


# -- a real daemon (tests/harness.py, shared with the benchmarks) ----------------

Daemon = DaemonProcess


@pytest.fixture
def workdir():
    """A temporary directory on the same disk as the checkout, removed afterwards."""
    d = tempfile.mkdtemp(prefix="trunkfs-test-")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def open_local_store(base: Path, **kw: Any) -> Store:
    """A store in ``base/store`` with its index and temp files beside it."""
    return Store(open_backend(f"file://{base / 'store'}"), str(base / "index"), str(base / "tmp"),
                 **kw).open()


@pytest.fixture
def store(workdir: Path):
    """A real local store for in-process tests, closed afterwards."""
    st = open_local_store(workdir)
    try:
        yield st
    finally:
        st.close()


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


@pytest.fixture(params=["file", "s3"])
def shared_store(request: pytest.FixtureRequest, workdir: Path) -> tuple[str, list[str]]:
    """``(store URL, daemon flags)`` of one store for several daemons: a
    ``file://`` directory, then a moto bucket."""
    if request.param == "file":
        return f"file://{workdir / 'shared-store'}", []
    endpoint, bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/shared", ["--s3-endpoint", endpoint]


@pytest.fixture
def daemon(daemon_factory) -> Daemon:
    return daemon_factory()


@pytest.fixture
def mounted(daemon_factory) -> Daemon:
    """A daemon with its FUSE mount at ``.mount``."""
    return daemon_factory(mount=True)
