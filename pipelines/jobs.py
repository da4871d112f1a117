"""Job records: one run of a pipeline for one input commit.

A :class:`Job` is what the scheduler changes as the job runs, what the
socket's ``job.*`` replies and ``watch`` events show, and what the store
keeps at ``jobs/<id>`` (so jobs survive a restart).  :meth:`Job.to_json` is
that record, in the same JSON that earlier versions wrote, and
:meth:`Job.from_json` reads their records.

Job ids are 12 lower-case hex digits: the milliseconds since 2024-01-01 UTC
(40 bits, enough until 2058), then 8 random bits.  They sort by creation,
and one daemon never hands out the same id twice (an id is always greater
than the one before).  Records with the ids of earlier versions
(``<nanoseconds>-<8 hex>``) load and work alike; :class:`JobTable` lists by
creation time, then id, and accepts a unique prefix of at least
``MIN_PREFIX`` characters for an id.

Finished jobs do not pile up: :class:`JobRetention` says which are past
their age (``job_keep_days``) or beyond the newest ``job_keep_count`` of
their pipeline, and :meth:`JobStore.prune` deletes those records (their
logs are in them) from the store and the table.  Queued and running jobs
are never pruned.
"""

from __future__ import annotations

import bisect
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..store.backends.base import Backend
from ..store.errors import Conflict, NotFound, ObjectMissing, TrunkError
from .runner import RunResult

log = logging.getLogger(__name__)

JOB_VERSION = 1
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
FINAL = (SUCCEEDED, FAILED, CANCELLED)
MIN_PREFIX = 6                     # the shortest id prefix accepted for a job id
MAX_RESTARTS = 3                   # starts of the daemon that find a job running before it fails
ID_EPOCH_MS = 1_704_067_200_000    # 2024-01-01T00:00:00Z
_RANDOM_BITS = 8
_ID_DIGITS = 12
# seconds a datum takes, from a quick transform to a long training run (``DatumTimes``)
DATUM_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                 3600.0, 7200.0)


class _IdClock:
    """Job ids, each greater than the one before (in this process)."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> str:
        ms = max(0, int(time.time() * 1000) - ID_EPOCH_MS)
        value = (ms << _RANDOM_BITS) | secrets.randbits(_RANDOM_BITS)
        value = max(value, self.last + 1)
        self.last = value
        return f"{value:0{_ID_DIGITS}x}"


_clock = _IdClock()


def new_job_id() -> str:
    """A new job id: 12 lower-case hex digits, sortable by creation."""
    return _clock.next()


_JOB_ID = re.compile(r"[0-9a-f]{12}|[0-9]{1,20}-[0-9a-f]{8}")


def is_job_id(text: str) -> bool:
    """Whether ``text`` is a job id (this version's, or an earlier one's)."""
    return _JOB_ID.fullmatch(text) is not None


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass
class JobInput:
    """The input commit a job runs on."""
    repo: str
    branch: str
    commit: str

    def to_json(self) -> dict:
        return {"repo": self.repo, "branch": self.branch, "commit": self.commit}

    @classmethod
    def from_json(cls, obj: dict) -> "JobInput":
        return cls(str(obj["repo"]), str(obj["branch"]), str(obj["commit"]))


@dataclass
class DatumCounts:
    total: int = 0
    processed: int = 0   # ran this time
    skipped: int = 0     # reused the output of an earlier run
    failed: int = 0

    def to_json(self) -> dict:
        return {"total": self.total, "processed": self.processed, "skipped": self.skipped,
                "failed": self.failed}

    @classmethod
    def from_json(cls, obj: dict) -> "DatumCounts":
        return cls(int(obj.get("total", 0)), int(obj.get("processed", 0)), int(obj.get("skipped", 0)),
                   int(obj.get("failed", 0)))


@dataclass
class DatumStats:
    """What running one datum cost, as Pachyderm records it: getting its
    input (time, bytes), running its command, storing its output (time,
    bytes), and where it ran."""
    worker: str = ""
    download_s: float = 0.0
    download_bytes: int = 0
    process_s: float = 0.0
    upload_s: float = 0.0
    upload_bytes: int = 0

    def to_json(self) -> dict:
        return {"worker": self.worker, "download_s": round(self.download_s, 6),
                "download_bytes": self.download_bytes, "process_s": round(self.process_s, 6),
                "upload_s": round(self.upload_s, 6), "upload_bytes": self.upload_bytes}

    @classmethod
    def from_json(cls, obj: dict) -> "DatumStats":
        return cls(str(obj.get("worker") or ""), float(obj.get("download_s") or 0),
                   int(obj.get("download_bytes") or 0), float(obj.get("process_s") or 0),
                   float(obj.get("upload_s") or 0), int(obj.get("upload_bytes") or 0))

    @property
    def seconds(self) -> float:
        """The whole datum: its input, its command (every attempt) and its output."""
        return self.download_s + self.process_s + self.upload_s


class DurationFigures:
    """One pipeline's datum durations; how many there were is the sum of ``buckets``."""

    __slots__ = ("seconds", "buckets")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.buckets = [0] * (len(DATUM_BUCKETS) + 1)   # the last: above every bound


