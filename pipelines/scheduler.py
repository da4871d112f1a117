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
makes the jobs of a new commit, :meth:`JobScheduler.start` announces and
queues them.

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
from contextlib import AbstractAsyncContextManager
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import trio

from ..store.changes import Change, CommitMeta, ReplaceRoot, author_of
from ..store.access import READ, WRITE, Caller, allows
from ..store.errors import NotFound, TrunkError
from ..store.store import Store
from .datums import Datum, MergeConflict, OutputBudget, UnsafeOutput, cut_datums, datum_hash, datum_paths, \
    store_merged, store_output
from .inputs import JOB_DIR_PREFIX, DatumInputs, Run, clear_stale_binds, remove_tree
from .jobs import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, DatumCounts, DatumLog, Job, JobInput, \
    JobRetention, JobStore, JobTable, new_job_id
from .registry import Pipeline, PipelineRegistry
from .runner import AttemptDirs, Command, RunResult, Sandbox, run_datum

log = logging.getLogger(__name__)

T = TypeVar("T")

PIPELINE_THREADS = 4   # worker threads of the scheduler's own limiter
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
    work: str                          # the job's work directory
    limiter: trio.CapacityLimiter      # the pipeline's parallelism
    outputs: list[str | None]          # each datum's output tree, by index
    owner: Caller                      # whom the datums run as
    budget: OutputBudget               # the bytes the job's datums may store
    log_cap: int = 0                   # output kept in the job's record, all datums (0: no cap)
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
                 daemon_tag: str = "", output_limit: int = 0, threads: int = PIPELINE_THREADS,
                 sandbox: Sandbox | None = None, retention: JobRetention | None = None) -> None:
        # ``daemon_tag`` (the start of the daemon's id, store/fleet.py) is in the name
        # of every job directory, so that at start a daemon detaches the
        # datum binds it left, never those of another daemon on the machine
        self.work_prefix = f"{JOB_DIR_PREFIX}{daemon_tag}-" if daemon_tag else JOB_DIR_PREFIX
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
        self.inputs = DatumInputs(store, self.work, mountpoint)
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
        self._changed.set()
        self._changed = trio.Event()
        await self.run_sync(self.records.save, job.id, job.encode())
        if announce:
            self.announce(job)

    def announce(self, job: Job) -> None:
        """Tell watchers about a job's state."""
        self.publish(job.event())

    def load(self) -> None:
        """Read every job record (sync, at start); a running job goes back to the
        queue, or fails when it was found running at too many starts."""
        if os.geteuid() == 0:
            clear_stale_binds(self.work_prefix)
        for job in self.records.load_at_start():
            self.jobs.add(job)

    def list(self, pipeline: str | None = None) -> builtins.list[Job]:
        """Jobs in creation order (only ``pipeline``'s if given)."""
        return self.jobs.list(pipeline)

    def get(self, job_id: str) -> Job:
        """A job by id or unique prefix (NotFound otherwise)."""
        return self.jobs.get(job_id)

    async def wait(self, job_id: str) -> Job:
        job = self.get(job_id)
        while not job.done:
            await self._changed.wait()
        return job

    async def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.state == QUEUED:
            job.state = CANCELLED
            job.finished = time.time()
            await self._persist(job)
        elif job.state == RUNNING and job.id in self._cancel:
            self._cancel[job.id].cancel()
            await self.wait(job.id)
        return job

    # -- triggering --------------------------------------------------------------

    async def plan(self, repo: str, branch: str, commit: str) -> builtins.list[Job]:
        """New (not yet started) jobs for every pipeline reading ``repo@branch``.

        The commit path announces the commit, then :meth:`start`\\ s the
        jobs, so that watchers see events in the order they happen.
        """
        pipelines = await self.run_sync(self.registry.list)
        return [self.new_job(p, commit) for p in pipelines
                if p.spec.input_repo == repo and p.spec.input_branch == branch]

    async def start(self, jobs: builtins.list[Job]) -> builtins.list[str]:
        for job in jobs:
            self.announce(job)
        return [await self.submit(job) for job in jobs]

    def new_job(self, pipeline: Pipeline, commit: str) -> Job:
        job_id = new_job_id()
        while job_id in self.jobs:   # a record from another daemon sharing the store
            job_id = new_job_id()
        spec = pipeline.spec
        return Job(id=job_id, pipeline=pipeline.name, version=pipeline.version,
                   input=JobInput(spec.input_repo, spec.input_branch, commit), output=spec.output,
                   created=time.time())

    async def submit(self, job: Job) -> str:
        """Record a new job and wake its pipeline's runner."""
        self.jobs.add(job)
        await self._persist(job, announce=False)
        self._kick(job.pipeline)
        log.info("queued job %s of pipeline %s for %s@%s", job.id, job.pipeline,
                 job.input.repo, job.input.commit[:12])
        return job.id

    async def enqueue(self, pipeline: Pipeline, commit: str) -> str:
        """A job of ``pipeline`` on ``commit``, announced and queued (``--reprocess``)."""
        job = self.new_job(pipeline, commit)
        self.announce(job)
        return await self.submit(job)

    def _kick(self, pipeline: str) -> None:
        self._wake.setdefault(pipeline, trio.Event()).set()
        if self._nursery is not None and pipeline not in self._runners:
            self._runners.add(pipeline)
            self._nursery.start_soon(self._runner, pipeline)

    # -- running -------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run queued jobs until cancelled (the daemon's nursery)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for name in {j.pipeline for j in self.jobs.list(state=QUEUED)}:
                self._kick(name)
            task_status.started()
            await trio.sleep_forever()

    async def _runner(self, pipeline: str) -> None:
        """Run this pipeline's queued jobs one after the other, oldest first."""
        while True:
            queued = self.jobs.list(pipeline, state=QUEUED)
            if not queued:
                event = self._wake[pipeline] = trio.Event()
                await event.wait()
                continue
            job = queued[0]
            try:
                await self._run_job(job)
            except Exception:  # e.g. its record could not be saved: the runner goes on
                log.exception("job %s of pipeline %s ended by an error", job.id, pipeline)
                if not job.done:
                    job.state, job.error, job.finished = FAILED, "internal error (see the daemon log)", time.time()
            try:   # finished jobs past the retention (job_keep_days, job_keep_count)
                await self.work(self.records.prune, self.jobs, pipeline)
            except Exception:
                log.exception("pruning the jobs of pipeline %s failed", pipeline)

    async def _run_job(self, job: Job) -> None:
        try:
            pipeline, _ = await self.run_sync(self.registry.get, job.pipeline)
        except NotFound:
            job.state, job.error, job.finished = CANCELLED, "the pipeline was deleted", time.time()
            await self._persist(job)
            return
        job.state, job.started, job.error = RUNNING, time.time(), None
        job.datums = DatumCounts()
        await self._persist(job)
        scope = trio.CancelScope()
        self._cancel[job.id] = scope
        try:
            with scope:
                await self._execute(job, pipeline)
            if scope.cancelled_caught:
                job.state, job.error = CANCELLED, "cancelled"
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
                await self._persist(job)

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

    async def _execute(self, job: Job, pipeline: Pipeline) -> None:
        spec = pipeline.spec
        owner = await self.work(self.owner_of, pipeline)
        commit = await self.work(self.store.read_commit, job.input.commit)
        datums = await self.work(cut_datums, self.store, commit.tree, spec.glob)
        job.datums.total = len(datums)
        work = tempfile.mkdtemp(prefix=f"{self.work_prefix}{job.id[-12:]}-")
        os.chmod(work, 0o711)
        run = _JobRun(job, pipeline, work, trio.CapacityLimiter(spec.parallelism), [None] * len(datums),
                      owner, OutputBudget(self.output_limit), log_cap=JOB_LOGS_FACTOR * self.sandbox.log_limit)
        try:
            async with trio.open_nursery() as nursery:
                for i, datum in enumerate(datums):
                    nursery.start_soon(self._datum, run, i, datum)
        finally:
            with trio.CancelScope(shield=True):
                await self.work(remove_tree, work)
        if run.failures:
            raise TrunkError(f"{len(run.failures)} datum(s) failed: {run.failures[0]}")
        root = await self.work(store_merged, self.store, [t for t in run.outputs if t is not None])
        provenance = [{"repo": spec.input_repo, "branch": spec.input_branch, "commit": job.input.commit}]
        origin = {"kind": "pipeline", "pipeline": pipeline.name, "version": pipeline.version, "job": job.id}
        result = await self.commits.commit(spec.output, "main", ReplaceRoot(root), CommitMeta(
            message=f"{pipeline.name} v{pipeline.version} on {spec.input_repo}@{job.input.commit[:12]}",
            author=author_of(int(pipeline.owner.get("uid", 0))), origin=origin, provenance=provenance))
        job.state, job.output_commit, job.downstream_jobs = SUCCEEDED, result.id, result.jobs
        log.info("job %s of pipeline %s succeeded: %s@%s", job.id, pipeline.name, spec.output,
                 result.id[:12])

    async def _datum(self, run: _JobRun, index: int, datum: Datum) -> None:
        """One datum: its earlier output if its content was processed by this
        pipeline (its id) and version before, else a run of the command (with
        retries) and its output stored."""
        job, pipeline = run.job, run.pipeline
        spec = pipeline.spec
        reuse_key = f"datums/{pipeline.id}/{pipeline.version}/{datum_hash(datum)}"
        async with run.limiter:
            found = await self.work(self.store.backend.get_versioned, reuse_key)
            if found is not None:
                run.outputs[index] = json.loads(found[0])["tree"]
                job.datums.skipped += 1
                return
            entry = job.logs[str(index)] = DatumLog(datum_paths(datum))
            command = Command(spec.cmd, spec.env, spec.stdin, spec.timeout, run.owner.uid, run.owner.gid)
            root = os.geteuid() == 0
            env = {"TRUNKFS_DATUM": "\n".join(entry.paths), "TRUNKFS_JOB": job.id,
                   "TRUNKFS_PIPELINE": pipeline.name, "TRUNKFS_INPUT_COMMIT": job.input.commit}

            def prepare(attempt: int) -> AbstractAsyncContextManager[AttemptDirs]:
                return self.inputs.attempt(os.path.join(run.work, f"d{index}-{attempt}"),
                                           spec.input_repo, job.input.commit, datum,
                                           (command.uid, command.gid) if root else None)
            ran = await run_datum(command, spec.retries, prepare, entry, env, self.sandbox)
            run.bound_log(entry)
            if not ran.ok:
                job.datums.failed += 1
                run.failures.append(f"datum {index} ({', '.join(entry.paths[:3])}): {entry.error}")
                return
            ran_as = (command.uid, command.gid) if root else (os.geteuid(), os.getegid())  # the runner's rule
            try:
                tree = await self.work(store_output, self.store, ran.dirs.output, *ran_as, run.budget)
            except (UnsafeOutput, OSError) as exc:
                message = str(exc) if isinstance(exc, UnsafeOutput) else f"cannot store its output: {exc}"
                kept = entry.last or ran.result
                entry.attempt_ended(RunResult(kept.exit, kept.stdout, kept.stderr, message))
                job.datums.failed += 1
                run.failures.append(f"datum {index} ({', '.join(entry.paths[:3])}): {message}")
                return
            run.outputs[index] = tree
            job.datums.processed += 1
            await self.work(self.store.backend.put, reuse_key, json.dumps({"tree": tree}).encode())
