"""A batch of datums on a Dask worker: what :func:`run_batch` does there.

The worker opens the store itself (the URL and endpoint the daemon gives,
with the worker's own credentials), reads each datum's files through a
chunk cache of its own (only that datum's files), runs the command as the
worker process's own user with the same ``TRUNKFS_*`` environment, timeout
and retries as the local executor, stores the outputs in packs it writes
itself, and returns only a manifest: per datum its output tree id, log and
stats, and the ids of the packs written.  No file bytes pass through the
scheduler or the daemon.

Each worker process keeps one opened store per store URL, in a state
directory of its own under ``TRUNKFS_WORKER_DIR`` (default
``~/.cache/trunkfs-worker``): ``<store key>/slot-N``, held by an flock for
the process's life, so several worker processes on one machine never share
a RocksDB index and a restarted worker finds its index and chunk cache
again.  ``TRUNKFS_WORKER_CACHE`` bounds the chunk cache (default 10% of the
free disk, at most 10 GiB; a ``file://`` store needs none).

A worker that dies mid-batch makes Dask run the batch again elsewhere.
Each run of a batch claims the next run number in the store
(``jobruns/<job>/<batch>/<n>``, a conditional create), so that deaths count
against the pipeline's ``retries`` however many times the cluster reran
it: run ``n`` has ``retries - (n - 1)`` retries left, and a batch whose
worker died more often than ``retries`` allows fails.  A batch cancelled
on the scheduler (the job was cancelled, or the daemon went away) kills
its command within a fraction of a second.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from ..cache.opened import OpenedStore, StoreOptions, parse_cache_size, state_dir
from ..store.errors import Conflict, TrunkError
from .datums import Datum, OutputBudget, UnsafeOutput, datum_bytes, datum_paths, ingest_dir
from .executors import timed_attempt
from .inputs import DatumInputs, remove_tree
from .jobs import DatumLog, DatumStats
from .runner import AttemptDirs, Command, RunResult, Sandbox, run_datum

log = logging.getLogger(__name__)

PROTOCOL = 1                 # of the request and the manifest; a worker refuses another
RUNS_PREFIX = "jobruns/"     # run claims of a job's batches; the daemon removes them when the job ends
CANCEL_POLL = 0.2            # seconds between looks at whether the scheduler cancelled the batch
_RUNNING = ("executing", "long-running")


def run_key(job: str, batch: str, run: int) -> str:
    return f"{RUNS_PREFIX}{job}/{batch}/{run}"


# -- the worker's stores ------------------------------------------------------------


class WorkerStore(OpenedStore):
    """The store as a worker process opens it (``TRUNKFS_WORKER_DIR``,
    ``TRUNKFS_WORKER_CACHE``)."""

    def __init__(self, options: StoreOptions) -> None:
        super().__init__(options, state_dir("TRUNKFS_WORKER_DIR", "trunkfs-worker"),
                         parse_cache_size(os.environ.get("TRUNKFS_WORKER_CACHE")))


_stores: dict[str, WorkerStore] = {}
_stores_lock = threading.Lock()


def worker_store(options: StoreOptions) -> WorkerStore:
    """This process's opened store for ``options`` (opened at first use)."""
    key = options.key()
    with _stores_lock:
        found = _stores.get(key)
        if found is None:
            found = _stores[key] = WorkerStore(options)
        return found


def open_on_worker(options: dict) -> str:
    """Open the store on this worker now (the warm-up plugin; ``client.run``);
    returns the slot directory it uses."""
    return worker_store(StoreOptions.from_json(options)).slot


def close_worker_stores() -> None:
    """Close every store this process opened (tests; a worker just exits)."""
    with _stores_lock:
        stores = list(_stores.values())
        _stores.clear()
    for ws in stores:
        ws.close()


# -- one batch ------------------------------------------------------------------------


def _dask_task() -> tuple[Any, str | None]:
    """The Dask worker and the key of the task running in this thread, or
    (None, None) outside a Dask task."""
    try:
        from distributed import get_worker
        from distributed.worker import thread_state
        return get_worker(), getattr(thread_state, "key", None)
    except (ImportError, ValueError):
        return None, None


