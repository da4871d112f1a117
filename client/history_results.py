"""Typed results about commits and what they hold: commit info (with its
author, origin and provenance), diffs and a branch's staged status (lists
of changes), directory listings, and provenance walks.  How results are
read, and why they are plain classes, is in :mod:`trunkfs.client.results`."""

from __future__ import annotations

from .results import Result, as_dict, as_int, as_list, opt_str, str_list

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is only needed by the type checker
    from typing import Any


class Author(Result):
    __slots__ = ("uid", "name")
    uid: int | None
    name: str | None

    def __init__(self, uid: int | None, name: str | None, *, raw: Any = None) -> None:
        self.uid, self.name, self.raw = uid, name, raw

    @classmethod
    def from_raw(cls, r: Any) -> Author:
        r = as_dict(r)
        uid = r.get("uid")
        return cls(uid if isinstance(uid, int) else None, opt_str(r.get("name")), raw=r)


class Origin(Result):
    """Who made a commit: ``kind`` is ``user`` or ``pipeline`` (then with the
    pipeline's name and version and the job's id)."""
    __slots__ = ("kind", "pipeline", "version", "job")
    kind: str
    pipeline: str | None
    version: int | None
    job: str | None

    def __init__(self, kind: str, pipeline: str | None = None, version: int | None = None,
                 job: str | None = None, *, raw: Any = None) -> None:
        self.kind, self.pipeline, self.version, self.job, self.raw = kind, pipeline, version, job, raw

    @classmethod
    def from_raw(cls, r: Any) -> Origin:
        r = as_dict(r)
        version = r.get("version")
        return cls(str(r.get("kind") or "user"), opt_str(r.get("pipeline")),
                   version if isinstance(version, int) else None, opt_str(r.get("job")), raw=r)


class ProvenanceRef(Result):
    """An input commit a derived commit was made from."""
    __slots__ = ("repo", "commit", "branch")
    repo: str
    commit: str
    branch: str | None

    def __init__(self, repo: str, commit: str, branch: str | None = None, *,
                 raw: Any = None) -> None:
        self.repo, self.commit, self.branch, self.raw = repo, commit, branch, raw

    @classmethod
    def from_raw(cls, r: Any) -> ProvenanceRef:
        r = as_dict(r)
        return cls(str(r.get("repo", "")), str(r.get("commit", "")), opt_str(r.get("branch")), raw=r)


class CommitInfo(Result):
    __slots__ = ("id", "repo", "parents", "message", "author", "time", "origin", "provenance",
                 "tree", "size", "files", "branch")
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
    branch: str | None  # given by show: the branch the ref named

    def __init__(self, id: str, repo: str, parents: list[str], message: str, author: Author,
                 time: float, origin: Origin, provenance: list[ProvenanceRef], tree: str | None,
                 size: int, files: int, branch: str | None = None, *, raw: Any = None) -> None:
        self.id, self.repo, self.parents, self.message = id, repo, parents, message
        self.author, self.time, self.origin, self.provenance = author, time, origin, provenance
        self.tree, self.size, self.files, self.branch, self.raw = tree, size, files, branch, raw

    @classmethod
    def from_raw(cls, r: dict) -> CommitInfo:
        t = r.get("time")
        return cls(str(r.get("id", "")), str(r.get("repo", "")), str_list(r.get("parents")),
                   str(r.get("message") or ""), Author.from_raw(r.get("author")),
                   float(t) if isinstance(t, (int, float)) else 0.0, Origin.from_raw(r.get("origin")),
                   [ProvenanceRef.from_raw(p) for p in as_list(r.get("provenance"))],
                   opt_str(r.get("tree")), as_int(r.get("size")), as_int(r.get("files")),
                   opt_str(r.get("branch")), raw=r)


class Change(Result):
    """A changed path: ``status`` is ``A``, ``M`` or ``D``; a directory's path ends in ``/``."""
    __slots__ = ("status", "path")
    status: str
    path: str

    def __init__(self, status: str, path: str, *, raw: Any = None) -> None:
        self.status, self.path, self.raw = status, path, raw

    @classmethod
    def from_raw(cls, r: Any) -> Change:
        r = as_dict(r)
        return cls(str(r.get("status", "?")), str(r.get("path", "")), raw=r)


