"""History queries: what a ref names, what a commit holds at a path, a
branch's log, what changed between two commits, and where a commit came from.

Plain synchronous functions over a :class:`Store` and its :class:`Refs` (no
trio): the socket handlers call them in worker threads, and a script or a
test can call them directly.  Trees are read through the one tree walker,
:mod:`trunkfs.store.walk`.  The dicts they return are the JSON results of the
socket's read operations (docs/protocol.md).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from . import walk
from .codec import blob_id
from .diff import diff_trees
from .errors import IntegrityError, InvalidArgument, NotFound
from .names import join_path
from .links import link_names
from .objects import DEVICES, DIR, FILE, SYMLINK, Commit, RepoInfo
from .refs import Refs
from .store import Store

logger = logging.getLogger(__name__)   # `log` is the commit log below


@dataclass(frozen=True)
class Resolved:
    """What a ref of a repo names: a commit (None for a branch without
    commits) and the branch (None when the ref named a commit)."""

    repo: str
    commit: str | None
    branch: str | None


def resolve(refs: Refs, repo: str, ref: str | None) -> Resolved:
    """A branch name or a commit id (or unique prefix) of ``repo``."""
    commit, branch = refs.resolve(repo, ref)
    return Resolved(repo, commit, branch)


def empty_root() -> dict:
    """The root of a branch that has no commits yet: an empty directory."""
    return {"name": "", "type": DIR, "mode": 0o755, "mtime": 0, "tree": None,
            "size": 0, "files": 0, "dirs": 0}


def root_of(store: Store, commit_id: str | None) -> dict:
    """A commit's root directory as a tree entry (empty for no commit)."""
    return store.read_commit(commit_id).root_entry() if commit_id else empty_root()


def lookup(store: Store, at: Resolved, parts: list[str]) -> dict:
    """The entry at ``parts`` in the commit ``at`` names; NotFound saying
    which part of ``repo:/path`` is missing or not a directory."""
    return walk.lookup(store, root_of(store, at.commit), parts, where=f"{at.repo}:")


def lookup_through(store: Store, at: Resolved, parts: list[str],
                   search: Callable[[str, dict], None]) -> dict:
    """Like :func:`lookup`, but ``search(path, directory entry)`` is called
    for each directory the path passes through, before looking into it (a
    permission check raises there, as the kernel's path walk does)."""
    entry = root_of(store, at.commit)
    for i, name in enumerate(parts):
        if not walk.is_dir(entry):
            raise NotFound(f"{at.repo}:{join_path(parts[:i])} is not a directory")
        search(join_path(parts[:i]), entry)
        entry = walk.lookup(store, entry, [name], where=f"{at.repo}:{join_path(parts[:i])}".rstrip("/"))
    return entry


def lookup_file(store: Store, at: Resolved, parts: list[str]) -> dict:
    """Like :func:`lookup`, but InvalidArgument unless the entry is a file."""
    entry = lookup(store, at, parts)
    if entry["type"] != FILE:
        kind = "directory" if entry["type"] == DIR else entry["type"]
        raise InvalidArgument(f"{at.repo}:{join_path(parts)} is a {kind}, not a file")
    return entry


# -- listing and reading -----------------------------------------------------------

def content_id(entry: dict) -> str:
    """The identity of a file's bytes (of its chunk list: the same bytes
    chunked the same way have the same id, in any commit or repo); 32 hex
    digits.  What caches key on (``checksum``/``ukey`` of the fsspec
    filesystem), so that they know when data changed without reading it."""
    seed = ",".join(f"{c[0]}:{c[1]}" for c in entry.get("chunks") or []).encode()
    return blob_id(seed).hex()[:32]


Span = tuple[bytes, int, int]   # a chunk id and the slice of its bytes wanted


def covering_chunks(entry: dict, offset: int, length: int) -> list[Span]:
    """The chunks of a file entry that cover ``length`` bytes from
    ``offset`` (fewer at its end), each with the slice of it wanted."""
    if offset < 0 or length < 0:
        raise InvalidArgument("a read needs an offset and a length of 0 or more")
    end = min(offset + length, int(entry.get("size", 0)))
    wanted: list[Span] = []
    pos = 0
    for hexid, size in entry.get("chunks") or []:
        if pos >= end:
            break
        if pos + size > offset:
            wanted.append((bytes.fromhex(hexid), max(0, offset - pos), min(size, end - pos)))
        pos += size
    return wanted