def _claim_run(ws: WorkerStore, job: str, batch: str, limit: int, who: str) -> int:
    """This run's number among the runs of the batch (1 for the first);
    ``limit + 1`` when ``limit`` runs were claimed already."""
    for run in range(1, limit + 1):
        body = json.dumps({"worker": who, "at": time.time(), "nonce": secrets.token_hex(8)}).encode()
        try:
            ws.store.backend.put_if(run_key(job, batch, run), body, None)
            return run
        except Conflict:
            continue
    return limit + 1


def run_batch(request: dict) -> dict:
    """Run a batch of datums (a Dask task; see the module's docstring)."""
    if request.get("protocol") != PROTOCOL:
        raise TrunkError(f"this worker's trunkfs speaks batch protocol {PROTOCOL}, the daemon sent "
                         f"{request.get('protocol')!r}: install the daemon's trunkfs version on the workers")
    worker, key = _dask_task()
    who = f"{socket.gethostname()} {worker.address}" if worker is not None else f"{socket.gethostname()}"
    datums = [(int(i), [(str(p), dict(e)) for p, e in d]) for i, d in request["datums"]]
    try:
        ws = worker_store(StoreOptions.from_json(request["store"]))
        ws.store.read_commit(str(request["input_commit"]))   # indexes the packs its files are in
    except (TrunkError, OSError) as exc:
        message = f"worker {who} cannot read the store {request['store'].get('url')}: {exc}"
        return _all_failed(datums, who, message)
    retries = int(request["retries"])
    run = _claim_run(ws, str(request["job"]), str(request["batch"]), retries + 1, who)
    if run > retries + 1:
        return _all_failed(datums, who, f"the workers running it died {retries + 1} times "
                                        f"(retries {retries})", run)
    batch = _Batch(ws, request, who, retries - (run - 1), run - 1)
    cancelled = trio.run(batch.run, datums, worker, key)
    return {"protocol": PROTOCOL, "worker": who, "run": run, "packs": batch.packs,
            "cancelled": cancelled, "datums": batch.results}


def _all_failed(datums: list[tuple[int, Datum]], who: str, message: str, run: int = 0) -> dict:
    results = []
    for index, datum in datums:
        entry = DatumLog.failed(datum_paths(datum), message, who)
        results.append({"index": index, "tree": None, "error": message, "log": entry.to_json(),
                        "output_bytes": 0})
    return {"protocol": PROTOCOL, "worker": who, "run": run, "packs": [], "cancelled": False,
            "datums": results}


