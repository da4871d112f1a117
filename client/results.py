"""Typed results of the socket operations: the base :class:`Result`, and
the results about the daemon, repos (and their access lists) and branches, writes (put, rm, commit,
discard, merge, revert), get, and the store (stats, fsck); commits and their contents are
in :mod:`.history_results`, pipelines and jobs in :mod:`.pipeline_results`.

Each result is read from the daemon's JSON reply (the shapes of
docs/protocol.md).  ``raw`` keeps the reply exactly as it came, so that a
program (and ``trunkfs --json``) can print what the daemon said, fields the
client does not know about included.  Readers are lenient: a field the
daemon left out gets its zero value instead of an exception.

The results are plain classes with ``__slots__`` and hand-written
``__init__``, not dataclasses: every ``trunkfs`` command imports them, and
``dataclasses`` (with the code it generates per class) made each command
start tens of milliseconds slower.  :class:`Result` gives them what the
dataclasses had: a repr, equality by fields (``raw`` left out) and
``__match_args__``, all driven by the fields each class lists in its
``__slots__``, in the order of its ``__init__``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is only needed by the type checker
    from typing import Any, ClassVar


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def as_float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def str_list(value: Any) -> list[str]:
    return [str(v) for v in as_list(value)]


class Result:
    """The base of every result: ``raw`` is the daemon's JSON."""

    __slots__ = ("raw",)
    _fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._fields = tuple(name for klass in reversed(cls.__mro__)
                            for name in klass.__dict__.get("__slots__", ()) if name != "raw")
        setattr(cls, "__match_args__", cls._fields)  # positional ``case`` patterns, as dataclasses have

    def __init__(self, *, raw: Any = None) -> None:
        self.raw = raw

    def to_dict(self) -> Any:
        """The daemon's reply, unchanged (what ``--json`` prints)."""
        return self.raw

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Result) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    # defining __eq__ leaves __hash__ None: results are mutable, as the dataclasses were

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({fields})"


class DaemonInfo(Result):
    __slots__ = ("version", "pid", "uid")
    version: str
    pid: int
    uid: int

    def __init__(self, version: str, pid: int, uid: int, *, raw: Any = None) -> None:
        self.version, self.pid, self.uid, self.raw = version, pid, uid, raw

    @classmethod
    def from_raw(cls, r: dict) -> DaemonInfo:
        return cls(str(r.get("version", "")), as_int(r.get("pid")), as_int(r.get("uid")), raw=r)


class FleetMember(Result):
    """A daemon sharing the store: its id, where it runs, when it was last seen."""
    __slots__ = ("id", "host", "pid", "version", "seen", "ago", "up", "self")
    id: str
    host: str
    pid: int
    version: str
    seen: float
    ago: float       # seconds since it was last seen
    up: bool         # seen recently (it writes its record every 30 s)
    self: bool       # the daemon that answered

    def __init__(self, id: str, host: str, pid: int, version: str, seen: float, ago: float, up: bool,
                 self_: bool = False, *, raw: Any = None) -> None:
        self.id, self.host, self.pid, self.version = id, host, pid, version
        self.seen, self.ago, self.up, self.self, self.raw = seen, ago, up, self_, raw

    @classmethod
    def from_raw(cls, r: dict) -> FleetMember:
        return cls(str(r.get("id", "")), str(r.get("host", "")), as_int(r.get("pid")), str(r.get("version", "")),
                   as_float(r.get("seen")), as_float(r.get("ago")), r.get("up") is True, r.get("self") is True,
                   raw=r)


class Deleted(Result):
    """What a delete removed (a repo, a branch or a pipeline name)."""
    __slots__ = ("name",)
    name: str

    def __init__(self, name: str, *, raw: Any = None) -> None:
        self.name, self.raw = name, raw

    @classmethod
    def from_raw(cls, r: dict) -> Deleted:
        return cls(str(r.get("deleted", "")), raw=r)


