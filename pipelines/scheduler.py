"""Jobs: every new commit on a pipeline's input branch runs the pipeline.

One job per (pipeline, input commit), run in commit order per pipeline.
Each datum runs the command as a subprocess, as the pipeline's owner, in its
own process group, with an environment made only of the spec's ``env`` and
the TRUNKFS_* variables.  A datum whose content hash was processed by the same
pipeline version before reuses that output.  All outputs merge into one
commit on the output repo, with the input commit as provenance.  Job records
live in the store (``jobs/<id>``), so they survive a restart; a job that was
running is run again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
import time
import uuid
import trio

from ..daemon.commits import CommitMeta, CommitPath, ReplaceRoot, author_of
from ..daemon.events import EventBus
from ..daemon.workers import Workers
from ..store.errors import NotFound, ObjectMissing, TrunkError
from ..store.store import Store
from .inputs import JOB_DIR_PREFIX, bind_datum, clear_stale_binds, unmount
from .datums import MergeConflict, cut_datums, datum_hash, datum_paths, ingest_dir, materialize, merge_outputs
from .registry import Pipeline, PipelineRegistry

log = logging.getLogger(__name__)

JOB_VERSION = 1
LOG_LIMIT = 16 * 1024
FINAL = ("succeeded", "failed", "cancelled")


def _tail(data: bytes) -> str:
    if len(data) > LOG_LIMIT:
        data = b"...\n" + data[-LOG_LIMIT:]
    return data.decode("utf-8", "replace")


class JobManager:
    def __init__(self, store: Store, registry: PipelineRegistry, commits: CommitPath,
                 events: EventBus, workers: Workers, mountpoint: str | None = None) -> None:
        self.store = store
        self.backend = store.backend
        self.registry = registry
        self.commits = commits
        self.events = events
        self.workers = workers
        self.jobs: dict[str, dict] = {}
        self._wake: dict[str, trio.Event] = {}
        self._changed = trio.Event()
        self._cancel: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self._runners: set[str] = set()
        self.mountpoint = mountpoint  # when the daemon mounts: inputs come through it

    # -- records ---------------------------------------------------------------

    def _save(self, job: dict) -> None:
        self.backend.put(f"jobs/{job['id']}", json.dumps(job, sort_keys=True).encode())

    async def _persist(self, job: dict, announce: bool = True) -> None:
        self._changed.set()
        self._changed = trio.Event()
        await self.workers.run(self._save, dict(job))
        if announce:
            self.announce(job)

    def announce(self, job: dict) -> None:
        """Tell watchers about a job's state."""
        self.events.publish({"type": "job", "id": job["id"], "pipeline": job["pipeline"],
                              "state": job["state"], "input": job["input"], "output": job.get("output"),
                              "output_commit": job.get("output_commit"), "error": job.get("error"),
                              "datums": dict(job["datums"])})

    def load(self) -> None:
        """Read every job record (sync, at start); running jobs go back to the queue."""
        if os.geteuid() == 0:
            clear_stale_binds()
        for key in self.backend.list("jobs/"):
            try:
                job = json.loads(self.backend.get(key))
            except (ValueError, ObjectMissing):
                log.error("skipping unreadable job record %s", key)
                continue
            if job.get("state") == "running":
                job["state"] = "queued"
                log.info("job %s was running when the daemon stopped; it runs again", job["id"])
            self.jobs[job["id"]] = job

    def list(self, pipeline: str | None = None) -> list[dict]:
        jobs = sorted(self.jobs.values(), key=lambda j: j["id"])
        return [j for j in jobs if pipeline is None or j["pipeline"] == pipeline]

    def get(self, job_id: str) -> dict:
        job = self.jobs.get(job_id)
        if job is None:
            matches = [j for j in self.jobs if j.startswith(job_id)] if len(job_id) >= 6 else []
            if len(matches) != 1:
                raise NotFound(f"job {job_id!r} does not exist")
            job = self.jobs[matches[0]]
        return job

    async def wait(self, job_id: str) -> dict:
        job = self.get(job_id)
        while job["state"] not in FINAL:
            await self._changed.wait()
        return job

    async def cancel(self, job_id: str) -> dict:
        job = self.get(job_id)
        if job["state"] == "queued":
            job["state"] = "cancelled"
            job["finished"] = time.time()
            await self._persist(job)
        elif job["state"] == "running" and job["id"] in self._cancel:
            self._cancel[job["id"]].cancel()
            await self.wait(job["id"])
        return job

    # -- triggering --------------------------------------------------------------

    async def plan(self, repo: str, branch: str, commit: str) -> list[dict]:
        """New (not yet started) jobs for every pipeline reading ``repo@branch``.

        The commit path announces the commit, then :meth:`start`\ s the
        jobs, so that watchers see events in the order they happen.
        """
        pipelines = await self.workers.run(self.registry.list)
        return [self.new_job(p, commit) for p in pipelines
                if p.spec.input_repo == repo and p.spec.input_branch == branch]

    async def start(self, jobs: list[dict]) -> list[str]:
        for job in jobs:
            self.announce(job)
        return [await self.submit(job) for job in jobs]

    def new_job(self, pipeline: Pipeline, commit: str) -> dict:
        job_id = f"{time.time_ns():019d}-{uuid.uuid4().hex[:8]}"
        return {"v": JOB_VERSION, "id": job_id, "pipeline": pipeline.name, "version": pipeline.version,
                "input": {"repo": pipeline.spec.input_repo, "branch": pipeline.spec.input_branch,
                          "commit": commit},
                "output": pipeline.spec.output,
                "state": "queued", "created": time.time(), "started": None, "finished": None,
                "output_commit": None, "error": None,
                "datums": {"total": 0, "processed": 0, "skipped": 0, "failed": 0}, "logs": {}}

    async def submit(self, job: dict) -> str:
        """Record a new job and wake its pipeline's runner."""
        self.jobs[job["id"]] = job
        await self._persist(job, announce=False)
        self._kick(job["pipeline"])
        log.info("queued job %s of pipeline %s for %s@%s", job["id"], job["pipeline"],
                 job["input"]["repo"], job["input"]["commit"][:12])
        return job["id"]

    async def enqueue(self, pipeline: Pipeline, commit: str) -> str:
        job = self.new_job(pipeline, commit)
        self.announce(job)
        return await self.submit(job)

    def _kick(self, pipeline: str) -> None:
        self._wake.setdefault(pipeline, trio.Event()).set()
        if self._nursery is not None and pipeline not in self._runners:
            self._runners.add(pipeline)
            self._nursery.start_soon(self._runner, pipeline)

    # -- running -------------------------------------------------------------------

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for name in {j["pipeline"] for j in self.jobs.values() if j["state"] == "queued"}:
                self._kick(name)
            task_status.started()
            await trio.sleep_forever()

    async def _runner(self, pipeline: str) -> None:
        """Run this pipeline's queued jobs one after the other, oldest first."""
        while True:
            queued = [j for j in self.list(pipeline) if j["state"] == "queued"]
            if not queued:
                event = self._wake[pipeline] = trio.Event()
                await event.wait()
                continue
            await self._run_job(queued[0])

    async def _run_job(self, job: dict) -> None:
        try:
            pipeline, _ = await self.workers.run(self.registry.get, job["pipeline"])
        except NotFound:
            job.update(state="cancelled", error="the pipeline was deleted", finished=time.time())
            await self._persist(job)
            return
        job.update(state="running", started=time.time(), error=None)
        job["datums"] = {"total": 0, "processed": 0, "skipped": 0, "failed": 0}
        await self._persist(job)
        scope = trio.CancelScope()
        self._cancel[job["id"]] = scope
        try:
            with scope:
                await self._execute(job, pipeline)
            if scope.cancelled_caught:
                job.update(state="cancelled", error="cancelled")
        except (TrunkError, MergeConflict, OSError) as exc:
            job.update(state="failed", error=str(exc))
            log.warning("job %s of pipeline %s failed: %s", job["id"], job["pipeline"], exc)
        finally:
            self._cancel.pop(job["id"], None)
            job["finished"] = time.time()
            with trio.CancelScope(shield=True):
                await self._persist(job)

    async def _execute(self, job: dict, pipeline: Pipeline) -> None:
        spec = pipeline.spec
        store = self.store
        commit = await self.workers.run(store.read_commit, job["input"]["commit"])
        datums = await self.workers.run(cut_datums, store, commit.tree, spec.glob)
        job["datums"]["total"] = len(datums)
        outputs: list[str | None] = [None] * len(datums)
        failures: list[str] = []
        limiter = trio.CapacityLimiter(spec.parallelism)
        work = tempfile.mkdtemp(prefix=f"{JOB_DIR_PREFIX}{job['id'][-8:]}-")
        os.chmod(work, 0o711)
        try:
            async with trio.open_nursery() as nursery:
                for i, datum in enumerate(datums):
                    nursery.start_soon(self._datum, job, pipeline, i, datum, outputs, failures,
                                       limiter, work)
        finally:
            await trio.to_thread.run_sync(_remove_tree, work)
        if failures:
            raise TrunkError(f"{len(failures)} datum(s) failed: {failures[0]}")
        session = store.session()
        try:
            root = await self.workers.run(merge_outputs, store, session,
                                          [t for t in outputs if t is not None])
            await self.workers.run(session.flush)
        except BaseException:
            session.abort()
            raise
        provenance = [{"repo": spec.input_repo, "branch": spec.input_branch,
                       "commit": job["input"]["commit"]}]
        origin = {"kind": "pipeline", "pipeline": pipeline.name, "version": pipeline.version,
                  "job": job["id"]}
        result = await self.commits.commit(spec.output, "main", ReplaceRoot(root), CommitMeta(
            message=f"{pipeline.name} v{pipeline.version} on {spec.input_repo}@{job['input']['commit'][:12]}",
            author=author_of(int(pipeline.owner.get("uid", 0))), origin=origin, provenance=provenance))
        cid, downstream = result.id, result.jobs
        job.update(state="succeeded", output_commit=cid, downstream_jobs=downstream)
        log.info("job %s of pipeline %s succeeded: %s@%s", job["id"], pipeline.name, spec.output, cid[:12])

    async def _datum(self, job: dict, pipeline: Pipeline, index: int, datum: list, outputs: list,
                     failures: list, limiter: trio.CapacityLimiter, work: str) -> None:
        spec = pipeline.spec
        dhash = datum_hash(datum)
        reuse_key = f"datums/{pipeline.name}/{pipeline.version}/{dhash}"
        async with limiter:
            found = await self.workers.run(self.backend.get_versioned, reuse_key)
            if found is not None:
                outputs[index] = json.loads(found[0])["tree"]
                job["datums"]["skipped"] += 1
                return
            label = str(index)
            entry = {"paths": datum_paths(datum), "attempts": 0}
            job["logs"][label] = entry
            for attempt in range(spec.retries + 1):
                entry["attempts"] = attempt + 1
                ok, tree = await self._run_once(job, pipeline, datum, index, entry, work)
                if ok:
                    outputs[index] = tree
                    job["datums"]["processed"] += 1
                    await self.workers.run(self.backend.put, reuse_key,
                                           json.dumps({"tree": tree}).encode())
                    return
            job["datums"]["failed"] += 1
            failures.append(f"datum {index} ({', '.join(entry['paths'][:3])}): {entry.get('error')}")

    async def _run_once(self, job: dict, pipeline: Pipeline, datum: list, index: int, entry: dict,
                        work: str) -> tuple[bool, str | None]:
        spec = pipeline.spec
        base = os.path.join(work, f"d{index}-{entry['attempts']}")
        inp, out = os.path.join(base, "in"), os.path.join(base, "out")
        os.makedirs(inp)
        os.makedirs(out)
        os.chmod(base, 0o711)
        uid, gid = int(pipeline.owner.get("uid", 0)), int(pipeline.owner.get("gid", 0))
        binds: list[str] = []
        if self.mountpoint and os.geteuid() == 0:  # read through the mount: nothing is copied
            view = os.path.join(self.mountpoint, f"{spec.input_repo}@{job['input']['commit']}")
            try:
                binds = await self.workers.run(bind_datum, view, datum, inp)
            except OSError as exc:
                log.info("datum input through the mount failed (%s); copying instead", exc)
                await trio.to_thread.run_sync(_remove_tree, inp)
                os.makedirs(inp)
                binds = []
                await self.workers.run(materialize, self.store, datum, inp)
        else:
            await self.workers.run(materialize, self.store, datum, inp)
        try:
            return await self._spawn(job, pipeline, entry, inp, out, uid, gid)
        finally:
            for target in reversed(binds):
                unmount(target)

    async def _spawn(self, job: dict, pipeline: Pipeline, entry: dict, inp: str, out: str,
                     uid: int, gid: int) -> tuple[bool, str | None]:
        spec = pipeline.spec
        if os.geteuid() == 0:
            os.chown(out, uid, gid)
        env = dict(spec.env)
        env.update(TRUNKFS_INPUT=inp, TRUNKFS_OUTPUT=out, TRUNKFS_DATUM="\n".join(entry["paths"]),
                   TRUNKFS_JOB=job["id"], TRUNKFS_PIPELINE=pipeline.name,
                   TRUNKFS_INPUT_COMMIT=job["input"]["commit"])
        as_user = {}
        if os.geteuid() == 0 and uid != 0:
            as_user = {"user": uid, "group": gid, "extra_groups": []}
        try:
            proc = await trio.lowlevel.open_process(
                spec.cmd, stdin=-1, stdout=-1, stderr=-1, cwd=inp, env=env,
                start_new_session=True, **as_user)
        except OSError as exc:
            entry.update(exit=None, error=f"cannot start {spec.cmd[0]!r}: {exc.strerror}", stdout="", stderr="")
            return False, None
        outputs = {"stdout": bytearray(), "stderr": bytearray()}

        async def drain(stream, name: str) -> None:
            buf = outputs[name]
            async for data in stream:
                buf += data
                if len(buf) > 4 * LOG_LIMIT:
                    del buf[:len(buf) - 2 * LOG_LIMIT]

        async def feed() -> None:
            try:
                if spec.stdin:
                    await proc.stdin.send_all(spec.stdin.encode())
            except trio.BrokenResourceError:
                pass
            finally:
                await proc.stdin.aclose()

        timed_out = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain, proc.stdout, "stdout")
                nursery.start_soon(drain, proc.stderr, "stderr")
                nursery.start_soon(feed)
                with trio.move_on_after(spec.timeout) as timer:
                    await proc.wait()
                if timer.cancelled_caught:
                    timed_out = True
                    _kill_group(proc.pid)
                    await proc.wait()
                _kill_group(proc.pid)  # what it left behind in its group
        finally:
            if proc.returncode is None:
                with trio.CancelScope(shield=True):
                    _kill_group(proc.pid)
                    await proc.wait()
        entry.update(exit=proc.returncode, stdout=_tail(bytes(outputs["stdout"])),
                     stderr=_tail(bytes(outputs["stderr"])))
        if timed_out:
            entry["error"] = f"timed out after {spec.timeout:g} s; its process group was killed"
            return False, None
        if proc.returncode != 0:
            entry["error"] = f"exited with {proc.returncode}"
            return False, None
        session = self.store.session()
        try:
            root = await self.workers.run(ingest_dir, session, out)
            await self.workers.run(session.flush)
        except BaseException:
            session.abort()
            raise
        entry["error"] = None
        return True, root["tree"]


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _remove_tree(path: str) -> None:
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            try:
                os.chmod(os.path.join(dirpath, d), 0o755)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)