def assemble(blobs: list[bytes], wanted: list[Span]) -> bytes:
    """The bytes :func:`covering_chunks` asked for, from those chunks' bytes."""
    return b"".join(data[a:b] for data, (_, a, b) in zip(blobs, wanted))


def read_range(entry: dict, offset: int, length: int, read_blobs: Callable[[list[bytes]], list[bytes]]) -> bytes:
    """``length`` bytes of a file entry from ``offset`` (fewer at its end),
    reading only the chunks that cover them, all in one call of
    ``read_blobs`` (``Store.read_blobs``: neighbours in a pack come in one
    request, each blob verified)."""
    wanted = covering_chunks(entry, offset, length)
    return assemble(read_blobs([bid for bid, _, _ in wanted]) if wanted else [], wanted)


def entry_summary(entry: dict, nlink: dict[str, int] | None = None) -> dict:
    """What ``ls`` says of one entry; ``nlink`` (:func:`link_counts`) gives
    a hard-linked name its ``nlink``, the names of its group in the commit."""
    out = {"name": entry["name"], "type": entry["type"], "mode": entry.get("mode"),
           "mtime": entry.get("mtime")}
    if entry["type"] == FILE:
        out["content"] = content_id(entry)
    if entry["type"] in (FILE, DIR):
        out["size"] = entry.get("size", 0)
    if entry["type"] == DIR:
        out["files"] = entry.get("files", 0)
    if entry["type"] == SYMLINK:
        out["target"] = entry.get("target")
    if entry["type"] in DEVICES:
        out["rdev"] = entry.get("rdev", 0)
    if "link" in entry:
        out["link"] = entry["link"]
        if nlink is not None:
            out["nlink"] = nlink.get(entry["link"], 1)
    return out


def link_counts(store: Store, at: Resolved, entries: Iterable[dict]) -> dict[str, int]:
    """How many names each hard-link group of ``entries`` has in the commit
    ``at`` names (st_nlink); reads only the directories that hold links."""
    groups = {e["link"] for e in entries if "link" in e}
    counts: dict[str, int] = {}
    if groups:
        for _, e in link_names(store, root_of(store, at.commit), groups):
            counts[e["link"]] = counts.get(e["link"], 0) + 1
    return counts


def stat_entry(store: Store, at: Resolved, entry: dict) -> dict:
    """What ``stat`` says of one entry (with ``nlink`` when it is hard-linked)."""
    return entry_summary(entry, link_counts(store, at, [entry]))


@dataclass
class Listing:
    """``ls``: the entries of a directory by name, or the one entry at a
    path that is not a directory."""

    commit: str | None
    path: str
    entries: list[dict] = field(default_factory=list)
    total: int | None = None     # entries the directory holds, when one page of them was asked for

    def to_json(self) -> dict:
        out: dict = {"commit": self.commit, "path": self.path, "entries": self.entries}
        if self.total is not None:
            out["total"] = self.total
        return out


def list_path(store: Store, at: Resolved, parts: list[str],
              offset: int = 0, limit: int | None = None) -> Listing:
    """The entries of the directory at ``parts``, by name (only
    ``limit`` of them from ``offset`` when ``limit`` is given: a page of a
    large directory costs its page, not the directory, in summaries)."""
    entry = lookup(store, at, parts)
    if not walk.is_dir(entry):
        return Listing(at.commit, join_path(parts), [stat_entry(store, at, entry)])
    index = walk.listing(store, entry)
    names = sorted(index)
    total = len(names) if limit is not None else None
    if limit is not None:
        names = names[offset:offset + limit]
    entries = [index[name] for name in names]
    nlink = link_counts(store, at, entries)
    return Listing(at.commit, join_path(parts), [entry_summary(e, nlink) for e in entries], total)


LIST_PAGE = 1000


