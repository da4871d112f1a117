"""Typed results of the socket operations.

Each result is a dataclass read from the daemon's JSON reply (the shapes of
docs/protocol.md).  ``raw`` keeps the reply exactly as it came, so that a
program (and ``trunkfs --json``) can print what the daemon said, fields the
client does not know about included.  Readers are lenient: a field the
daemon left out gets its zero value instead of an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass
class Result:
    """The base of every result: ``raw`` is the daemon's JSON."""

    raw: Any = field(default=None, repr=False, compare=False, kw_only=True)

    def to_dict(self) -> Any:
        """The daemon's reply, unchanged (what ``--json`` prints)."""
        return self.raw


@dataclass
class DaemonInfo(Result):
    version: str
    pid: int
    uid: int

    @classmethod
    def from_raw(cls, r: dict) -> "DaemonInfo":
        return cls(str(r.get("version", "")), as_int(r.get("pid")), as_int(r.get("uid")), raw=r)


@dataclass
class Deleted(Result):
    """What a delete removed (a repo, a branch or a pipeline name)."""
    name: str

    @classmethod
    def from_raw(cls, r: dict) -> "Deleted":
        return cls(str(r.get("deleted", "")), raw=r)


@dataclass
class RepoInfo(Result):
    name: str
    id: str | None = None            # given by repo_create
    created: float | None = None     # given by repo_list
    branches: list[str] = field(default_factory=list)
    head: str | None = None          # the head of main
    size: int = 0                    # bytes in the head of main

    @classmethod
    def from_raw(cls, r: dict) -> "RepoInfo":
        return cls(str(r.get("name", "")), opt_str(r.get("id")), r.get("created"),
                   [str(b) for b in as_list(r.get("branches"))], opt_str(r.get("head")),
                   as_int(r.get("size")), raw=r)


@dataclass
class BranchInfo(Result):
    name: str
    head: str | None
    repo: str | None = None

    @classmethod
    def from_raw(cls, r: dict) -> "BranchInfo":
        return cls(str(r.get("branch", r.get("name", ""))), opt_str(r.get("head")),
                   opt_str(r.get("repo")), raw=r)


@dataclass
class Author(Result):
    uid: int | None
    name: str | None

    @classmethod
    def from_raw(cls, r: Any) -> "Author":
        r = as_dict(r)
        uid = r.get("uid")
        return cls(uid if isinstance(uid, int) else None, opt_str(r.get("name")), raw=r)


@dataclass
class Origin(Result):
    """Who made a commit: ``kind`` is ``user`` or ``pipeline`` (then with the
    pipeline's name and version and the job's id)."""
    kind: str
    pipeline: str | None = None
    version: int | None = None
    job: str | None = None

    @classmethod
    def from_raw(cls, r: Any) -> "Origin":
        r = as_dict(r)
        version = r.get("version")
        return cls(str(r.get("kind") or "user"), opt_str(r.get("pipeline")),
                   version if isinstance(version, int) else None, opt_str(r.get("job")), raw=r)


@dataclass
class ProvenanceRef(Result):
    """An input commit a derived commit was made from."""
    repo: str
    commit: str
    branch: str | None = None

    @classmethod
    def from_raw(cls, r: Any) -> "ProvenanceRef":
        r = as_dict(r)
        return cls(str(r.get("repo", "")), str(r.get("commit", "")), opt_str(r.get("branch")), raw=r)


@dataclass
class CommitInfo(Result):
    id: str
    repo: str
    parents: list[str]
    message: str
    author: Author
    time: float
    origin: Origin
    provenance: list[ProvenanceRef]
    tree: str | None
    size: int
    files: int
    branch: str | None = None  # given by show: the branch the ref named

    @classmethod
    def from_raw(cls, r: dict) -> "CommitInfo":
        t = r.get("time")
        return cls(str(r.get("id", "")), str(r.get("repo", "")),
                   [str(p) for p in as_list(r.get("parents"))], str(r.get("message") or ""),
                   Author.from_raw(r.get("author")), float(t) if isinstance(t, (int, float)) else 0.0,
                   Origin.from_raw(r.get("origin")),
                   [ProvenanceRef.from_raw(p) for p in as_list(r.get("provenance"))],
                   opt_str(r.get("tree")), as_int(r.get("size")), as_int(r.get("files")),
                   opt_str(r.get("branch")), raw=r)


@dataclass
class Change(Result):
    """A changed path: ``status`` is ``A``, ``M`` or ``D``; a directory's path ends in ``/``."""
    status: str
    path: str

    @classmethod
    def from_raw(cls, r: Any) -> "Change":
        r = as_dict(r)
        return cls(str(r.get("status", "?")), str(r.get("path", "")), raw=r)


@dataclass
class Diff(Result):
    from_commit: str | None
    to_commit: str | None
    changes: list[Change]

    @classmethod
    def from_raw(cls, r: dict) -> "Diff":
        return cls(opt_str(r.get("from")), opt_str(r.get("to")),
                   [Change.from_raw(c) for c in as_list(r.get("changes"))], raw=r)


@dataclass
class Status(Result):
    """A branch's staged changes against its head."""
    repo: str
    branch: str
    head: str | None
    changes: list[Change]

    @classmethod
    def from_raw(cls, r: dict) -> "Status":
        return cls(str(r.get("repo", "")), str(r.get("branch", "")), opt_str(r.get("head")),
                   [Change.from_raw(c) for c in as_list(r.get("changes"))], raw=r)