class RepoInfo(Result):
    __slots__ = ("name", "id", "created", "branches", "head", "size")
    name: str
    id: str | None            # given by repo_create
    created: float | None     # given by repo_list
    branches: list[str]
    head: str | None          # the head of main
    size: int                 # bytes in the head of main

    def __init__(self, name: str, id: str | None = None, created: float | None = None,
                 branches: list[str] | None = None, head: str | None = None, size: int = 0, *,
                 raw: Any = None) -> None:
        self.name, self.id, self.created, self.head, self.size = name, id, created, head, size
        self.branches = [] if branches is None else branches
        self.raw = raw

    @classmethod
    def from_raw(cls, r: dict) -> RepoInfo:
        return cls(str(r.get("name", "")), opt_str(r.get("id")), r.get("created"),
                   str_list(r.get("branches")), opt_str(r.get("head")), as_int(r.get("size")), raw=r)


class BranchInfo(Result):
    __slots__ = ("name", "head", "repo")
    name: str
    head: str | None
    repo: str | None

    def __init__(self, name: str, head: str | None, repo: str | None = None, *,
                 raw: Any = None) -> None:
        self.name, self.head, self.repo, self.raw = name, head, repo, raw

    @classmethod
    def from_raw(cls, r: dict) -> BranchInfo:
        return cls(str(r.get("branch", r.get("name", ""))), opt_str(r.get("head")),
                   opt_str(r.get("repo")), raw=r)


class TagInfo(Result):
    """A tag: the commit it names, for good."""
    __slots__ = ("repo", "tag", "commit")
    repo: str
    tag: str
    commit: str | None

    def __init__(self, repo: str, tag: str, commit: str | None, *, raw: Any = None) -> None:
        self.repo, self.tag, self.commit, self.raw = repo, tag, commit, raw

    @classmethod
    def from_raw(cls, r: dict) -> TagInfo:
        return cls(str(r.get("repo", "")), str(r.get("tag", "")), opt_str(r.get("commit")), raw=r)


class PutResult(Result):
    __slots__ = ("commit", "branch", "files", "bytes", "new_bytes", "size", "jobs", "skipped",
                 "skipped_reasons")
    commit: str
    branch: str
    files: int
    bytes: int           # bytes sent
    new_bytes: int       # bytes the store did not hold yet
    size: int            # bytes in the new commit
    jobs: list[str]
    skipped: list[str]   # local paths not sent: of no type put sends, a device (not root), or changed meanwhile
    skipped_reasons: dict[str, str]   # why each of ``skipped`` was left out

    def __init__(self, commit: str, branch: str, files: int, bytes: int, new_bytes: int, size: int,
                 jobs: list[str] | None = None, skipped: list[str] | None = None,
                 skipped_reasons: dict[str, str] | None = None, *, raw: Any = None) -> None:
        self.commit, self.branch, self.files, self.bytes = commit, branch, files, bytes
        self.new_bytes, self.size, self.raw = new_bytes, size, raw
        self.jobs = [] if jobs is None else jobs
        self.skipped = [] if skipped is None else skipped
        self.skipped_reasons = {} if skipped_reasons is None else skipped_reasons

    @classmethod
    def from_raw(cls, r: dict) -> PutResult:
        return cls(str(r.get("commit", "")), str(r.get("branch", "")), as_int(r.get("files")),
                   as_int(r.get("bytes")), as_int(r.get("new_bytes")), as_int(r.get("size")),
                   str_list(r.get("jobs")), raw=r)


class RmResult(Result):
    __slots__ = ("commit", "removed", "jobs")
    commit: str
    removed: list[str]
    jobs: list[str]

    def __init__(self, commit: str, removed: list[str], jobs: list[str] | None = None, *,
                 raw: Any = None) -> None:
        self.commit, self.removed, self.raw = commit, removed, raw
        self.jobs = [] if jobs is None else jobs

    @classmethod
    def from_raw(cls, r: dict) -> RmResult:
        return cls(str(r.get("commit", "")), str_list(r.get("removed")), str_list(r.get("jobs")), raw=r)


