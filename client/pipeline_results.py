"""Typed results of pipelines, jobs and ``watch`` events (see
:mod:`trunkfs.client.results` for how results are read)."""

from __future__ import annotations

from .history_results import Origin
from .results import Result, as_dict, as_float, as_int, opt_str, str_list

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is only needed by the type checker
    from typing import Any


class PipelineInfo(Result):
    __slots__ = ("name", "version", "owner", "created", "updated", "spec", "jobs")
    name: str
    version: int
    owner: dict
    created: float | None
    updated: float | None
    spec: dict           # the spec as a user writes it
    jobs: list[str]      # jobs an update with reprocess started

    def __init__(self, name: str, version: int, owner: dict, created: float | None,
                 updated: float | None, spec: dict, jobs: list[str] | None = None, *,
                 raw: Any = None) -> None:
        self.name, self.version, self.owner, self.created = name, version, owner, created
        self.updated, self.spec, self.raw = updated, spec, raw
        self.jobs = [] if jobs is None else jobs

    @property
    def input(self) -> dict:
        return as_dict(self.spec.get("input"))

    @property
    def output(self) -> str:
        return str(self.spec.get("output", ""))

    @property
    def cmd(self) -> list[str]:
        return str_list(as_dict(self.spec.get("transform")).get("cmd"))

    @classmethod
    def from_raw(cls, r: dict) -> PipelineInfo:
        return cls(str(r.get("name", "")), as_int(r.get("version")), as_dict(r.get("owner")),
                   r.get("created"), r.get("updated"), as_dict(r.get("spec")),
                   str_list(r.get("jobs")), raw=r)


class DatumCounts(Result):
    __slots__ = ("total", "processed", "skipped", "failed")
    total: int
    processed: int   # ran this time
    skipped: int     # reused the output of an earlier run
    failed: int

    def __init__(self, total: int, processed: int, skipped: int, failed: int, *,
                 raw: Any = None) -> None:
        self.total, self.processed, self.skipped, self.failed = total, processed, skipped, failed
        self.raw = raw

    @classmethod
    def from_raw(cls, r: Any) -> DatumCounts:
        r = as_dict(r)
        return cls(as_int(r.get("total")), as_int(r.get("processed")), as_int(r.get("skipped")),
                   as_int(r.get("failed")), raw=r)


class JobInput(Result):
    __slots__ = ("repo", "branch", "commit")
    repo: str
    branch: str | None
    commit: str

    def __init__(self, repo: str, branch: str | None, commit: str, *, raw: Any = None) -> None:
        self.repo, self.branch, self.commit, self.raw = repo, branch, commit, raw

    @classmethod
    def from_raw(cls, r: Any) -> JobInput:
        r = as_dict(r)
        return cls(str(r.get("repo", "")), opt_str(r.get("branch")), str(r.get("commit") or ""), raw=r)