class DatumTimes:
    """How long the datums of the jobs a daemon ran took (:attr:`DatumStats.seconds`),
    by pipeline, kept as plain numbers on the event loop; the daemon's
    ``/metrics`` turns them into a Prometheus histogram."""

    def __init__(self) -> None:
        self.pipelines: dict[str, DurationFigures] = {}

    def observe(self, pipeline: str, seconds: float) -> None:
        figures = self.pipelines.get(pipeline)
        if figures is None:
            figures = self.pipelines[pipeline] = DurationFigures()
        figures.seconds += seconds
        figures.buckets[bisect.bisect_left(DATUM_BUCKETS, seconds)] += 1


@dataclass
class DatumLog:
    """A datum that ran: its paths, how many attempts so far, and how the
    last one ended (None while the first runs).  A :class:`runner.AttemptLog`."""
    paths: list[str]
    attempts: int = 0
    last: RunResult | None = None
    stats: DatumStats | None = None

    @classmethod
    def failed(cls, paths: list[str], message: str, worker: str) -> "DatumLog":
        """The log of a datum that failed before its command could run (on ``worker``)."""
        return cls(list(paths), 0, RunResult(None, "", "", message), DatumStats(worker))

    def attempt_started(self, attempt: int) -> None:
        self.attempts = attempt

    def attempt_ended(self, result: RunResult) -> None:
        self.last = result

    @property
    def error(self) -> str | None:
        return self.last.error if self.last else None

    def to_json(self) -> dict:
        out: dict[str, Any] = {"paths": list(self.paths), "attempts": self.attempts}
        if self.last is not None:
            out.update(exit=self.last.exit, stdout=self.last.stdout, stderr=self.last.stderr,
                       error=self.last.error)
        if self.stats is not None:
            out["stats"] = self.stats.to_json()
        return out

    @classmethod
    def from_json(cls, obj: dict) -> "DatumLog":
        last = None
        if "exit" in obj:
            code = obj["exit"]
            last = RunResult(None if code is None else int(code), str(obj.get("stdout") or ""),
                             str(obj.get("stderr") or ""), _opt_str(obj.get("error")))
        stats = obj.get("stats")
        return cls([str(p) for p in obj.get("paths", [])], int(obj.get("attempts", 0)), last,
                   DatumStats.from_json(stats) if isinstance(stats, dict) else None)