class MergeResult(Result):
    """A merge: ``kind`` is ``merge`` (a new commit with two parents),
    ``fast-forward`` (the branch moved to the source) or ``up-to-date``
    (the branch has the source already; ``commit`` is its head);
    ``resolved`` are the conflicting paths a strategy settled."""
    __slots__ = ("repo", "branch", "source", "kind", "commit", "parents", "jobs", "resolved")
    repo: str
    branch: str
    source: str
    kind: str
    commit: str | None
    parents: list[str]
    jobs: list[str]
    resolved: list[str]

    def __init__(self, repo: str, branch: str, source: str, kind: str, commit: str | None,
                 parents: list[str], jobs: list[str], resolved: list[str], *, raw: Any = None) -> None:
        self.repo, self.branch, self.source, self.kind = repo, branch, source, kind
        self.commit, self.parents, self.jobs, self.resolved = commit, parents, jobs, resolved
        self.raw = raw

    @classmethod
    def from_raw(cls, r: dict) -> MergeResult:
        return cls(str(r.get("repo", "")), str(r.get("branch", "")), str(r.get("source", "")),
                   str(r.get("kind", "")), opt_str(r.get("commit")), str_list(r.get("parents")),
                   str_list(r.get("jobs")), str_list(r.get("resolved")), raw=r)


class RevertResult(Result):
    """A revert: the new ``commit`` on ``branch`` undoing ``reverted``."""
    __slots__ = ("repo", "branch", "reverted", "commit", "jobs")
    repo: str
    branch: str
    reverted: str
    commit: str
    jobs: list[str]

    def __init__(self, repo: str, branch: str, reverted: str, commit: str, jobs: list[str], *,
                 raw: Any = None) -> None:
        self.repo, self.branch, self.reverted, self.commit, self.jobs = repo, branch, reverted, commit, jobs
        self.raw = raw

    @classmethod
    def from_raw(cls, r: dict) -> RevertResult:
        return cls(str(r.get("repo", "")), str(r.get("branch", "")), str(r.get("reverted", "")),
                   str(r.get("commit", "")), str_list(r.get("jobs")), raw=r)


class CommitResult(Result):
    """A commit of staged changes."""
    __slots__ = ("commit", "repo", "branch", "size", "files", "jobs")
    commit: str
    repo: str
    branch: str
    size: int
    files: int
    jobs: list[str]

    def __init__(self, commit: str, repo: str, branch: str, size: int, files: int,
                 jobs: list[str] | None = None, *, raw: Any = None) -> None:
        self.commit, self.repo, self.branch, self.size, self.files = commit, repo, branch, size, files
        self.jobs = [] if jobs is None else jobs
        self.raw = raw

    @classmethod
    def from_raw(cls, r: dict) -> CommitResult:
        return cls(str(r.get("commit", "")), str(r.get("repo", "")), str(r.get("branch", "")),
                   as_int(r.get("size")), as_int(r.get("files")), str_list(r.get("jobs")), raw=r)


class DiscardResult(Result):
    __slots__ = ("repo", "branch", "discarded")
    repo: str
    branch: str
    discarded: int

    def __init__(self, repo: str, branch: str, discarded: int, *, raw: Any = None) -> None:
        self.repo, self.branch, self.discarded, self.raw = repo, branch, discarded, raw

    @classmethod
    def from_raw(cls, r: dict) -> DiscardResult:
        return cls(str(r.get("repo", "")), str(r.get("branch", "")), as_int(r.get("discarded")), raw=r)


