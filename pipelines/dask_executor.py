"""The Dask executor: a job's datums as tasks on a Dask cluster.

The daemon is a Dask client (``distributed.Client``, in its own IO thread;
every blocking call runs in a worker thread and results come back to trio
through future callbacks).  A job's datums that were not reused go out in
batches of ``datums_per_task`` (:func:`batch_size`), one task each,
all submitted at once: the scheduler hands the next task to whichever
worker is free.  A task is :func:`trunkfs.pipelines.remote.run_batch`: the
worker reads the inputs from the store, runs the command, writes the
outputs to the store and returns a manifest.  Only manifests come back.

Failures:

* A worker dies mid-batch: Dask runs the task again on another worker;
  each run claims a run number in the store (:mod:`.remote`), so the deaths
  count against the pipeline's ``retries``.
* The scheduler cannot be reached (at the start, or it went away
  mid-job): the job waits, trying again with a growing pause, and fails
  after the executor's ``wait_seconds`` with an error naming the executor.
  When it answers again, the batches whose manifests had not come back are
  submitted again (a new generation of run claims: an outage does not
  count against ``retries``).
* The job is cancelled (or the daemon stops): its futures are cancelled;
  a worker notices within a fraction of a second and kills the command.
"""

from __future__ import annotations

import functools
import logging
import math
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from ..store.errors import TrunkError
from .datums import Datum, UnsafeOutput, datum_paths
from .executorconfig import DASK, ExecutorConfig
from .executors import DatumOutcome, JobWork, Record
from .jobs import DatumLog
from .remote import PROTOCOL, RUNS_PREFIX, StoreOptions, run_batch
from .runner import RunResult

log = logging.getLogger(__name__)

T = TypeVar("T")

TASKS_PER_THREAD = 4      # auto batches: about this many tasks per worker thread (load balance)
MAX_AUTO_BATCH = 64       # auto batches never hold more datums than this
DESCRIBE_TIMEOUT = 5.0    # seconds ``executor list`` waits for a scheduler
CONNECT_TIMEOUT = 10.0    # seconds one connection attempt may take
FIRST_PAUSE, MAX_PAUSE = 0.5, 10.0   # the pause between attempts to reach the scheduler grows


class ExecutorUnavailable(TrunkError):
    """The executor's scheduler did not answer within its ``wait_seconds``."""

    code = "unavailable"


def batch_size(datums: int, threads: int, configured: int = 0) -> int:
    """Datums per task: ``configured`` when set, else enough tasks for about
    TASKS_PER_THREAD per worker thread (so a worker that is done takes
    more), at most MAX_AUTO_BATCH datums each (so per-task costs stay
    small against many tiny datums)."""
    if configured:
        return configured
    return max(1, min(MAX_AUTO_BATCH, math.ceil(datums / (max(1, threads) * TASKS_PER_THREAD))))