@dataclass
class Job:
    id: str
    pipeline: str
    version: int                      # of the pipeline
    input: JobInput
    output: str                       # the output repo
    created: float
    state: str = QUEUED               # queued, running, succeeded, failed, cancelled
    started: float | None = None
    finished: float | None = None
    output_commit: str | None = None
    error: str | None = None
    datums: DatumCounts = field(default_factory=DatumCounts)
    logs: dict[str, DatumLog] = field(default_factory=dict)   # by datum label (its index)
    downstream_jobs: list[str] | None = None                  # set when it succeeded
    restarts: int = 0                 # daemon starts that found it running, and takeovers
    daemon: str | None = None         # the id of the daemon that runs it (or ran it last)

    @property
    def done(self) -> bool:
        return self.state in FINAL

    def interrupted(self, limit: int = MAX_RESTARTS) -> None:
        """This job was found running by a daemon that did not run it (the
        daemon that ran it stopped, or crashed, or another daemon took its
        lease over): queue it again, or fail it once ``limit`` such
        interruptions found it so, so that a job that brings daemons down is
        not rerun forever."""
        self.restarts += 1
        if self.restarts >= limit:
            self.state, self.finished = FAILED, time.time()
            self.error = (f"the daemon running this job stopped {self.restarts} times while it ran; "
                          "it is not run again")
            log.error("job %s of pipeline %s: %s", self.id, self.pipeline, self.error)
        else:
            self.state = QUEUED
            log.info("job %s was running when the daemon stopped; it runs again (restart %d of %d)",
                     self.id, self.restarts, limit - 1)

    @property
    def sort_key(self) -> tuple[float, str]:
        return (self.created, self.id)

    def duration(self, now: float | None = None) -> float | None:
        """Seconds since it started, until it finished (None before it starts)."""
        if not self.started:
            return None
        return round((self.finished or (now if now is not None else time.time())) - self.started, 3)

    def to_json(self, logs: bool = True) -> dict:
        """The job's record (without the datum logs when ``logs`` is False)."""
        out: dict[str, Any] = {
            "v": JOB_VERSION, "id": self.id, "pipeline": self.pipeline, "version": self.version,
            "input": self.input.to_json(), "output": self.output, "state": self.state,
            "created": self.created, "started": self.started, "finished": self.finished,
            "output_commit": self.output_commit, "error": self.error,
            "datums": self.datums.to_json()}
        if logs:
            out["logs"] = self.logs_json()
        if self.downstream_jobs is not None:
            out["downstream_jobs"] = list(self.downstream_jobs)
        if self.restarts:
            out["restarts"] = self.restarts
        if self.daemon:
            out["daemon"] = self.daemon
        return out

    def logs_json(self) -> dict:
        return {label: entry.to_json() for label, entry in self.logs.items()}

    def summary(self, datum_stats: bool = False) -> dict:
        """What ``job.list``, ``show``, ``wait`` and ``cancel`` reply: the record
        without the logs, with the duration once it started and the totals of
        its datums' stats; with ``datum_stats`` (``job.show``) each datum's
        stats too, by label."""
        out = self.to_json(logs=False)
        duration = self.duration()
        if duration is not None:
            out["duration"] = duration
        totals = self.stats_totals()
        if totals is not None:
            out["stats"] = totals
        if datum_stats:
            out["datum_stats"] = {label: dict(e.stats.to_json(), paths=e.paths[:3], attempts=e.attempts,
                                              error=e.error)
                                  for label, e in self.logs.items() if e.stats is not None}
        return out

    def stats_totals(self) -> dict | None:
        """The sums of its datums' stats and the datums each worker ran
        (None when no datum recorded stats)."""
        found = [e.stats for e in self.logs.values() if e.stats is not None]
        if not found:
            return None
        workers: dict[str, int] = {}
        for st in found:
            workers[st.worker] = workers.get(st.worker, 0) + 1
        return {"download_s": round(sum(s.download_s for s in found), 6),
                "download_bytes": sum(s.download_bytes for s in found),
                "process_s": round(sum(s.process_s for s in found), 6),
                "upload_s": round(sum(s.upload_s for s in found), 6),
                "upload_bytes": sum(s.upload_bytes for s in found), "workers": workers}

    def event(self) -> dict:
        """The ``watch`` event of the job's current state."""
        return {"type": "job", "id": self.id, "pipeline": self.pipeline, "state": self.state,
                "input": self.input.to_json(), "output": self.output,
                "output_commit": self.output_commit, "error": self.error,
                "datums": self.datums.to_json()}

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True).encode()

    @classmethod
    def from_json(cls, obj: dict) -> "Job":
        """A job from its record; ValueError when it is not one."""
        try:
            if obj.get("v", JOB_VERSION) != JOB_VERSION:
                raise ValueError(f"unknown job record version {obj.get('v')!r}")
            downstream = obj.get("downstream_jobs")
            return cls(
                id=str(obj["id"]), pipeline=str(obj["pipeline"]), version=int(obj["version"]),
                input=JobInput.from_json(obj["input"]), output=str(obj.get("output") or ""),
                created=float(obj["created"]), state=str(obj["state"]),
                started=_opt_float(obj.get("started")), finished=_opt_float(obj.get("finished")),
                output_commit=_opt_str(obj.get("output_commit")), error=_opt_str(obj.get("error")),
                datums=DatumCounts.from_json(obj.get("datums") or {}),
                logs={str(k): DatumLog.from_json(v) for k, v in (obj.get("logs") or {}).items()},
                downstream_jobs=None if downstream is None else [str(j) for j in downstream],
                restarts=int(obj.get("restarts") or 0), daemon=_opt_str(obj.get("daemon")))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a job record: {exc!r}") from exc

    @classmethod
    def decode(cls, raw: bytes) -> "Job":
        obj = json.loads(raw)
        if not isinstance(obj, dict):
            raise ValueError("a job record must be an object")
        return cls.from_json(obj)