class GetResult(Result):
    """What ``get`` wrote: ``path`` is the local path it created or replaced;
    ``skipped`` entries the caller may not read were left out (the first
    of them in ``skipped_paths``, relative to the path got);
    ``not_written``: local paths get did not make, each with why (a device
    node when not running as root)."""
    __slots__ = ("path", "files", "commit", "skipped", "skipped_paths", "not_written")
    path: str
    files: int
    commit: str | None
    skipped: int
    skipped_paths: list[str]
    not_written: dict[str, str]

    def __init__(self, path: str, files: int, commit: str | None, skipped: int = 0,
                 skipped_paths: list[str] | None = None, not_written: dict[str, str] | None = None, *,
                 raw: Any = None) -> None:
        self.path, self.files, self.commit, self.skipped, self.raw = path, files, commit, skipped, raw
        self.skipped_paths = [] if skipped_paths is None else skipped_paths
        self.not_written = {} if not_written is None else not_written

    @classmethod
    def from_raw(cls, r: dict) -> GetResult:
        return cls(str(r.get("path", "")), as_int(r.get("files")), opt_str(r.get("commit")),
                   as_int(r.get("skipped")), str_list(r.get("skipped_paths")),
                   {str(k): str(v) for k, v in as_dict(r.get("not_written")).items()}, raw=r)


class AclEntry(Result):
    """One entry of a repo's access list: ``who`` is ``user:NAME``,
    ``group:NAME`` or ``everyone``; ``role`` is read, write or admin."""
    __slots__ = ("who", "kind", "id", "role")
    who: str
    kind: str        # user, group or everyone
    id: int | None   # the uid or gid (None for everyone)
    role: str

    def __init__(self, who: str, kind: str, id: int | None, role: str, *, raw: Any = None) -> None:
        self.who, self.kind, self.id, self.role, self.raw = who, kind, id, role, raw

    @classmethod
    def from_raw(cls, r: dict) -> AclEntry:
        ident = r.get("id")
        return cls(str(r.get("who", "")), str(r.get("kind", "")),
                   ident if isinstance(ident, int) and not isinstance(ident, bool) else None,
                   str(r.get("role", "")), raw=r)


class RepoAcl(Result):
    """A repo's owner (admin of it) and its access list."""
    __slots__ = ("name", "owner_uid", "owner", "entries")
    name: str
    owner_uid: int
    owner: str          # the owner's user name (the uid as text when unknown)
    entries: list[AclEntry]

    def __init__(self, name: str, owner_uid: int, owner: str, entries: list[AclEntry] | None = None, *,
                 raw: Any = None) -> None:
        self.name, self.owner_uid, self.owner, self.raw = name, owner_uid, owner, raw
        self.entries = [] if entries is None else entries

    @classmethod
    def from_raw(cls, r: dict) -> RepoAcl:
        owner = as_dict(r.get("owner"))
        return cls(str(r.get("name", "")), as_int(owner.get("uid")), str(owner.get("user", "")),
                   [AclEntry.from_raw(as_dict(e)) for e in as_list(r.get("acl"))], raw=r)


class FsckReport(Result):
    __slots__ = ("ok", "commits", "trees", "files", "chunks", "packs", "blobs_verified", "problems",
                 "rebuilt_index")
    ok: bool
    commits: int
    trees: int
    files: int
    chunks: int
    packs: int
    blobs_verified: int
    problems: list[str]
    rebuilt_index: dict | None

    def __init__(self, ok: bool, commits: int, trees: int, files: int, chunks: int, packs: int,
                 blobs_verified: int, problems: list[str], rebuilt_index: dict | None = None, *,
                 raw: Any = None) -> None:
        self.ok, self.commits, self.trees, self.files = ok, commits, trees, files
        self.chunks, self.packs, self.blobs_verified = chunks, packs, blobs_verified
        self.problems, self.rebuilt_index, self.raw = problems, rebuilt_index, raw

    @classmethod
    def from_raw(cls, r: dict) -> FsckReport:
        rebuilt = r.get("rebuilt_index")
        return cls(bool(r.get("ok")), as_int(r.get("commits")), as_int(r.get("trees")),
                   as_int(r.get("files")), as_int(r.get("chunks")), as_int(r.get("packs")),
                   as_int(r.get("blobs_verified")), str_list(r.get("problems")),
                   rebuilt if isinstance(rebuilt, dict) else None, raw=r)


