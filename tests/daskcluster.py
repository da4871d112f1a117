"""A real Dask cluster for the tests and the benchmarks: a ``dask scheduler``
process and ``dask worker`` processes on 127.0.0.1, started and stopped by
their pids (nothing else is touched).

Workers run without a nanny, so a worker's pid is the process that runs
the datums (the tests SIGKILL it), and a worker whose scheduler went away
exits (the tests start new ones).  Each worker keeps its trunkfs state
under ``<base>/worker-state`` (``TRUNKFS_WORKER_DIR``) and gets the moto
credentials of ``tests.s3server``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from tests.s3server import AWS_ENV, AWS_UNSET

DASK = os.path.join(os.path.dirname(sys.executable), "dask")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DaskCluster:
    """One scheduler and its workers, as subprocesses."""

    def __init__(self, base: Path, workers: int = 2, threads: int = 1) -> None:
        self.base = base
        self.base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.threads = threads
        self.wanted = workers
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self._logs: list[IO[bytes]] = []
        self.env = dict(os.environ, **AWS_ENV, TRUNKFS_WORKER_DIR=str(base / "worker-state"),
                        TRUNKFS_CLIENT_DIR=str(base / "client-state"),
                        PYTHONUNBUFFERED="1")
        for name in AWS_UNSET:
            self.env.pop(name, None)

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        log = open(self.base / log_name, "ab")
        self._logs.append(log)
        return subprocess.Popen([DASK, *args], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=self.env, cwd=self.base, start_new_session=True)

    def start(self) -> "DaskCluster":
        self.start_scheduler()
        self.add_workers(self.wanted)
        return self

    def start_scheduler(self) -> None:
        self.scheduler = self._spawn(["scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--no-dashboard", "--no-show"], "scheduler.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler exited:\n{self.log('scheduler.log')}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dask scheduler did not listen:\n{self.log('scheduler.log')}")

    def add_workers(self, n: int, wait: bool = True) -> list[subprocess.Popen]:
        new = [self._spawn(["worker", self.address, "--nthreads", str(self.threads), "--no-nanny",
                            "--no-dashboard", "--memory-limit", "0", "--death-timeout", "60"],
                           f"worker-{len(self.workers) + i}.log") for i in range(n)]
        self.workers += new
        if wait:
            self.wait_for_workers(len(self.live_workers()))
        return new

    def live_workers(self) -> list[subprocess.Popen]:
        return [w for w in self.workers if w.poll() is None]

    def info(self) -> dict:
        """The scheduler's view: its workers and their threads."""
        from distributed import Client
        with Client(self.address, timeout=20, set_as_default=False) as c:
            return json.loads(json.dumps(c.scheduler_info(n_workers=-1), default=str))

    def wait_for_workers(self, n: int, timeout: float = 60) -> None:
        from distributed import Client
        with Client(self.address, timeout=20, set_as_default=False) as c:
            c.wait_for_workers(n, timeout=timeout)

    def open_store(self, url: str) -> None:
        """Have every worker import trunkfs and open the store now (what the
        daemon's warm-up plugin does in the background when a worker joins)."""
        from distributed import Client

        from trunkfs.pipelines.remote import StoreOptions, open_on_worker
        with Client(self.address, timeout=20, set_as_default=False) as c:
            c.run(open_on_worker, StoreOptions(url).to_json())

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def stop_scheduler(self) -> None:
        if self.scheduler is not None:
            self.kill(self.scheduler, signal.SIGTERM)

    def stop(self) -> None:
        """Stop every worker, then the scheduler (only the processes started here)."""
        for w in self.workers:
            self.kill(w, signal.SIGTERM)
        self.stop_scheduler()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def log(self, name: str) -> str:
        try:
            return (self.base / name).read_text(errors="replace")[-4000:]
        except OSError:
            return ""
