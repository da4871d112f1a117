"""Typed results of pipelines, jobs and ``watch`` events (see
:mod:`trunkfs.client.results` for how results are read)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .results import Origin, Result, as_dict, as_int, as_list, opt_str


@dataclass
class PipelineInfo(Result):
    name: str
    version: int
    owner: dict
    created: float | None
    updated: float | None
    spec: dict                 # the spec as a user writes it
    jobs: list[str] = field(default_factory=list)  # jobs an update with reprocess started

    @property
    def input(self) -> dict:
        return as_dict(self.spec.get("input"))

    @property
    def output(self) -> str:
        return str(self.spec.get("output", ""))

    @property
    def cmd(self) -> list[str]:
        return [str(a) for a in as_list(as_dict(self.spec.get("transform")).get("cmd"))]

    @classmethod
    def from_raw(cls, r: dict) -> "PipelineInfo":
        return cls(str(r.get("name", "")), as_int(r.get("version")), as_dict(r.get("owner")),
                   r.get("created"), r.get("updated"), as_dict(r.get("spec")),
                   [str(j) for j in as_list(r.get("jobs"))], raw=r)


@dataclass
class DatumCounts(Result):
    total: int
    processed: int   # ran this time
    skipped: int     # reused the output of an earlier run
    failed: int

    @classmethod
    def from_raw(cls, r: Any) -> "DatumCounts":
        r = as_dict(r)
        return cls(as_int(r.get("total")), as_int(r.get("processed")), as_int(r.get("skipped")),
                   as_int(r.get("failed")), raw=r)


@dataclass
class JobInput(Result):
    repo: str
    branch: str | None
    commit: str

    @classmethod
    def from_raw(cls, r: Any) -> "JobInput":
        r = as_dict(r)
        return cls(str(r.get("repo", "")), opt_str(r.get("branch")), str(r.get("commit") or ""), raw=r)


@dataclass
class JobInfo(Result):
    id: str
    pipeline: str
    state: str       # queued, running, succeeded, failed, cancelled
    input: JobInput
    output: str | None
    output_commit: str | None
    datums: DatumCounts
    error: str | None = None
    version: int | None = None
    duration: float | None = None  # seconds, once started

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")

    @classmethod
    def from_raw(cls, r: dict) -> "JobInfo":
        version, duration = r.get("version"), r.get("duration")
        return cls(str(r.get("id", "")), str(r.get("pipeline", "")), str(r.get("state", "")),
                   JobInput.from_raw(r.get("input")), opt_str(r.get("output")),
                   opt_str(r.get("output_commit")), DatumCounts.from_raw(r.get("datums")),
                   opt_str(r.get("error")), version if isinstance(version, int) else None,
                   float(duration) if isinstance(duration, (int, float)) else None, raw=r)


@dataclass
class DatumLog(Result):
    paths: list[str]
    exit: int | None
    attempts: int | None
    stdout: str
    stderr: str
    error: str | None

    @classmethod
    def from_raw(cls, r: Any) -> "DatumLog":
        r = as_dict(r)
        code, attempts = r.get("exit"), r.get("attempts")
        return cls([str(p) for p in as_list(r.get("paths"))], code if isinstance(code, int) else None,
                   attempts if isinstance(attempts, int) else None, str(r.get("stdout") or ""),
                   str(r.get("stderr") or ""), opt_str(r.get("error")), raw=r)


@dataclass
class JobLogs(Result):
    id: str
    state: str
    error: str | None
    logs: dict[str, DatumLog]   # by datum label

    @classmethod
    def from_raw(cls, r: dict) -> "JobLogs":
        return cls(str(r.get("id", "")), str(r.get("state", "")), opt_str(r.get("error")),
                   {str(k): DatumLog.from_raw(v) for k, v in as_dict(r.get("logs")).items()}, raw=r)


@dataclass
class CommitEvent(Result):
    """``watch``: a branch moved to a new commit."""
    repo: str
    branch: str
    commit: str
    parents: list[str]
    message: str
    origin: Origin
    time: float
    jobs: list[str]

    @classmethod
    def from_raw(cls, r: dict) -> "CommitEvent":
        t = r.get("time")
        return cls(str(r.get("repo", "")), str(r.get("branch", "")), str(r.get("commit", "")),
                   [str(p) for p in as_list(r.get("parents"))], str(r.get("message") or ""),
                   Origin.from_raw(r.get("origin")), float(t) if isinstance(t, (int, float)) else 0.0,
                   [str(j) for j in as_list(r.get("jobs"))], raw=r)


@dataclass
class JobEvent(Result):
    """``watch``: a job changed state."""
    id: str
    pipeline: str
    state: str
    input: JobInput
    output: str | None
    output_commit: str | None
    error: str | None
    datums: DatumCounts

    @classmethod
    def from_raw(cls, r: dict) -> "JobEvent":
        return cls(str(r.get("id", "")), str(r.get("pipeline", "")), str(r.get("state", "")),
                   JobInput.from_raw(r.get("input")), opt_str(r.get("output")),
                   opt_str(r.get("output_commit")), opt_str(r.get("error")),
                   DatumCounts.from_raw(r.get("datums")), raw=r)


@dataclass
class OtherEvent(Result):
    """``watch``: an event of a type this client does not know."""
    type: str

    @classmethod
    def from_raw(cls, r: dict) -> "OtherEvent":
        return cls(str(r.get("type", "")), raw=r)


Event = CommitEvent | JobEvent | OtherEvent


def event_from_raw(r: dict) -> Event:
    kind = r.get("type")
    if kind == "commit":
        return CommitEvent.from_raw(r)
    if kind == "job":
        return JobEvent.from_raw(r)
    return OtherEvent.from_raw(r)