def iter_listing(store: Store, at: Resolved, parts: list[str]) -> Iterator[dict]:
    """The entry summaries of :func:`list_path`, a page of names at a time: a
    directory of a million names is never summarised whole."""
    entry = lookup(store, at, parts)
    if not walk.is_dir(entry):
        yield stat_entry(store, at, entry)
        return
    index = walk.listing(store, entry)
    names = sorted(index)
    for start in range(0, len(names), LIST_PAGE):
        entries = [index[name] for name in names[start:start + LIST_PAGE]]
        nlink = link_counts(store, at, entries)
        yield from (entry_summary(e, nlink) for e in entries)


def entries_below(store: Store, entry: dict,
                  keep: Callable[[str, dict], bool] | None = None) -> Iterator[tuple[str, dict]]:
    """``(relative path, entry)`` of ``entry`` itself (path ``""``) and, for
    a directory, of everything below it: parents before children, by name.
    ``keep(path, entry)`` False leaves an entry out, and for a directory
    everything below it (``keep`` is asked about ``entry`` itself too)."""
    if keep is not None and not keep("", entry):
        return
    yield "", entry
    left_out: set[str] = set()

    def descend(path: str, e: dict) -> bool:
        return path not in left_out
    for path, e in walk.walk(store, entry, descend=descend):
        if keep is not None and not keep(path[1:], e):
            left_out.add(path)
            continue
        yield path[1:], e


# -- commits ----------------------------------------------------------------------

def commit_summary(commit_id: str, commit: Commit) -> dict:
    """What ``log`` and ``show`` say of one commit."""
    return {"id": commit_id, "repo": commit.repo, "parents": commit.parents,
            "message": commit.message, "author": commit.author, "time": commit.time,
            "origin": commit.origin, "provenance": commit.provenance, "tree": commit.tree,
            "size": commit.size, "files": commit.files, "daemon": commit.daemon or None}


def log(store: Store, commit_id: str | None, limit: int = 0) -> list[dict]:
    """Commits from ``commit_id`` back along first parents, newest first
    (all of them when ``limit`` is 0)."""
    return list(iter_log(store, commit_id, limit))


def iter_log(store: Store, commit_id: str | None, limit: int = 0) -> Iterator[dict]:
    """:func:`log`, a commit at a time."""
    cur, n = commit_id, 0
    while cur and (not limit or n < limit):
        try:
            commit = store.read_commit(cur)
        except NotFound:
            if n and store.expired(cur):     # the history retention kept ends here
                return
            raise
        yield commit_summary(cur, commit)
        n += 1
        cur = commit.parents[0] if commit.parents else None


def commit_graph(store: Store, starts: list[str], limit: int) -> tuple[list[dict], list[str]]:
    """Up to ``limit`` commits reachable from ``starts`` through every
    parent (merges too), newest first, each before its parents when the
    clocks agree; and the commits to start the next page from (empty at
    the first commit).  A parent that retention expired is named in its
    child's ``parents`` and not followed."""
    heap: list[tuple[float, str, Commit]] = []
    queued: set[str] = set()

    def push(cid: str) -> None:
        if cid in queued:
            return
        queued.add(cid)
        try:
            commit = store.read_commit(cid)
        except NotFound:
            if store.expired(cid):
                return
            raise
        heapq.heappush(heap, (-commit.time, cid, commit))
    for cid in starts:
        push(cid)
    out: list[dict] = []
    while heap and len(out) < limit:
        _, cid, commit = heapq.heappop(heap)
        out.append(commit_summary(cid, commit))
        for parent in commit.parents:
            push(parent)
    return out, [cid for _, cid, _ in sorted(heap)]


def show(store: Store, at: Resolved) -> dict:
    """The commit ``at`` names, with the branch it was named by (if any)."""
    if at.commit is None:
        raise NotFound(f"branch {at.repo}@{at.branch} has no commits yet")
    out = commit_summary(at.commit, store.read_commit(at.commit))
    out["branch"] = at.branch
    return out


# -- changes ----------------------------------------------------------------------

@dataclass
class Diff:
    """The files and symlinks that differ from one commit to another:
    ``(status, path)`` with status ``A``, ``M`` or ``D``."""

    old: str | None
    new: str | None
    changes: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"from": self.old, "to": self.new,
                "changes": [{"status": s, "path": p} for s, p in self.changes]}