class _Batch:
    """The datums of one task, one after the other, their outputs in one
    write session (one pack for many small outputs)."""

    def __init__(self, ws: WorkerStore, request: dict, who: str, retries: int, deaths: int = 0) -> None:
        self.ws = ws
        self.request = request
        self.who = who
        self.retries = retries      # what the runs that died left of the pipeline's retries
        self.deaths = deaths        # runs of this batch whose worker died: each one was an attempt
        cmd = request["command"]
        self.command = Command(list(cmd["argv"]), dict(cmd.get("env") or {}), cmd.get("stdin"),
                               float(cmd["timeout"]), os.geteuid(), os.getegid())
        self.sandbox = Sandbox(int(request.get("log_limit") or 0), None)
        self.budget = OutputBudget(int(request.get("output_limit") or 0))
        self.done: list[tuple[int, DatumLog, str | None, int]] = []   # index, log, tree, output bytes
        self.results: list[dict] = []
        self.packs: list[str] = []

    async def run(self, datums: list[tuple[int, Datum]], worker: Any, key: str | None) -> bool:
        """Run every datum; True when the scheduler cancelled the batch
        (nothing is stored then: no one waits for its manifest)."""
        session = self.ws.store.session()
        base = await trio.to_thread.run_sync(
            lambda: tempfile.mkdtemp(prefix=f"{self.request['job']}-{self.request['batch']}-",
                                     dir=self.ws.work_dir))
        inputs = DatumInputs(self.ws.store, _in_thread, None, self.ws.read_file)
        try:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    if worker is not None and key is not None:
                        nursery.start_soon(_watch_cancel, worker, key, scope)
                    for index, datum in datums:
                        await self._datum(session, inputs, base, index, datum)
                    nursery.cancel_scope.cancel()
            if scope.cancelled_caught:
                session.abort()
                return True
            started = time.perf_counter()
            await trio.to_thread.run_sync(session.flush)
            _share_flush([e.stats for _, e, _, _ in self.done if e.stats is not None],
                         time.perf_counter() - started)
            self.packs = session.pack_ids()
        except BaseException:
            session.abort()
            raise
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(remove_tree, base)
        self.results = [{"index": index, "tree": tree, "error": None if tree else entry.error or "failed",
                         "log": entry.to_json(), "output_bytes": size}
                        for index, entry, tree, size in self.done]
        return False

    async def _datum(self, session: Any, inputs: DatumInputs, base: str, index: int, datum: Datum) -> None:
        req = self.request
        stats = DatumStats(self.who, download_bytes=datum_bytes(datum))
        entry = DatumLog(datum_paths(datum), stats=stats)
        env = {"TRUNKFS_DATUM": "\n".join(entry.paths), "TRUNKFS_JOB": str(req["job"]),
               "TRUNKFS_PIPELINE": str(req["pipeline"]), "TRUNKFS_INPUT_COMMIT": str(req["input_commit"])}

        def prepare(attempt: int) -> AbstractAsyncContextManager[AttemptDirs]:
            return timed_attempt(stats, inputs.attempt(os.path.join(base, f"d{index}-{attempt}"),
                                                       str(req["input_repo"]), str(req["input_commit"]), datum))

        started = time.perf_counter()
        try:
            ran = await run_datum(self.command, self.retries, prepare, entry, env, self.sandbox)
        except (TrunkError, OSError) as exc:    # its input could not be read
            entry.attempt_ended(RunResult(None, "", "", f"cannot prepare its input: {exc}"))
            self._result(index, entry, None, 0)
            return
        stats.process_s = time.perf_counter() - started - stats.download_s
        entry.attempts += self.deaths
        if not ran.ok:
            self._result(index, entry, None, 0)
            return
        started = time.perf_counter()
        try:
            root = await trio.to_thread.run_sync(
                lambda: ingest_dir(session, ran.dirs.output, privileged=False, reader=None, budget=self.budget))
        except (UnsafeOutput, OSError) as exc:
            message = str(exc) if isinstance(exc, UnsafeOutput) else f"cannot store its output: {exc}"
            kept = entry.last or ran.result
            entry.attempt_ended(RunResult(kept.exit, kept.stdout, kept.stderr, message))
            self._result(index, entry, None, 0)
            return
        stats.upload_s = time.perf_counter() - started
        stats.upload_bytes = int(root.get("size") or 0)
        self._result(index, entry, str(root["tree"]), stats.upload_bytes)

    def _result(self, index: int, entry: DatumLog, tree: str | None, size: int) -> None:
        self.done.append((index, entry, tree, size))


async def _in_thread(fn: Any, *args: Any) -> Any:
    return await trio.to_thread.run_sync(lambda: fn(*args))


def _cancelled(worker: Any, key: str) -> bool:
    ts = worker.state.tasks.get(key)
    return ts is None or ts.state not in _RUNNING


async def _watch_cancel(worker: Any, key: str, scope: trio.CancelScope) -> None:
    """Cancel the batch (its command is killed) once the scheduler no
    longer wants the task: the job was cancelled, or its daemon is gone."""
    while True:
        await trio.sleep(CANCEL_POLL)
        if _cancelled(worker, key):
            log.info("batch %s was cancelled on the scheduler; stopping its command", key)
            scope.cancel()
            return


def _share_flush(stats: list[DatumStats], seconds: float) -> None:
    """The batch's last pack upload, shared among its datums by output bytes."""
    total = sum(s.upload_bytes for s in stats)
    for s in stats:
        s.upload_s += seconds * (s.upload_bytes / total if total else 1 / max(1, len(stats)))
