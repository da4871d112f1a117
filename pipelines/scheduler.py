"""The job scheduler: every new commit on a pipeline's input branch runs the
pipeline.

One job per (pipeline, input commit), run in creation order per pipeline
(one runner task per pipeline; pipelines run side by side).  A job cuts its
input commit into datums; each datum runs the command in the process
sandbox (:mod:`.runner`) on inputs bound from the mount or copied
(:mod:`.inputs`), unless a datum with the same content hash was processed
by the same pipeline (its id, not its name) and version before: then it
reuses that output.  A job first checks that its pipeline's owner still
exists and still has ``read`` on the input repo and ``write`` on the
output repo; outputs are stored without trusting what the datum's user
wrote (:mod:`.datums`), within the job's output budget.  All
outputs merge into one commit on the output repo through the daemon's
commit path, with the input commit as provenance.  Job records live in the
store (:mod:`.jobs`), so they survive a restart; a job that was running
runs again, up to ``MAX_RESTARTS`` starts, then fails.  Whatever a job's
run raises (an exception group out of its datums' nursery too) fails that
job, never the scheduler.

The scheduler is the commit path's trigger: :meth:`JobScheduler.plan`
makes the jobs of a new commit (their records, in the store),
:meth:`JobScheduler.start` announces and queues them.

Many daemons on one store share the jobs (docs/consistency.md): the
daemon that commits makes the jobs; any daemon that runs jobs (``run_jobs``)
may run them.  A job runs under a lease (:mod:`.leases`), claimed only
when it is the oldest open job of its pipeline, so that a pipeline's
outputs still commit in the order of its inputs; a daemon that dies loses
its lease after ``job_lease_seconds`` and another one runs the job again
(datums done already are reused); the output commit is fenced
(:mod:`.output`) so that a job commits once.  Each daemon finds the open
jobs by listing ``jobq/`` every poll, and ``job list`` reads the records
of the jobs other daemons changed.

Blocking pipeline work (store reads, copying inputs, ingesting outputs,
removing job directories) runs in worker threads under a limiter of the
scheduler's own (:attr:`JobScheduler.limiter`), not the daemon's workers
nor trio's default limiter: the mount and the socket use those, and a job
ingesting gigabytes must never leave them waiting for a thread.
"""

from __future__ import annotations

import builtins
import functools
import json
import logging
import os
import pwd
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import trio

from ..store.changes import Change, CommitMeta, author_of
from ..store.access import READ, WRITE, Caller, allows
from ..store.errors import NotFound, TrunkError
from ..store.store import Store
from .datums import Datum, MergeConflict, OutputBudget, cut_datums, datum_hash, store_merged
from .executors import DatumOutcome, Executor, JobWork
from .inputs import JOB_DIR_PREFIX, DatumInputs, ReadFile, Run, clear_stale_binds, remove_tree
from .local import LocalExecutor
from .jobs import CANCELLED, FAILED, RUNNING, SUCCEEDED, DatumCounts, DatumLog, DatumTimes, Job, \
    JobInput, JobRetention, JobStore, JobTable, new_job_id
from .leases import Lease, LeaseLost, Leases
from .order import input_order, superseded_by
from .output import AlreadyCommitted, JobOutput
from .registry import Pipeline, PipelineRegistry
from .runner import RunResult, Sandbox
from .spec import LOCAL

log = logging.getLogger(__name__)

T = TypeVar("T")

PIPELINE_THREADS = 4   # worker threads of the scheduler's own limiter
LEASE_SECONDS = 30.0   # a job's lease expires after this long without renewal
REFRESH_EVERY = 1.0    # seconds: ``job list`` reads other daemons' changes at most this often
PIPELINES_EVERY = 10.0  # seconds: how often a daemon without pipelines looks whether one was made
JOB_LOGS_FACTOR = 64   # a job keeps at most this many times job_log_limit of output in all


class OwnerRefused(TrunkError):
    """A pipeline's owner no longer exists, or lost a right its jobs need."""

    code = "permission_denied"


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