def diff_commits(store: Store, old: str | None, new: str | None) -> Diff:
    t_old = store.read_commit(old).tree if old else None
    t_new = store.read_commit(new).tree if new else None
    return Diff(old, new, list(diff_trees(store, t_old, t_new)))


def diff_page(store: Store, old: str | None, new: str | None, offset: int, limit: int,
              count_max: int) -> dict:
    """One page of the changes from commit ``old`` to ``new`` (``limit``
    from ``offset``, by path) and their counts by status, counted up to
    ``count_max`` changes past the page (``complete`` False when there are
    more): a page of a diff that adds a million files costs its page and
    the cap, not the million."""
    t_old = store.read_commit(old).tree if old else None
    t_new = store.read_commit(new).tree if new else None
    counts = {"A": 0, "M": 0, "D": 0}
    changes: list[dict] = []
    seen, complete = 0, True
    for status, path in diff_trees(store, t_old, t_new):
        if seen >= offset + limit + count_max:
            complete = False
            break
        if offset <= seen < offset + limit:
            changes.append({"status": status, "path": path})
        counts[status] += 1
        seen += 1
    return {"from": old, "to": new, "changes": changes, "total": seen, "counts": counts,
            "complete": complete, "offset": offset, "limit": limit}


def first_parent(store: Store, commit_id: str) -> str | None:
    parents = store.read_commit(commit_id).parents
    return parents[0] if parents else None


def commit_changes(store: Store, commit_id: str | None) -> Diff:
    """What a commit changed against its first parent (everything, for a
    first commit)."""
    return diff_commits(store, first_parent(store, commit_id) if commit_id else None, commit_id)


def diff(store: Store, refs: Refs, repo: str, ref1: str, ref2: str | None) -> Diff:
    """From ``ref1`` to ``ref2``; without ``ref2``, what ``ref1`` changed."""
    old, new, changes = iter_diff(store, refs, repo, ref1, ref2)
    return Diff(old, new, list(changes))


def iter_diff(store: Store, refs: Refs, repo: str, ref1: str, ref2: str | None
              ) -> tuple[str | None, str | None, Iterator[tuple[str, str]]]:
    """:func:`diff`: the two commits, and the changes as the walk finds them."""
    old, _ = refs.resolve(repo, ref1)
    if ref2 is None:
        new, old = old, first_parent(store, old) if old else None
    else:
        new, _ = refs.resolve(repo, ref2)
    t_old = store.read_commit(old).tree if old else None
    t_new = store.read_commit(new).tree if new else None
    return old, new, diff_trees(store, t_old, t_new)


# -- provenance and repos --------------------------------------------------------------

def provenance(store: Store, at: Resolved) -> list[dict]:
    """The commit ``at`` names and every commit upstream it was derived
    from, depth first through the pipeline DAG, each once."""
    out: list[dict] = []
    stack: list[tuple[str, str | None, int]] = [(at.repo, at.commit, 0)]
    seen: set[str] = set()
    while stack:
        repo, cid, depth = stack.pop()
        if not cid or cid in seen:
            continue
        seen.add(cid)
        commit = store.read_commit(cid)
        out.append({"depth": depth, "repo": repo, "commit": cid, "origin": commit.origin,
                    "provenance": commit.provenance})
        for p in reversed(commit.provenance):
            stack.append((p["repo"], p["commit"], depth + 1))
    return out


def repo_summaries(store: Store, refs: Refs,
                   visible: Callable[[RepoInfo], bool] | None = None) -> list[dict]:
    """Every repo (that ``visible`` allows) with its branches, the head of
    main and that head's size (a repo deleted while listing is left out)."""
    out: list[dict] = []
    for info in refs.list_repos():
        if visible is not None and not visible(info):
            continue
        try:
            branches = refs.list_branches(info.name)
        except NotFound:
            continue
        head = branches.get("main")
        try:
            size: int | None = store.read_commit(head).size if head else 0
        except IntegrityError as exc:   # one damaged head does not hide every repo
            logger.warning("repo %s: %s", info.name, exc)
            size = None
        out.append({"name": info.name, "created": info.created, "branches": sorted(branches),
                    "head": head, "size": size})
    return out