class Diff(Result):
    __slots__ = ("from_commit", "to_commit", "changes")
    from_commit: str | None
    to_commit: str | None
    changes: list[Change]

    def __init__(self, from_commit: str | None, to_commit: str | None, changes: list[Change], *,
                 raw: Any = None) -> None:
        self.from_commit, self.to_commit, self.changes, self.raw = from_commit, to_commit, changes, raw

    @classmethod
    def from_raw(cls, r: dict) -> Diff:
        return cls(opt_str(r.get("from")), opt_str(r.get("to")),
                   [Change.from_raw(c) for c in as_list(r.get("changes"))], raw=r)


class Status(Result):
    """A branch's staged changes against its head."""
    __slots__ = ("repo", "branch", "head", "changes")
    repo: str
    branch: str
    head: str | None
    changes: list[Change]

    def __init__(self, repo: str, branch: str, head: str | None, changes: list[Change], *,
                 raw: Any = None) -> None:
        self.repo, self.branch, self.head, self.changes, self.raw = repo, branch, head, changes, raw

    @classmethod
    def from_raw(cls, r: dict) -> Status:
        return cls(str(r.get("repo", "")), str(r.get("branch", "")), opt_str(r.get("head")),
                   [Change.from_raw(c) for c in as_list(r.get("changes"))], raw=r)


class Entry(Result):
    """One entry of a directory listing."""
    __slots__ = ("name", "type", "mode", "mtime", "size", "files", "target", "rdev", "link", "nlink")
    name: str
    type: str            # file, dir, symlink, fifo, socket, char, block
    mode: int
    mtime: int           # nanoseconds
    size: int            # a file's bytes; a directory's bytes below it
    files: int | None    # directories: files below it
    target: str | None   # symlinks
    rdev: int | None     # char and block devices: the device number (os.major, os.minor)
    link: str | None     # a hard-linked name: its group's id
    nlink: int           # a hard-linked name: the names of its group in the commit; else 1

    def __init__(self, name: str, type: str, mode: int, mtime: int, size: int = 0,
                 files: int | None = None, target: str | None = None, rdev: int | None = None,
                 link: str | None = None, nlink: int = 1, *, raw: Any = None) -> None:
        self.name, self.type, self.mode, self.mtime = name, type, mode, mtime
        self.size, self.files, self.target, self.raw = size, files, target, raw
        self.rdev, self.link, self.nlink = rdev, link, nlink

    @classmethod
    def from_raw(cls, r: Any) -> Entry:
        r = as_dict(r)
        files, rdev = r.get("files"), r.get("rdev")
        return cls(str(r.get("name", "")), str(r.get("type", "")), as_int(r.get("mode")),
                   as_int(r.get("mtime")), as_int(r.get("size")),
                   files if isinstance(files, int) else None, opt_str(r.get("target")),
                   rdev if isinstance(rdev, int) and not isinstance(rdev, bool) else None,
                   opt_str(r.get("link")), as_int(r.get("nlink")) or 1, raw=r)


class Listing(Result):
    __slots__ = ("commit", "path", "entries")
    commit: str | None
    path: str
    entries: list[Entry]

    def __init__(self, commit: str | None, path: str, entries: list[Entry], *,
                 raw: Any = None) -> None:
        self.commit, self.path, self.entries, self.raw = commit, path, entries, raw

    @classmethod
    def from_raw(cls, r: dict) -> Listing:
        return cls(opt_str(r.get("commit")), str(r.get("path", "/")),
                   [Entry.from_raw(e) for e in as_list(r.get("entries"))], raw=r)


class ProvenanceStep(Result):
    """One commit of a provenance walk; ``depth`` 0 is the commit asked about."""
    __slots__ = ("depth", "repo", "commit", "origin", "provenance")
    depth: int
    repo: str
    commit: str
    origin: Origin
    provenance: list[ProvenanceRef]

    def __init__(self, depth: int, repo: str, commit: str, origin: Origin,
                 provenance: list[ProvenanceRef], *, raw: Any = None) -> None:
        self.depth, self.repo, self.commit, self.origin = depth, repo, commit, origin
        self.provenance, self.raw = provenance, raw

    @classmethod
    def from_raw(cls, r: dict) -> ProvenanceStep:
        return cls(as_int(r.get("depth")), str(r.get("repo", "")), str(r.get("commit", "")),
                   Origin.from_raw(r.get("origin")),
                   [ProvenanceRef.from_raw(p) for p in as_list(r.get("provenance"))], raw=r)