@dataclass(frozen=True)
class JobRetention:
    """How long finished jobs (succeeded, failed, cancelled) are kept: at
    most ``keep_days`` days after they finished and at most the newest
    ``keep_count`` of each pipeline (0: no limit of that kind)."""
    keep_days: float = 30.0
    keep_count: int = 1000

    def expired(self, jobs: Iterable[Job], now: float | None = None) -> list[Job]:
        """The finished jobs among ``jobs`` past either limit."""
        now = time.time() if now is None else now
        horizon = now - self.keep_days * 86400 if self.keep_days else None
        finished: dict[str, list[Job]] = {}
        for job in jobs:
            if job.done:
                finished.setdefault(job.pipeline, []).append(job)
        out = []
        for of_pipeline in finished.values():
            of_pipeline.sort(key=lambda j: j.sort_key, reverse=True)   # newest first
            for rank, job in enumerate(of_pipeline):
                ended = job.finished if job.finished is not None else job.created
                if (self.keep_count and rank >= self.keep_count) or \
                        (horizon is not None and ended < horizon):
                    out.append(job)
        return out


class JobStore:
    """Job records in the store, at ``jobs/<id>``; with a retention, the
    finished ones past it are pruned (at start and by :meth:`prune`).

    Every job not finished also has an empty marker ``jobq/<id>``, made
    after its record and deleted after its final record is written, so
    that the daemons sharing the store find the open jobs by listing a
    prefix that holds only those."""

    PREFIX = "jobs/"
    OPEN = "jobq/"

    def __init__(self, backend: Backend, retention: JobRetention | None = None) -> None:
        self.backend = backend
        self.retention = retention
        self._reported: set[str] = set()   # unreadable records, logged once each

    def save(self, job_id: str, record: bytes) -> None:
        """Write a record made by :meth:`Job.encode` (encoded by the caller,
        where the job is changed, so that a thread never reads a job that
        changes under it)."""
        self.backend.put(f"{self.PREFIX}{job_id}", record)

    def create(self, job: Job) -> bool:
        """Write a new job's record if no record has its id (False if one
        has: a job of another daemon made the same millisecond), then its
        open marker."""
        try:
            self.backend.put_if(f"{self.PREFIX}{job.id}", job.encode(), None)
        except Conflict:
            return False
        self.backend.put(f"{self.OPEN}{job.id}", b"")
        return True

    def closed(self, job_id: str) -> None:
        """The job is finished (its final record written): drop its marker."""
        self.backend.delete(f"{self.OPEN}{job_id}")

    def _listed(self, prefix: str) -> list[str]:
        """The job ids under ``prefix``; a key that holds no job id (written
        by something else than a daemon) is logged once and left out."""
        out = []
        for key in self.backend.list(prefix):
            job_id = key[len(prefix):]
            if is_job_id(job_id):
                out.append(job_id)
            elif key not in self._reported:
                self._reported.add(key)
                log.error("ignoring %s in the store: not a job id", key)
        return out

    def open_ids(self) -> list[str]:
        """Ids of the jobs not finished, as their markers say."""
        return self._listed(self.OPEN)

    def ids(self) -> list[str]:
        return self._listed(self.PREFIX)

    def load_one(self, job_id: str) -> Job | None:
        """A job's record as the store has it now (None: none, or unreadable;
        an unreadable one is logged once)."""
        try:
            job = Job.decode(self.backend.get(f"{self.PREFIX}{job_id}"))
        except ObjectMissing:
            return None
        except ValueError as exc:
            if job_id not in self._reported:
                self._reported.add(job_id)
                log.error("skipping unreadable job record jobs/%s: %s", job_id, exc)
            return None
        if job.id != job_id:
            if job_id not in self._reported:
                self._reported.add(job_id)
                log.error("skipping job record jobs/%s: it holds job %r", job_id, job.id)
            return None
        return job

    def load(self) -> list[Job]:
        """Every readable job record; an unreadable one is logged and skipped."""
        jobs = []
        for key in self.backend.list(self.PREFIX):
            try:
                jobs.append(Job.decode(self.backend.get(key)))
            except (ValueError, ObjectMissing) as exc:
                log.error("skipping unreadable job record %s: %s", key, exc)
        return jobs

    def delete(self, job_id: str) -> None:
        """Delete a job's record (and so its logs); gone already is fine."""
        self.backend.delete(f"{self.PREFIX}{job_id}")

    def load_at_start(self, daemon: str | None = None, limit: int = MAX_RESTARTS) -> list[Job]:
        """Every job record as a starting daemon takes them: a job found
        running on this daemon (``daemon``, or no daemon named: a record of
        one daemon alone) is :meth:`Job.interrupted` and its record saved at
        once (so that a crash before it runs again still counts; a job
        running on another daemon is that daemon's, until its lease
        expires); finished jobs past the retention are deleted and left
        out.  A job not finished gets its open marker if it lacks one."""
        jobs = self.load()
        marked = set(self.open_ids())
        for job in jobs:
            if job.state == RUNNING and job.daemon in (None, daemon):
                job.interrupted(limit)
                self.save(job.id, job.encode())
            if job.done:
                if job.id in marked:
                    self.closed(job.id)
            elif job.id not in marked:
                self.backend.put(f"{self.OPEN}{job.id}", b"")
        if self.retention is None:
            return jobs
        expired = {job.id for job in self.retention.expired(jobs)}
        for job_id in expired:
            self.delete(job_id)
        if expired:
            log.info("pruned %d finished job(s) past job_keep_days/job_keep_count", len(expired))
        return [job for job in jobs if job.id not in expired]

    def prune(self, table: "JobTable", pipeline: str | None = None, now: float | None = None) -> list[str]:
        """Delete the finished jobs of ``table`` (of ``pipeline`` only, if
        given) past the retention, from the store and from ``table``; their
        ids.  Blocking (store deletes): run it in a worker thread."""
        if self.retention is None:
            return []
        expired = self.retention.expired(table.list(pipeline), now)
        for job in expired:
            table.remove(job.id)
            try:
                self.delete(job.id)
            except (TrunkError, OSError) as exc:   # the record stays; the next start prunes it
                log.warning("cannot delete the record of job %s of pipeline %s: %s", job.id,
                            job.pipeline, exc)
        if expired:
            log.info("pruned %d finished job(s)%s past job_keep_days/job_keep_count", len(expired),
                     f" of pipeline {pipeline}" if pipeline else "")
        return [job.id for job in expired]