class JobInfo(Result):
    __slots__ = ("id", "pipeline", "state", "input", "output", "output_commit", "datums", "error",
                 "version", "duration", "daemon", "restarts", "stats", "datum_stats")
    id: str
    pipeline: str
    state: str       # queued, running, succeeded, failed, cancelled
    input: JobInput
    output: str | None
    output_commit: str | None
    datums: DatumCounts
    error: str | None
    version: int | None
    duration: float | None  # seconds, once started
    daemon: str | None      # the id of the daemon that runs it, or ran it last
    restarts: int           # times it was taken up again after its daemon stopped
    stats: dict             # totals of its datums' stats (download/process/upload, workers)
    datum_stats: dict[str, DatumStats]   # ``job show``: each datum's, by label

    def __init__(self, id: str, pipeline: str, state: str, input: JobInput, output: str | None,
                 output_commit: str | None, datums: DatumCounts, error: str | None = None,
                 version: int | None = None, duration: float | None = None, *,
                 daemon: str | None = None, restarts: int = 0, raw: Any = None) -> None:
        self.id, self.pipeline, self.state, self.input = id, pipeline, state, input
        self.output, self.output_commit, self.datums = output, output_commit, datums
        self.error, self.version, self.duration, self.raw = error, version, duration, raw
        self.daemon, self.restarts = daemon, restarts
        self.stats: dict = as_dict(as_dict(raw).get("stats"))
        self.datum_stats: dict[str, DatumStats] = {}
        for label, st in as_dict(as_dict(raw).get("datum_stats")).items():
            found = DatumStats.from_raw(st)
            if found is not None:
                self.datum_stats[str(label)] = found

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")

    @classmethod
    def from_raw(cls, r: dict) -> JobInfo:
        version, duration = r.get("version"), r.get("duration")
        return cls(str(r.get("id", "")), str(r.get("pipeline", "")), str(r.get("state", "")),
                   JobInput.from_raw(r.get("input")), opt_str(r.get("output")),
                   opt_str(r.get("output_commit")), DatumCounts.from_raw(r.get("datums")),
                   opt_str(r.get("error")), version if isinstance(version, int) else None,
                   float(duration) if isinstance(duration, (int, float)) else None,
                   daemon=opt_str(r.get("daemon")),
                   restarts=r["restarts"] if isinstance(r.get("restarts"), int) else 0, raw=r)


class DatumStats(Result):
    """What a datum cost: its input, its command, its output, and where it ran."""
    __slots__ = ("worker", "download_s", "download_bytes", "process_s", "upload_s", "upload_bytes")
    worker: str
    download_s: float
    download_bytes: int
    process_s: float
    upload_s: float
    upload_bytes: int

    def __init__(self, worker: str, download_s: float, download_bytes: int, process_s: float,
                 upload_s: float, upload_bytes: int, *, raw: Any = None) -> None:
        self.worker, self.download_s, self.download_bytes = worker, download_s, download_bytes
        self.process_s, self.upload_s, self.upload_bytes, self.raw = process_s, upload_s, upload_bytes, raw

    @classmethod
    def from_raw(cls, r: Any) -> DatumStats | None:
        if not isinstance(r, dict):
            return None
        return cls(str(r.get("worker") or ""), as_float(r.get("download_s")), as_int(r.get("download_bytes")),
                   as_float(r.get("process_s")), as_float(r.get("upload_s")), as_int(r.get("upload_bytes")), raw=r)


class ExecutorInfo(Result):
    """An executor pipelines may name, and whether it answers now."""
    __slots__ = ("name", "type", "scheduler", "answers", "workers", "threads", "error")
    name: str
    type: str            # local or dask
    scheduler: str | None
    answers: bool
    workers: int
    threads: int
    error: str | None

    def __init__(self, name: str, type: str, scheduler: str | None, answers: bool, workers: int,
                 threads: int, error: str | None = None, *, raw: Any = None) -> None:
        self.name, self.type, self.scheduler, self.answers = name, type, scheduler, answers
        self.workers, self.threads, self.error, self.raw = workers, threads, error, raw

    @classmethod
    def from_raw(cls, r: dict) -> ExecutorInfo:
        return cls(str(r.get("name", "")), str(r.get("type", "")), opt_str(r.get("scheduler")),
                   r.get("answers") is True, as_int(r.get("workers")), as_int(r.get("threads")),
                   opt_str(r.get("error")), raw=r)


class DatumLog(Result):
    __slots__ = ("paths", "exit", "attempts", "stdout", "stderr", "error", "stats")
    paths: list[str]
    exit: int | None
    attempts: int | None
    stdout: str
    stderr: str
    error: str | None

    stats: DatumStats | None

    def __init__(self, paths: list[str], exit: int | None, attempts: int | None, stdout: str,
                 stderr: str, error: str | None, stats: DatumStats | None = None, *, raw: Any = None) -> None:
        self.paths, self.exit, self.attempts = paths, exit, attempts
        self.stdout, self.stderr, self.error, self.raw = stdout, stderr, error, raw
        self.stats = stats

    @classmethod
    def from_raw(cls, r: Any) -> DatumLog:
        r = as_dict(r)
        code, attempts = r.get("exit"), r.get("attempts")
        return cls(str_list(r.get("paths")), code if isinstance(code, int) else None,
                   attempts if isinstance(attempts, int) else None, str(r.get("stdout") or ""),
                   str(r.get("stderr") or ""), opt_str(r.get("error")), DatumStats.from_raw(r.get("stats")),
                   raw=r)