def _only_cancelled(group: BaseExceptionGroup) -> bool:
    return all(isinstance(exc, trio.Cancelled) for exc in _leaves(group))


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The first exception of a nursery's group that is not a Cancelled."""
    return next(exc for exc in _leaves(group) if not isinstance(exc, trio.Cancelled))


@dataclass
class _JobRun:
    """What the datums of one running job share."""
    job: Job
    pipeline: Pipeline
    outputs: list[str | None]          # each datum's output tree, by index
    packs: set[str]                    # the packs their blobs are in (hex ids)
    budget: OutputBudget               # the bytes the job's datums may store
    log_cap: int = 0                   # output kept in the job's record, all datums (0: no cap)
    writes: list[Future] = field(default_factory=list)   # reuse records being written
    log_bytes: int = 0                 # kept so far
    failures: list[str] = field(default_factory=list)

    def bound_log(self, entry: DatumLog) -> None:
        """Keep a datum's output in the job's record while the job's total
        stays within ``log_cap``; past it, a note takes its place (its exit
        and error stay), so many noisy datums cannot fill the daemon's
        memory or the record."""
        last = entry.last
        if last is None or not self.log_cap:
            return
        size = len(last.stdout) + len(last.stderr)
        if self.log_bytes + size <= self.log_cap:
            self.log_bytes += size
            return
        note = (f"[trunkfs: {size} bytes of this datum's output dropped: the job's logs reached "
                f"{self.log_cap} bytes ({JOB_LOGS_FACTOR} x job_log_limit)]")
        entry.last = RunResult(last.exit, note, "", last.error)


@dataclass
class _Holding:
    """A pipeline's lease while this daemon runs its jobs."""
    lease: Lease
    job: Job | None = None      # the job that runs now
    lost: bool = False          # another daemon took the lease over


def _lease_name(pipeline: str) -> str:
    return f"pipelines/{pipeline}"


Publish = Callable[[dict], None]   # hands an event to the watchers


class Committed(Protocol):
    """What a commit gives back: its id and the jobs it started downstream."""

    id: str
    jobs: list[str]


class Committer(Protocol):
    """The daemon's commit path (``trunkfs.daemon.commits.CommitPath``)."""

    async def commit(self, repo: str, branch: str, change: Change,
                     meta: CommitMeta) -> Committed: ...


