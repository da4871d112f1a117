"""The local executor: a job's datums as subprocesses of the daemon.

Each datum runs the command in the process sandbox (:mod:`.runner`) as the
pipeline's owner, on inputs bound from the mount or copied from the store
(:mod:`.inputs`), at most ``parallelism`` datums of a pipeline at once;
its output is stored without trusting what the datum's user wrote
(:mod:`.datums`), within the job's output budget.  Each datum's stats are
recorded as a Dask worker records them (:class:`.jobs.DatumStats`): the
input's time and bytes, the command's time, the output's time and bytes.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import trio

from .datums import Datum, UnsafeOutput, datum_bytes, datum_paths, store_output_root
from .executors import DatumOutcome, JobWork, Record, timed_attempt
from .inputs import DatumInputs, remove_tree
from .jobs import DatumLog, DatumStats
from .runner import AttemptDirs, Command, RunResult, Sandbox, run_datum
from .spec import LOCAL

T = TypeVar("T")
Work = Callable[..., Awaitable[Any]]   # runs a blocking call in one of the scheduler's threads


class LocalExecutor:
    """Runs datums on this daemon's machine."""

    name = LOCAL

    def __init__(self, inputs: DatumInputs, sandbox: Sandbox, work: Work, work_prefix: str,
                 daemon_id: str = "") -> None:
        self.inputs = inputs
        self.sandbox = sandbox
        self.work = work
        self.work_prefix = work_prefix      # job directories: names this daemon's (see scheduler.load)
        self.label = f"local:{socket.gethostname()}" + (f":{daemon_id[:8]}" if daemon_id else "")

    async def describe(self) -> dict:
        return {"name": LOCAL, "type": LOCAL, "answers": True, "workers": 1,
                "threads": os.cpu_count() or 1, "where": self.label}

    async def aclose(self) -> None:
        return None

    async def run(self, work: JobWork, pending: list[tuple[int, Datum]], record: Record) -> None:
        base = tempfile.mkdtemp(prefix=f"{self.work_prefix}{work.job.id[-12:]}-")
        os.chmod(base, 0o711)
        limiter = trio.CapacityLimiter(work.pipeline.spec.parallelism)
        try:
            async with trio.open_nursery() as nursery:
                for index, datum in pending:
                    nursery.start_soon(self._datum, work, base, limiter, index, datum, record)
        finally:
            with trio.CancelScope(shield=True):
                await self.work(remove_tree, base)

    async def _datum(self, work: JobWork, base: str, limiter: trio.CapacityLimiter, index: int,
                     datum: Datum, record: Record) -> None:
        job, pipeline = work.job, work.pipeline
        spec = pipeline.spec
        async with limiter:
            stats = DatumStats(self.label, download_bytes=datum_bytes(datum))
            entry = job.logs[str(index)] = DatumLog(datum_paths(datum), stats=stats)
            command = Command(spec.cmd, spec.env, spec.stdin, spec.timeout, work.owner.uid, work.owner.gid)
            root = os.geteuid() == 0
            env = {"TRUNKFS_DATUM": "\n".join(entry.paths), "TRUNKFS_JOB": job.id,
                   "TRUNKFS_PIPELINE": pipeline.name, "TRUNKFS_INPUT_COMMIT": job.input.commit}

            def prepare(attempt: int) -> AbstractAsyncContextManager[AttemptDirs]:
                return timed_attempt(stats, self.inputs.attempt(
                    os.path.join(base, f"d{index}-{attempt}"), spec.input_repo, job.input.commit, datum,
                    (command.uid, command.gid) if root else None))

            started = time.perf_counter()
            ran = await run_datum(command, spec.retries, prepare, entry, env, self.sandbox)
            stats.process_s = time.perf_counter() - started - stats.download_s
            if not ran.ok:
                await record(index, datum, DatumOutcome(entry, error=entry.error))
                return
            ran_as = (command.uid, command.gid) if root else (os.geteuid(), os.getegid())  # the runner's rule
            packs: set[str] = set()
            started = time.perf_counter()
            try:
                out = await self.work(store_output_root, work.store, ran.dirs.output, *ran_as, work.budget, packs)
            except (UnsafeOutput, OSError) as exc:
                message = str(exc) if isinstance(exc, UnsafeOutput) else f"cannot store its output: {exc}"
                kept = entry.last or ran.result
                entry.attempt_ended(RunResult(kept.exit, kept.stdout, kept.stderr, message))
                await record(index, datum, DatumOutcome(entry, error=message))
                return
            stats.upload_s = time.perf_counter() - started
            stats.upload_bytes = int(out.get("size") or 0)
            await record(index, datum, DatumOutcome(entry, str(out["tree"]), sorted(packs),
                                                    output_bytes=stats.upload_bytes))