class CacheStats(Result):
    __slots__ = ("size", "limit", "entries", "hits", "misses", "fetched_bytes", "delivered_bytes",
                 "prefetched", "memory_bytes", "memory_limit")
    size: int
    limit: int
    entries: int
    hits: int
    misses: int
    fetched_bytes: int      # chunk bytes read from the store
    delivered_bytes: int    # bytes handed to readers (the mount, get, cat, read, job inputs)
    prefetched: int         # chunks read ahead of a sequential reader
    memory_bytes: int
    memory_limit: int

    def __init__(self, size: int, limit: int, entries: int, hits: int, misses: int,
                 fetched_bytes: int, delivered_bytes: int = 0, prefetched: int = 0,
                 memory_bytes: int = 0, memory_limit: int = 0, *, raw: Any = None) -> None:
        self.size, self.limit, self.entries = size, limit, entries
        self.hits, self.misses, self.fetched_bytes, self.raw = hits, misses, fetched_bytes, raw
        self.delivered_bytes, self.prefetched = delivered_bytes, prefetched
        self.memory_bytes, self.memory_limit = memory_bytes, memory_limit

    @classmethod
    def from_raw(cls, r: dict) -> CacheStats:
        return cls(as_int(r.get("size")), as_int(r.get("limit")), as_int(r.get("entries")),
                   as_int(r.get("hits")), as_int(r.get("misses")), as_int(r.get("fetched_bytes")),
                   as_int(r.get("delivered_bytes")), as_int(r.get("prefetched")),
                   as_int(r.get("memory_bytes")), as_int(r.get("memory_limit")), raw=r)


class StatsInfo(Result):
    __slots__ = ("store", "logical_bytes", "unique_bytes", "stored_bytes", "dedup_ratio", "chunks",
                 "trees", "packs", "commits", "cache", "requests", "tree_cache", "staging")
    store: str
    logical_bytes: int   # bytes of every commit, counted in full
    unique_bytes: int    # bytes of the distinct chunks
    stored_bytes: int    # bytes the store holds (compressed)
    dedup_ratio: float
    chunks: int
    trees: int
    packs: int
    commits: int
    cache: CacheStats | None
    requests: dict   # the store's requests since the daemon started: {op: {requests, bytes_in, ...}}
    tree_cache: dict  # decoded trees in memory and their limits: {trees, bytes, bytes_limit, indexed}
    staging: dict     # staged entries in memory and their limit: {dirs, entries, limit, nodes}

    def __init__(self, store: str, logical_bytes: int, unique_bytes: int, stored_bytes: int,
                 dedup_ratio: float, chunks: int, trees: int, packs: int, commits: int,
                 cache: CacheStats | None = None, requests: dict | None = None, *, raw: Any = None) -> None:
        self.store, self.logical_bytes, self.unique_bytes = store, logical_bytes, unique_bytes
        self.stored_bytes, self.dedup_ratio, self.chunks = stored_bytes, dedup_ratio, chunks
        self.trees, self.packs, self.commits, self.cache, self.raw = trees, packs, commits, cache, raw
        self.requests = requests or {}
        tree_cache = raw.get("tree_cache") if isinstance(raw, dict) else None
        self.tree_cache = ({k: as_int(tree_cache.get(k)) for k in
                            ("trees", "bytes", "bytes_limit", "indexed")}
                           if isinstance(tree_cache, dict) else {})
        staging = raw.get("staging") if isinstance(raw, dict) else None
        self.staging = ({k: as_int(staging.get(k)) for k in ("dirs", "entries", "limit", "nodes")}
                        if isinstance(staging, dict) else {})

    @classmethod
    def from_raw(cls, r: dict) -> StatsInfo:
        ratio = r.get("dedup_ratio")
        cache = r.get("cache")
        return cls(str(r.get("store", "")), as_int(r.get("logical_bytes")), as_int(r.get("unique_bytes")),
                   as_int(r.get("stored_bytes")), float(ratio) if isinstance(ratio, (int, float)) else 0.0,
                   as_int(r.get("chunks")), as_int(r.get("trees")), as_int(r.get("packs")),
                   as_int(r.get("commits")), CacheStats.from_raw(cache) if isinstance(cache, dict) else None,
                   r.get("requests") if isinstance(r.get("requests"), dict) else None, raw=r)