class JobLogs(Result):
    __slots__ = ("id", "state", "error", "logs")
    id: str
    state: str
    error: str | None
    logs: dict[str, DatumLog]   # by datum label

    def __init__(self, id: str, state: str, error: str | None, logs: dict[str, DatumLog], *,
                 raw: Any = None) -> None:
        self.id, self.state, self.error, self.logs, self.raw = id, state, error, logs, raw

    @classmethod
    def from_raw(cls, r: dict) -> JobLogs:
        return cls(str(r.get("id", "")), str(r.get("state", "")), opt_str(r.get("error")),
                   {str(k): DatumLog.from_raw(v) for k, v in as_dict(r.get("logs")).items()}, raw=r)


class CommitEvent(Result):
    """``watch``: a branch moved to a new commit."""
    __slots__ = ("repo", "branch", "commit", "parents", "message", "origin", "time", "jobs")
    repo: str
    branch: str
    commit: str
    parents: list[str]
    message: str
    origin: Origin
    time: float
    jobs: list[str]

    def __init__(self, repo: str, branch: str, commit: str, parents: list[str], message: str,
                 origin: Origin, time: float, jobs: list[str], *, raw: Any = None) -> None:
        self.repo, self.branch, self.commit, self.parents = repo, branch, commit, parents
        self.message, self.origin, self.time, self.jobs, self.raw = message, origin, time, jobs, raw

    @classmethod
    def from_raw(cls, r: dict) -> CommitEvent:
        t = r.get("time")
        return cls(str(r.get("repo", "")), str(r.get("branch", "")), str(r.get("commit", "")),
                   str_list(r.get("parents")), str(r.get("message") or ""),
                   Origin.from_raw(r.get("origin")), float(t) if isinstance(t, (int, float)) else 0.0,
                   str_list(r.get("jobs")), raw=r)


class JobEvent(Result):
    """``watch``: a job changed state."""
    __slots__ = ("id", "pipeline", "state", "input", "output", "output_commit", "error", "datums")
    id: str
    pipeline: str
    state: str
    input: JobInput
    output: str | None
    output_commit: str | None
    error: str | None
    datums: DatumCounts

    def __init__(self, id: str, pipeline: str, state: str, input: JobInput, output: str | None,
                 output_commit: str | None, error: str | None, datums: DatumCounts, *,
                 raw: Any = None) -> None:
        self.id, self.pipeline, self.state, self.input = id, pipeline, state, input
        self.output, self.output_commit, self.error = output, output_commit, error
        self.datums, self.raw = datums, raw

    @classmethod
    def from_raw(cls, r: dict) -> JobEvent:
        return cls(str(r.get("id", "")), str(r.get("pipeline", "")), str(r.get("state", "")),
                   JobInput.from_raw(r.get("input")), opt_str(r.get("output")),
                   opt_str(r.get("output_commit")), opt_str(r.get("error")),
                   DatumCounts.from_raw(r.get("datums")), raw=r)


class OtherEvent(Result):
    """``watch``: an event of a type this client does not know."""
    __slots__ = ("type",)
    type: str

    def __init__(self, type: str, *, raw: Any = None) -> None:
        self.type, self.raw = type, raw

    @classmethod
    def from_raw(cls, r: dict) -> OtherEvent:
        return cls(str(r.get("type", "")), raw=r)


Event = CommitEvent | JobEvent | OtherEvent


def event_from_raw(r: dict) -> Event:
    kind = r.get("type")
    if kind == "commit":
        return CommitEvent.from_raw(r)
    if kind == "job":
        return JobEvent.from_raw(r)
    return OtherEvent.from_raw(r)