@dataclass
class Entry(Result):
    """One entry of a directory listing."""
    name: str
    type: str                 # file, dir, symlink, ...
    mode: int
    mtime: int                # nanoseconds
    size: int = 0             # a file's bytes; a directory's bytes below it
    files: int | None = None  # directories: files below it
    target: str | None = None  # symlinks

    @classmethod
    def from_raw(cls, r: Any) -> "Entry":
        r = as_dict(r)
        files = r.get("files")
        return cls(str(r.get("name", "")), str(r.get("type", "")), as_int(r.get("mode")),
                   as_int(r.get("mtime")), as_int(r.get("size")),
                   files if isinstance(files, int) else None, opt_str(r.get("target")), raw=r)


@dataclass
class Listing(Result):
    commit: str | None
    path: str
    entries: list[Entry]

    @classmethod
    def from_raw(cls, r: dict) -> "Listing":
        return cls(opt_str(r.get("commit")), str(r.get("path", "/")),
                   [Entry.from_raw(e) for e in as_list(r.get("entries"))], raw=r)


@dataclass
class PutResult(Result):
    commit: str
    branch: str
    files: int
    bytes: int       # bytes sent
    new_bytes: int   # bytes the store did not hold yet
    size: int        # bytes in the new commit
    jobs: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # local paths neither file, dir nor symlink

    @classmethod
    def from_raw(cls, r: dict) -> "PutResult":
        return cls(str(r.get("commit", "")), str(r.get("branch", "")), as_int(r.get("files")),
                   as_int(r.get("bytes")), as_int(r.get("new_bytes")), as_int(r.get("size")),
                   [str(j) for j in as_list(r.get("jobs"))], raw=r)


@dataclass
class RmResult(Result):
    commit: str
    removed: list[str]
    jobs: list[str] = field(default_factory=list)

    @classmethod
    def from_raw(cls, r: dict) -> "RmResult":
        return cls(str(r.get("commit", "")), [str(p) for p in as_list(r.get("removed"))],
                   [str(j) for j in as_list(r.get("jobs"))], raw=r)


@dataclass
class CommitResult(Result):
    """A commit of staged changes."""
    commit: str
    repo: str
    branch: str
    size: int
    files: int
    jobs: list[str] = field(default_factory=list)

    @classmethod
    def from_raw(cls, r: dict) -> "CommitResult":
        return cls(str(r.get("commit", "")), str(r.get("repo", "")), str(r.get("branch", "")),
                   as_int(r.get("size")), as_int(r.get("files")),
                   [str(j) for j in as_list(r.get("jobs"))], raw=r)


@dataclass
class DiscardResult(Result):
    repo: str
    branch: str
    discarded: int

    @classmethod
    def from_raw(cls, r: dict) -> "DiscardResult":
        return cls(str(r.get("repo", "")), str(r.get("branch", "")), as_int(r.get("discarded")), raw=r)


@dataclass
class GetResult(Result):
    """What ``get`` wrote: ``path`` is the local path it created or replaced."""
    path: str
    files: int
    commit: str | None

    @classmethod
    def from_raw(cls, r: dict) -> "GetResult":
        return cls(str(r.get("path", "")), as_int(r.get("files")), opt_str(r.get("commit")), raw=r)


@dataclass
class FsckReport(Result):
    ok: bool
    commits: int
    trees: int
    files: int
    chunks: int
    packs: int
    blobs_verified: int
    problems: list[str]
    rebuilt_index: dict | None = None

    @classmethod
    def from_raw(cls, r: dict) -> "FsckReport":
        rebuilt = r.get("rebuilt_index")
        return cls(bool(r.get("ok")), as_int(r.get("commits")), as_int(r.get("trees")),
                   as_int(r.get("files")), as_int(r.get("chunks")), as_int(r.get("packs")),
                   as_int(r.get("blobs_verified")), [str(p) for p in as_list(r.get("problems"))],
                   rebuilt if isinstance(rebuilt, dict) else None, raw=r)


@dataclass
class CacheStats(Result):
    size: int
    limit: int
    entries: int
    hits: int
    misses: int
    fetched_bytes: int

    @classmethod
    def from_raw(cls, r: dict) -> "CacheStats":
        return cls(as_int(r.get("size")), as_int(r.get("limit")), as_int(r.get("entries")),
                   as_int(r.get("hits")), as_int(r.get("misses")), as_int(r.get("fetched_bytes")), raw=r)


@dataclass
class StatsInfo(Result):
    store: str
    logical_bytes: int   # bytes of every commit, counted in full
    unique_bytes: int    # bytes of the distinct chunks
    stored_bytes: int    # bytes the store holds (compressed)
    dedup_ratio: float
    chunks: int
    trees: int
    packs: int
    commits: int
    cache: CacheStats | None = None

    @classmethod
    def from_raw(cls, r: dict) -> "StatsInfo":
        ratio = r.get("dedup_ratio")
        cache = r.get("cache")
        return cls(str(r.get("store", "")), as_int(r.get("logical_bytes")), as_int(r.get("unique_bytes")),
                   as_int(r.get("stored_bytes")), float(ratio) if isinstance(ratio, (int, float)) else 0.0,
                   as_int(r.get("chunks")), as_int(r.get("trees")), as_int(r.get("packs")),
                   as_int(r.get("commits")), CacheStats.from_raw(cache) if isinstance(cache, dict) else None,
                   raw=r)


@dataclass
class ProvenanceStep(Result):
    """One commit of a provenance walk; ``depth`` 0 is the commit asked about."""
    depth: int
    repo: str
    commit: str
    origin: Origin
    provenance: list[ProvenanceRef]

    @classmethod
    def from_raw(cls, r: dict) -> "ProvenanceStep":
        return cls(as_int(r.get("depth")), str(r.get("repo", "")), str(r.get("commit", "")),
                   Origin.from_raw(r.get("origin")),
                   [ProvenanceRef.from_raw(p) for p in as_list(r.get("provenance"))], raw=r)