class JobTable:
    """The jobs a daemon knows, by id, listed in creation order.  Safe to
    use from a worker thread too (pruning removes jobs there)."""

    def __init__(self, jobs: Iterable[Job] = ()) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        for job in jobs:
            self.add(job)

    def add(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job

    def remove(self, job_id: str) -> None:
        """Forget a job (pruned); an unknown id is fine."""
        with self._lock:
            self._jobs.pop(job_id, None)

    def _snapshot(self) -> list[tuple[str, Job]]:
        with self._lock:
            return list(self._jobs.items())

    def __contains__(self, job_id: object) -> bool:
        with self._lock:
            return job_id in self._jobs

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(self.list())

    def list(self, pipeline: str | None = None, state: str | None = None) -> list[Job]:
        """Jobs by creation time, then id; only ``pipeline``'s or in ``state`` if given."""
        return sorted((j for _, j in self._snapshot()
                       if (pipeline is None or j.pipeline == pipeline) and (state is None or j.state == state)),
                      key=lambda j: j.sort_key)

    def get_exact(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def get(self, job_id: str) -> Job:
        """The job with this id, or whose id this unique prefix (of at least
        ``MIN_PREFIX`` characters) starts."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            return job
        matches = [j for i, j in self._snapshot() if i.startswith(job_id)] if len(job_id) >= MIN_PREFIX else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise NotFound(f"job {job_id!r} is ambiguous: {len(matches)} job ids start with it")
        raise NotFound(f"job {job_id!r} does not exist")