class DaskExecutor:
    """Runs datums on the Dask cluster whose scheduler the config names."""

    def __init__(self, config: ExecutorConfig, store: StoreOptions, output_limit: int = 0) -> None:
        assert config.type == DASK
        self.name = config.name
        self.config = config
        self.store_options = store
        self.output_limit = output_limit
        self._client: Any = None
        self._lock = trio.Lock()
        self._limiter = trio.CapacityLimiter(4)   # threads of blocking client calls

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self._limiter)

    @property
    def where(self) -> str:
        return f"executor {self.name!r} (Dask scheduler {self.config.scheduler})"

    # -- the client -------------------------------------------------------------

    def _new_client(self, timeout: float) -> Any:
        from distributed import Client   # imported when a Dask executor is first used

        from .warmup import StoreWarmup
        client = Client(self.config.scheduler, timeout=timeout, set_as_default=False)
        try:   # every worker, and every worker that joins, opens the store before its first task
            client.register_plugin(StoreWarmup(self.store_options.to_json()))
        except Exception as exc:    # the batches open it then
            log.info("%s: cannot register the store warm-up on the workers: %r", self.where, exc)
        return client

    @staticmethod
    def _close_client(client: Any) -> None:
        try:
            client.close(timeout=5)
        except Exception as exc:   # closing a client whose scheduler is gone may complain
            log.debug("closing a Dask client: %r", exc)

    async def _connect(self, wait: float, quiet: bool = False) -> Any:
        """A client connected to the scheduler; waits up to ``wait`` seconds
        with a growing pause between attempts, then raises
        :class:`ExecutorUnavailable` naming the executor."""
        deadline = trio.current_time() + wait
        pause = FIRST_PAUSE
        while True:
            async with self._lock:
                client = self._client
                if client is not None and client.status == "running":
                    return client
                problem = "the scheduler went away; reconnecting"
                if client is not None and client.status not in ("connecting", "newly-created"):
                    self._client = None             # closed: start again with a new one
                    await self._call(self._close_client, client)
                    client = None
                if client is None:
                    timeout = max(1.0, min(CONNECT_TIMEOUT, deadline - trio.current_time()))
                    try:
                        self._client = await self._call(self._new_client, timeout)
                        log.info("%s: connected", self.where)
                        continue
                    except (OSError, TimeoutError) as exc:
                        problem = f"{exc}" or type(exc).__name__
            if trio.current_time() + pause > deadline:
                raise ExecutorUnavailable(f"{self.where} did not answer for {self.config.wait_seconds:g} s "
                                          f"(wait_seconds): {problem}")
            log.log(logging.DEBUG if quiet else logging.WARNING, "%s: not reachable (%s); trying again in %.1f s",
                    self.where, problem, pause)
            await trio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)

    async def describe(self) -> dict:
        """The executor, and whether its scheduler answers (workers, threads)."""
        out: dict[str, Any] = dict(self.config.to_json(), answers=False, workers=0, threads=0)
        try:
            with trio.fail_after(DESCRIBE_TIMEOUT + 1):
                client = await self._connect(DESCRIBE_TIMEOUT, quiet=True)
                info = await self._call(client.scheduler_info, n_workers=-1)
        except (TrunkError, OSError, TimeoutError, trio.TooSlowError) as exc:
            out["error"] = str(exc) or type(exc).__name__
            return out
        workers = info.get("workers") or {}
        out.update(answers=True, workers=len(workers),
                   threads=sum(int(w.get("nthreads") or 0) for w in workers.values()))
        return out

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with trio.CancelScope(shield=True):
                await self._call(self._close_client, client)

    # -- a job ----------------------------------------------------------------------

    def _request(self, work: JobWork, batch: int, generation: str, datums: list[tuple[int, Datum]]) -> dict:
        spec, job = work.pipeline.spec, work.job
        return {"protocol": PROTOCOL, "store": self.store_options.to_json(),
                "job": job.id, "pipeline": work.pipeline.name, "batch": f"{batch}.{generation}",
                "input_repo": spec.input_repo, "input_commit": job.input.commit,
                "command": {"argv": list(spec.cmd), "env": dict(spec.env), "stdin": spec.stdin,
                            "timeout": spec.timeout},
                "retries": spec.retries, "log_limit": work.log_limit, "output_limit": self.output_limit,
                "datums": [[index, datum] for index, datum in datums]}

    async def run(self, work: JobWork, pending: list[tuple[int, Datum]], record: Record) -> None:
        client = await self._connect(self.config.wait_seconds)
        spec = work.pipeline.spec
        threads = 1
        if not (spec.datums_per_task or self.config.datums_per_task):
            info = await self._call(client.scheduler_info, n_workers=-1)
            threads = sum(int(w.get("nthreads") or 0) for w in (info.get("workers") or {}).values())
        size = batch_size(len(pending), threads, spec.datums_per_task or self.config.datums_per_task)
        remaining = {b: pending[i:i + size] for b, i in enumerate(range(0, len(pending), size))}
        log.info("job %s: %d datums in %d tasks of up to %d on %s", work.job.id, len(pending),
                 len(remaining), size, self.where)
        # run claims are per submission: a job taken up again (its daemon
        # restarted) or a round after an outage never meets older claims
        generation, token = 0, secrets.token_hex(4)
        try:
            while remaining:
                generation += 1
                client = await self._connect(self.config.wait_seconds)
                await self._round(client, work, remaining, f"{token}-{generation}", record)
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self._call(self._forget_runs, work)
                except (TrunkError, OSError) as exc:
                    log.warning("job %s: cannot remove its run claims: %s", work.job.id, exc)

    async def _round(self, client: Any, work: JobWork, remaining: dict[int, list[tuple[int, Datum]]],
                     generation: str, record: Record) -> None:
        """Submit every remaining batch and take their manifests as they
        come; returns when none is left, or when the scheduler went away
        (the caller reconnects and submits what is left again)."""
        send, receive = trio.open_memory_channel[tuple[int, Any]](math.inf)
        token = trio.lowlevel.current_trio_token()

        def done(batch: int, future: Any) -> None:     # in the client's thread
            try:
                token.run_sync_soon(send.send_nowait, (batch, future))
            except trio.RunFinishedError:
                pass

        requests = {b: self._request(work, b, generation, d) for b, d in remaining.items()}
        futures: dict[int, Any] = {}
        try:
            futures = await self._call(self._submit, client, work.job.id, requests)
            for b, future in futures.items():
                future.add_done_callback(functools.partial(done, b))
            while futures:
                # only the wait is timed: taking a batch in may take longer
                # than a second, and cut short it would lose its datums
                finished = None
                with trio.move_on_after(1.0):
                    finished = await receive.receive()
                if finished is not None:
                    batch, future = finished
                    if futures.get(batch) is future:
                        del futures[batch]
                        if not await self._take(future, work, batch, remaining, record):
                            return        # lost with the scheduler: the caller submits again
                        continue
                if client.status != "running":
                    log.warning("%s: the connection to the scheduler was lost mid-job; %d batches of job "
                                "%s go out again when it answers", self.where, len(remaining), work.job.id)
                    return
        finally:
            if futures:
                with trio.CancelScope(shield=True):
                    try:
                        await self._call(client.cancel, list(futures.values()), force=True)
                    except Exception as exc:  # the scheduler may be gone; its workers cancel on their own
                        log.debug("cancelling the futures of job %s: %r", work.job.id, exc)

    @staticmethod
    def _submit(client: Any, job: str, requests: dict[int, dict]) -> dict[int, Any]:
        salt = secrets.token_hex(4)
        return {b: client.submit(run_batch, req, key=f"trunkfs-{job}-{req['batch']}-{salt}", pure=False,
                                 retries=0)
                for b, req in requests.items()}

    async def _take(self, future: Any, work: JobWork, batch: int,
                    remaining: dict[int, list[tuple[int, Datum]]], record: Record) -> bool:
        """Record the datums of a finished task; False when the task was lost
        with the scheduler (it stays in ``remaining``)."""
        datums = remaining[batch]
        status = future.status
        if status in ("cancelled", "lost"):
            return False
        if status == "error":
            exc = await self._call(future.exception)
            name = type(exc).__name__
            message = (f"the workers running it died too often ({name}: the scheduler's allowed-failures)"
                       if name == "KilledWorker" else f"its task failed on {self.where}: {exc!r}")
            del remaining[batch]
            await self._fail_all(datums, record, message)
            return True
        manifest = await self._call(future.result)
        del remaining[batch]
        try:
            outcomes = await self._call(self._read_manifest, work, manifest, datums)
        except (TrunkError, ValueError, KeyError, TypeError) as exc:
            await self._fail_all(datums, record, f"a malformed manifest came back from {self.where}: {exc}")
            return True
        for index, datum, outcome in outcomes:
            if outcome.tree is not None:
                try:
                    work.budget.take(outcome.output_bytes, datum[0][0] if datum else "/")
                except UnsafeOutput as exc:
                    outcome = DatumOutcome(outcome.log, error=str(exc))
                    outcome.log.attempt_ended(RunResult(None, "", "", str(exc)))
            await record(index, datum, outcome)
        return True

    def _read_manifest(self, work: JobWork, manifest: Any, datums: list[tuple[int, Datum]]) \
            -> list[tuple[int, Datum, DatumOutcome]]:
        """The outcomes a manifest reports for a batch's datums (in a thread:
        the packs the worker wrote are indexed here, so the merge reads the
        output trees)."""
        if not isinstance(manifest, dict) or manifest.get("protocol") != PROTOCOL:
            raise ValueError("not a batch manifest of this trunkfs version")
        if manifest.get("cancelled"):
            raise ValueError("the worker reports the batch cancelled")
        packs = [str(p) for p in manifest.get("packs") or []]
        for p in packs:
            bytes.fromhex(p)
        work.store.index_packs(packs)
        by_index = dict(datums)
        out = []
        for r in manifest["datums"]:
            index = int(r["index"])
            if index not in by_index:
                raise ValueError(f"datum {index} is not one of the batch's")
            entry = DatumLog.from_json(r["log"])
            tree = r.get("tree")
            if tree is not None:
                tree = str(tree)
                bytes.fromhex(tree)
            error = None if tree is not None else str(r.get("error") or "failed")
            out.append((index, by_index.pop(index),
                        DatumOutcome(entry, tree, packs if tree else [], error, int(r.get("output_bytes") or 0))))
        if by_index:
            raise ValueError(f"the manifest leaves out datums {sorted(by_index)[:5]}")
        return out

    async def _fail_all(self, datums: list[tuple[int, Datum]], record: Record, message: str) -> None:
        log.warning("%d datums failed on %s: %s", len(datums), self.where, message)
        for index, datum in datums:
            entry = DatumLog.failed(datum_paths(datum), message, self.name)
            await record(index, datum, DatumOutcome(entry, error=message))

    @staticmethod
    def _forget_runs(work: JobWork) -> None:
        """Remove the run claims of the job's batches."""
        backend = work.store.backend
        for key in list(backend.list(f"{RUNS_PREFIX}{work.job.id}/")):
            backend.delete(key)