class JobScheduler:
    """Jobs from new commits to their output commits.  It gets from the daemon
    only what it is given here: the commit path, a way to publish events and
    a way to run blocking work in a thread; it imports nothing of the daemon."""

    def __init__(self, store: Store, registry: PipelineRegistry, commits: Committer,
                 publish: Publish, run: Run, mountpoint: str | None = None,
                 daemon_id: str = "", output_limit: int = 0, threads: int = PIPELINE_THREADS,
                 sandbox: Sandbox | None = None, retention: JobRetention | None = None,
                 run_jobs: bool = True, lease_seconds: float = LEASE_SECONDS,
                 executors: Mapping[str, Executor] | None = None,
                 read_file: ReadFile | None = None) -> None:
        """``read_file`` reads the bytes of input files copied out of the
        store (the daemon's chunk cache; default: straight from the store)."""
        # the start of the daemon's id (store/fleet.py) is in the name of every job
        # directory, so that at start a daemon detaches the datum binds it
        # left, never those of another daemon on the machine
        self.daemon = daemon_id
        self.work_prefix = f"{JOB_DIR_PREFIX}{daemon_id[:8]}-" if daemon_id else JOB_DIR_PREFIX
        self.run_jobs = run_jobs             # False: this daemon makes jobs but never runs one
        self.leases = Leases(store.backend, daemon_id or "local", lease_seconds)
        self.poll_interval = min(2.0, lease_seconds / 3)
        self._lease_limiter = trio.CapacityLimiter(2)   # renewals never wait behind datum work
        self._held: dict[str, Job] = {}       # jobs this daemon runs now
        self._refreshed = 0.0
        self.store = store
        self.registry = registry
        self.commits = commits
        self.publish = publish
        self.run_sync = run                  # the daemon's workers: records, the registry
        self.output_limit = output_limit     # bytes a job may store (job_output_limit); 0: no cap
        self.limiter = trio.CapacityLimiter(threads)   # pipeline work (see the module's docstring)
        self.sandbox = sandbox or Sandbox()  # log limit and cgroups of datum processes
        self.records = JobStore(store.backend, retention)
        self.jobs = JobTable()
        self.datum_times = DatumTimes()      # how long the datums that ran here took (``/metrics``)
        self.inputs = DatumInputs(store, self.work, mountpoint, read_file)
        # where datums run: this daemon's subprocesses, and the Dask clusters its admin listed
        self.executors: dict[str, Executor] = {
            LOCAL: LocalExecutor(self.inputs, self.sandbox, self.work, self.work_prefix, daemon_id)}
        self.executors.update({k: v for k, v in (executors or {}).items() if k != LOCAL})
        self._unrunnable: set[str] = set()    # pipelines of executors this daemon lacks (logged once)
        self._wake: dict[str, trio.Event] = {}
        self._changed = trio.Event()
        self._cancel: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self._runners: set[str] = set()

    async def work(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread of the scheduler's own limiter."""
        return await trio.to_thread.run_sync(functools.partial(fn, *args), limiter=self.limiter)

    # -- records ---------------------------------------------------------------

    async def _persist(self, job: Job, announce: bool = True) -> None:
        """Save a job's record (encoded here, on the event loop) and wake waiters."""
        self._wake_waiters()
        await self.run_sync(self.records.save, job.id, job.encode())
        if announce:
            self.announce(job)

    def _wake_waiters(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _lease_op(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._lease_limiter)

    # -- what other daemons did ------------------------------------------------------

    def _take(self, fresh: Job | None, job_id: str, drop_gone: bool = False) -> bool:
        """Put a record read from the store into the table (announced when
        its state changed); True when it changed.  Jobs this daemon runs
        are its own to change."""
        if job_id in self._held:
            return False
        known = self.jobs.get_exact(job_id)
        if fresh is None:
            if drop_gone and known is not None and known.done:   # pruned elsewhere
                self.jobs.remove(job_id)
            return False
        if known is not None and known.encode() == fresh.encode():
            return False
        self.jobs.add(fresh)
        if known is None or known.state != fresh.state or known.datums != fresh.datums:
            self.announce(fresh)
        self._wake_waiters()
        return True

    def _poll_sync(self) -> list[tuple[str, Job | None]]:
        """The open jobs' records (and those of jobs the table has open that
        are no longer: finished elsewhere), in a worker thread."""
        open_ids = set(self.records.open_ids())
        ours = set(self._held)
        wanted = {i for i in open_ids if i not in ours}
        wanted |= {j.id for j in self.jobs.list() if not j.done and j.id not in ours}
        return [(i, self.records.load_one(i)) for i in sorted(wanted)]

    async def poll(self) -> None:
        """Read the open jobs of every daemon into the table once."""
        for job_id, fresh in await self.work(self._poll_sync):
            self._take(fresh, job_id)
        for name in {j.pipeline for j in self.jobs.list() if not j.done}:
            self._kick(name)

    def _refresh_sync(self) -> list[tuple[str, Job | None]]:
        known = {j.id: j for j in self.jobs.list()}
        ids = set(self.records.ids())
        out: list[tuple[str, Job | None]] = [(i, None) for i in known if i not in ids]
        for i in ids:
            if i not in self._held and (i not in known or not known[i].done):
                out.append((i, self.records.load_one(i)))
        return out

    async def refresh(self) -> None:
        """Read every job record other daemons made or changed (``job list``,
        ``job show``), at most once per REFRESH_EVERY."""
        if time.monotonic() - self._refreshed < REFRESH_EVERY:
            return
        self._refreshed = time.monotonic()
        for job_id, fresh in await self.work(self._refresh_sync):
            self._take(fresh, job_id, drop_gone=True)

    def announce(self, job: Job) -> None:
        """Tell watchers about a job's state."""
        self.publish(job.event())

    def load(self) -> None:
        """Read every job record (sync, at start); a running job goes back to the
        queue, or fails when it was found running at too many starts."""
        if os.geteuid() == 0:
            clear_stale_binds(self.work_prefix)
        if self.daemon:    # the job directories this daemon left when it died (never another's)
            tmp = tempfile.gettempdir()
            for name in os.listdir(tmp):
                if name.startswith(self.work_prefix):
                    log.info("removing the job directory %s left by this daemon", name)
                    remove_tree(os.path.join(tmp, name))
        for job in self.records.load_at_start(self.daemon or None):
            self.jobs.add(job)

    def list(self, pipeline: str | None = None) -> builtins.list[Job]:
        """Jobs in creation order (only ``pipeline``'s if given)."""
        return self.jobs.list(pipeline)

    def get(self, job_id: str) -> Job:
        """A job by id or unique prefix (NotFound otherwise)."""
        return self.jobs.get(job_id)

    async def wait(self, job_id: str) -> Job:
        job_id = self.get(job_id).id
        while True:
            job = self.get(job_id)
            if job.done:
                return job
            with trio.move_on_after(self.poll_interval):
                await self._changed.wait()
            if job_id not in self._held:    # it may run on another daemon
                self._take(await self.work(self.records.load_one, job_id), job_id)

    async def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.done:
            return job
        if job.id in self._cancel:           # it runs here
            self._cancel[job.id].cancel()
            return await self.wait(job.id)
        lease = await self._lease_op(self.leases.claim, _lease_name(job.pipeline))
        if lease is None:     # another daemon (or this one's runner) holds the pipeline: ask it
            await self._lease_op(self.leases.ask_cancel, job.id)
            self._kick(job.pipeline)
            return await self.wait(job.id)
        try:
            fresh = await self.work(self.records.load_one, job.id) or job
            if not fresh.done:
                await self._finish_unrun(fresh, CANCELLED, "cancelled")
            else:
                self._take(fresh, fresh.id)
            return fresh
        finally:
            await self._lease_op(self.leases.release, lease)

    async def _finish_unrun(self, job: Job, state: str, error: str) -> None:
        """End an open job that will not run (cancelled, superseded, failed
        at too many restarts): its final record, then its marker."""
        if not job.done:
            job.state, job.error = state, error
        job.finished = job.finished or time.time()
        self.jobs.add(job)
        await self._close(job)

    async def _close(self, job: Job) -> None:
        """A finished job's final record, then its open marker and any cancel request."""
        await self._persist(job)
        await self.run_sync(self.records.closed, job.id)
        try:
            await self._lease_op(self.leases.clear_cancel, job.id)
        except (TrunkError, OSError):
            pass

    # -- triggering --------------------------------------------------------------

    async def plan(self, repo: str, branch: str, commit: str) -> builtins.list[Job]:
        """New (not yet started) jobs for every pipeline reading ``repo@branch``.

        The commit path announces the commit, then :meth:`start`\\ s the
        jobs, so that watchers see events in the order they happen.
        """
        pipelines = await self.run_sync(self.registry.list)
        return [await self.new_job(p, commit) for p in pipelines
                if p.spec.input_repo == repo and p.spec.input_branch == branch]

    async def start(self, jobs: builtins.list[Job]) -> builtins.list[str]:
        for job in jobs:
            self.announce(job)
        return [await self.submit(job) for job in jobs]

    async def new_job(self, pipeline: Pipeline, commit: str) -> Job:
        """A new queued job, its record made in the store under an id no
        other record has."""
        spec = pipeline.spec
        while True:
            job = Job(id=new_job_id(), pipeline=pipeline.name, version=pipeline.version,
                      input=JobInput(spec.input_repo, spec.input_branch, commit), output=spec.output,
                      created=time.time())
            if await self.run_sync(self.records.create, job):
                return job

    async def submit(self, job: Job) -> str:
        """Take a new job (its record made by :meth:`new_job`) into the
        table and wake its pipeline's runner."""
        self.jobs.add(job)
        self._wake_waiters()
        self._kick(job.pipeline)
        log.info("queued job %s of pipeline %s for %s@%s", job.id, job.pipeline,
                 job.input.repo, job.input.commit[:12])
        return job.id

    async def enqueue(self, pipeline: Pipeline, commit: str) -> str:
        """A job of ``pipeline`` on ``commit``, announced and queued (``--reprocess``)."""
        job = await self.new_job(pipeline, commit)
        self.announce(job)
        return await self.submit(job)

    def _kick(self, pipeline: str) -> None:
        self._wake.setdefault(pipeline, trio.Event()).set()
        if self._nursery is not None and self.run_jobs and pipeline not in self._runners:
            self._runners.add(pipeline)
            self._nursery.start_soon(self._runner, pipeline)

    # -- running -------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run queued jobs until cancelled (the daemon's nursery)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for name in {j.pipeline for j in self.jobs.list() if not j.done}:
                    self._kick(name)
                if self.run_jobs:
                    nursery.start_soon(self._poller)
                task_status.started()
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                for executor in self.executors.values():   # a Dask client's connection
                    await executor.aclose()

    async def _poller(self) -> None:
        """Find the jobs other daemons made or run, every poll interval, while
        the store has pipelines (looked for every PIPELINES_EVERY seconds)."""
        looked, has_pipelines = -PIPELINES_EVERY, False
        while True:
            try:
                if time.monotonic() - looked >= PIPELINES_EVERY:
                    looked = time.monotonic()
                    has_pipelines = bool(await self.run_sync(self.registry.list))
                if has_pipelines or any(not j.done for j in self.jobs.list()):
                    await self.poll()
            except (TrunkError, OSError) as exc:
                log.warning("cannot read the open jobs from the store: %s", exc)
            await trio.sleep(self.poll_interval)

    async def _runner(self, pipeline: str) -> None:
        """While the pipeline has open jobs: hold its lease and run them, one
        after the other; when another daemon holds it, look again later."""
        while True:
            if all(j.done for j in self.jobs.list(pipeline)):
                event = self._wake[pipeline] = trio.Event()
                await event.wait()
                continue
            if not await self._runnable_here(pipeline):   # a daemon with its executor runs it
                event = self._wake[pipeline] = trio.Event()
                with trio.move_on_after(self.poll_interval):
                    await event.wait()
                continue
            try:
                lease = await self._lease_op(self.leases.claim, _lease_name(pipeline))
            except (TrunkError, OSError) as exc:
                log.warning("cannot claim the lease of pipeline %s: %s", pipeline, exc)
                lease = None
            if lease is None:          # another daemon runs its jobs: look again later
                event = self._wake[pipeline] = trio.Event()
                with trio.move_on_after(self.poll_interval):
                    await event.wait()
                continue
            try:
                await self._hold(pipeline, _Holding(lease))
            except Exception:  # e.g. a record could not be saved: the runner goes on
                log.exception("running the jobs of pipeline %s stopped by an error", pipeline)
            finally:
                with trio.CancelScope(shield=True):
                    try:
                        await self._lease_op(self.leases.release, lease)
                    except (TrunkError, OSError) as exc:   # it expires
                        log.warning("cannot release the lease of pipeline %s: %s", pipeline, exc)
            try:   # finished jobs past the retention (job_keep_days, job_keep_count)
                await self.work(self.records.prune, self.jobs, pipeline)
            except Exception:
                log.exception("pruning the jobs of pipeline %s failed", pipeline)

    async def _runnable_here(self, name: str) -> bool:
        """Whether this daemon has the pipeline's executor (a deleted or
        unreadable pipeline counts as runnable: its job then ends here)."""
        try:
            pipeline, _ = await self.run_sync(self.registry.get, name)
        except (TrunkError, OSError):
            return True
        if pipeline.spec.executor in self.executors:
            self._unrunnable.discard(name)
            return True
        if name not in self._unrunnable:
            self._unrunnable.add(name)
            log.warning("pipeline %s runs on executor %r, which this daemon's configuration does not "
                        "list: its jobs wait for a daemon that has it", name, pipeline.spec.executor)
        return False

    async def _hold(self, pipeline: str, hold: "_Holding") -> None:
        """Under the pipeline's lease (renewed meanwhile): run its open jobs,
        oldest input first, until none is left or the lease is lost."""
        async with trio.open_nursery() as keeper:
            keeper.start_soon(self._keep_lease, pipeline, hold)
            try:
                while not hold.lost:
                    job = await self._next_job(pipeline)
                    if job is None:
                        break
                    hold.job = job
                    try:
                        await self._run_job(job, hold)
                    finally:
                        hold.job = None
                        self._held.pop(job.id, None)
            finally:
                keeper.cancel_scope.cancel()

    async def _next_job(self, pipeline: str) -> Job | None:
        """The next job to run (read from the store under the lease), after
        ending those that will not run: cancelled from another daemon,
        superseded by a later input, found running at too many restarts."""
        await self.poll()
        while True:
            candidates = [j for j in self.jobs.list(pipeline) if not j.done]
            if not candidates:
                return None
            job = (await self.work(input_order, self.store, self.registry.refs, candidates))[0]
            fresh = await self.work(self.records.load_one, job.id)
            if fresh is None or fresh.done:
                if fresh is None:
                    self.jobs.remove(job.id)
                else:
                    self._take(fresh, job.id)
                    await self.run_sync(self.records.closed, job.id)
                continue
            if await self._lease_op(self.leases.cancel_asked, fresh.id):
                await self._finish_unrun(fresh, CANCELLED, "cancelled")
                continue
            later = await self.work(superseded_by, self.store, self.registry.refs, fresh)
            if later is not None:
                log.info("job %s of pipeline %s is superseded: the output of a later input "
                         "(%s) is committed already", fresh.id, pipeline, later[:12])
                await self._finish_unrun(fresh, CANCELLED, f"superseded: the output of a later "
                                         f"input commit ({later[:12]}) is committed already")
                continue
            if fresh.state == RUNNING:      # its daemon stopped or lost the lease mid-job
                fresh.interrupted()
                if fresh.done:
                    await self._finish_unrun(fresh, FAILED, fresh.error or "interrupted")
                    continue
            self.jobs.add(fresh)
            self._held[fresh.id] = fresh
            return fresh

    async def _keep_lease(self, pipeline: str, hold: "_Holding") -> None:
        """Renew the pipeline's lease every third of its time to live; stop
        the job that runs when another daemon took the lease over or someone
        asked to cancel it."""
        while True:
            await trio.sleep(self.leases.ttl / 3)
            try:
                await self._lease_op(self.leases.renew, hold.lease)
            except LeaseLost:
                log.warning("pipeline %s: another daemon took over its lease; stopping its job here",
                            pipeline)
                hold.lost = True
                if hold.job is not None and hold.job.id in self._cancel:
                    self._cancel[hold.job.id].cancel()
                return
            except (TrunkError, OSError) as exc:   # the next renewal tries again
                log.warning("cannot renew the lease of pipeline %s: %s", pipeline, exc)
                continue
            job = hold.job
            try:
                if job is not None and job.id in self._cancel and \
                        await self._lease_op(self.leases.cancel_asked, job.id):
                    log.info("job %s: cancelled from another daemon", job.id)
                    self._cancel[job.id].cancel()
            except (TrunkError, OSError):
                pass

    async def _still_held(self, lease: Lease) -> bool:
        """Whether the lease is still this daemon's (True when the store cannot say)."""
        try:
            return await self._lease_op(self.leases.holds, lease)
        except (TrunkError, OSError) as exc:
            log.warning("cannot read the lease %s: %s", lease.name, exc)
            return True

    async def _run_job(self, job: Job, hold: "_Holding") -> None:
        try:
            pipeline, _ = await self.run_sync(self.registry.get, job.pipeline)
        except NotFound:
            await self._finish_unrun(job, CANCELLED, "the pipeline was deleted")
            return
        job.state, job.started, job.error, job.daemon = RUNNING, time.time(), None, self.daemon or None
        job.datums = DatumCounts()
        await self._persist(job)
        scope = trio.CancelScope()
        self._cancel[job.id] = scope
        try:
            with scope:
                await self._execute(job, pipeline, hold.lease)
            if scope.cancelled_caught:
                job.state, job.error = CANCELLED, "cancelled"
        except LeaseLost as exc:
            hold.lost = True
            log.warning("job %s of pipeline %s: %s", job.id, job.pipeline, exc)
        except AlreadyCommitted as exc:
            job.state, job.output_commit, job.downstream_jobs = SUCCEEDED, exc.commit, []
            log.info("job %s of pipeline %s: committed already by another daemon as %s", job.id,
                     job.pipeline, exc.commit[:12])
        except (TrunkError, MergeConflict, OSError) as exc:
            job.state, job.error = FAILED, str(exc)
            log.warning("job %s of pipeline %s failed: %s", job.id, job.pipeline, exc)
        except BaseExceptionGroup as group:  # out of the datums' nursery
            if _only_cancelled(group):
                raise
            self._crashed(job, _first_error(group))
        except Exception as exc:  # a bug, not the job's fault: the job fails, the daemon goes on
            self._crashed(job, exc)
        finally:
            self._cancel.pop(job.id, None)
            job.finished = time.time()
            with trio.CancelScope(shield=True):
                if not hold.lost and not await self._still_held(hold.lease):
                    hold.lost = True
                if hold.lost:      # the daemon that took over writes its record
                    self._held.pop(job.id, None)
                    self._take(await self.work(self.records.load_one, job.id), job.id)
                else:
                    await self._close(job)

    def _crashed(self, job: Job, exc: BaseException) -> None:
        job.state, job.error = FAILED, f"internal error: {exc!r}"
        if isinstance(exc, (TrunkError, MergeConflict, OSError)):
            job.error = str(exc)
            log.warning("job %s of pipeline %s failed: %s", job.id, job.pipeline, exc)
        else:
            log.error("job %s of pipeline %s failed by an internal error", job.id, job.pipeline,
                      exc_info=exc)

    def owner_of(self, pipeline: Pipeline) -> Caller:
        """Whom ``pipeline`` runs as, checked now: the uid still exists (unless
        it is the daemon's own) and still has ``read`` on the input repo and
        ``write`` on the output repo.  Raises :class:`OwnerRefused`."""
        uid, gid = int(pipeline.owner.get("uid", 0)), int(pipeline.owner.get("gid", 0))
        if uid != os.geteuid():
            try:
                pwd.getpwuid(uid)
            except KeyError:
                raise OwnerRefused(f"owner uid {uid} of pipeline {pipeline.name!r} no longer exists") from None
        owner = Caller(uid, gid)
        spec = pipeline.spec
        for repo, role in ((spec.input_repo, READ), (spec.output, WRITE)):
            if not allows(owner, self.registry.refs.get_repo(repo), role):
                raise OwnerRefused(f"owner uid {uid} of pipeline {pipeline.name!r} no longer has "
                                   f"{role} on repo {repo!r}")
        return owner

    async def _execute(self, job: Job, pipeline: Pipeline, lease: Lease | None = None) -> None:
        spec = pipeline.spec
        executor = self.executors.get(spec.executor)
        if executor is None:
            raise TrunkError(f"executor {spec.executor!r} of pipeline {pipeline.name!r} is not one of "
                             f"this daemon's ({', '.join(sorted(self.executors))})")
        owner = await self.work(self.owner_of, pipeline)
        commit = await self.work(self.store.read_commit, job.input.commit)
        datums = await self.work(cut_datums, self.store, commit.tree, spec.glob)
        job.datums.total = len(datums)
        run = _JobRun(job, pipeline, [None] * len(datums), set(), OutputBudget(self.output_limit),
                      log_cap=JOB_LOGS_FACTOR * self.sandbox.log_limit)
        keys = [self._reuse_key(pipeline, datum) for datum in datums]
        pending: builtins.list[tuple[int, Datum]] = []
        for index, (datum, reused) in enumerate(zip(datums, await self.work(self._reusable_all, keys))):
            if reused is None:
                pending.append((index, datum))
                continue
            tree, named = reused
            run.packs.update(named)
            run.outputs[index] = tree
            job.datums.skipped += 1

        async def record(index: int, datum: Datum, outcome: DatumOutcome) -> None:
            await self._record(run, index, keys[index], outcome)

        if pending:
            try:
                await executor.run(JobWork(self.store, job, pipeline, owner, run.budget, self.sandbox.log_limit),
                                   pending, record)
            finally:
                with trio.CancelScope(shield=True):
                    await self.work(self._reuse_records_written, run)
        if run.failures:
            raise TrunkError(f"{len(run.failures)} datum(s) failed: {run.failures[0]}")
        unrecorded = [index for index, _ in pending if run.outputs[index] is None]
        if unrecorded:     # an executor's bug: the output would silently lack these datums
            raise TrunkError(f"executor {spec.executor!r} returned without the outcome of "
                             f"{len(unrecorded)} datum(s) (first: datum {unrecorded[0]}); "
                             "the job's output is not committed")
        root = await self.work(store_merged, self.store, [t for t in run.outputs if t is not None], run.packs)
        provenance = [{"repo": spec.input_repo, "branch": spec.input_branch, "commit": job.input.commit}]
        origin = {"kind": "pipeline", "pipeline": pipeline.name, "version": pipeline.version, "job": job.id}
        change = JobOutput(root, self.store, job.id, job.created, run.packs, self.leases, lease)
        result = await self.commits.commit(spec.output, "main", change, CommitMeta(
            message=f"{pipeline.name} v{pipeline.version} on {spec.input_repo}@{job.input.commit[:12]}",
            author=author_of(int(pipeline.owner.get("uid", 0))), origin=origin, provenance=provenance))
        job.state, job.output_commit, job.downstream_jobs = SUCCEEDED, result.id, result.jobs
        log.info("job %s of pipeline %s succeeded: %s@%s", job.id, pipeline.name, spec.output,
                 result.id[:12])

    @staticmethod
    def _reuse_key(pipeline: Pipeline, datum: Datum) -> str:
        """Where the output of a datum of this content, processed by this
        pipeline (its id, not its name) and version, is recorded."""
        return f"datums/{pipeline.id}/{pipeline.version}/{datum_hash(datum)}"

    def _reusable(self, reuse_key: str) -> tuple[str, builtins.list[str]] | None:
        """The output tree (and the packs it is in, indexed here) that a datum
        of the same content left under ``reuse_key``, on any daemon."""
        found = self.store.backend.get_versioned(reuse_key)
        if found is None:
            return None
        record = json.loads(found[0])         # {"tree", "packs"}
        named = [str(p) for p in record.get("packs") or []]
        self.store.index_packs(named)
        return str(record["tree"]), named

    def _reusable_all(self, keys: builtins.list[str]) -> builtins.list[tuple[str, builtins.list[str]] | None]:
        """:meth:`_reusable` of every key, several at once (a round trip each on S3)."""
        return builtins.list(self.store.io_pool.map(self._reusable, keys))

    async def _record(self, run: _JobRun, index: int, reuse_key: str, outcome: DatumOutcome) -> None:
        """A datum's outcome, as its executor hands it back: its log (within
        the job's cap), its output for the merge, and its output recorded
        for reuse."""
        job, entry = run.job, outcome.log
        job.logs[str(index)] = entry
        run.bound_log(entry)
        if entry.stats is not None and entry.attempts:   # it ran (not refused before its command)
            self.datum_times.observe(run.pipeline.name, entry.stats.seconds)
        if outcome.error is not None or outcome.tree is None:
            job.datums.failed += 1
            run.failures.append(f"datum {index} ({', '.join(entry.paths[:3])}): {outcome.error}")
            return
        run.outputs[index] = outcome.tree
        run.packs.update(outcome.packs)
        job.datums.processed += 1
        # recorded for reuse in the background (a round trip each on S3); the job waits for
        # them before it merges (:meth:`_reuse_records_written`)
        run.writes.append(self.store.io_pool.submit(
            self.store.backend.put, reuse_key,
            json.dumps({"tree": outcome.tree, "packs": sorted(outcome.packs)}).encode()))

    @staticmethod
    def _reuse_records_written(run: _JobRun) -> None:
        """Wait for the reuse records of the job's datums; one that could not
        be written only means that datum runs again next time."""
        for write in run.writes:
            try:
                write.result()
            except (TrunkError, OSError) as exc:
                log.warning("job %s: a datum's output could not be recorded for reuse: %s", run.job.id, exc)
        run.writes.clear()
