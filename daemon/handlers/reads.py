"""Reading a repo: ls, get (and cat), log, show, diff, provenance.

Each handler parses its arguments, makes one call into
:mod:`trunkfs.store.history` in a worker thread and replies; ``get`` then
streams the entries and file bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

from ...store import history
from ...store.errors import InvalidArgument
from ...store.names import join_path, split_path
from ...store.objects import DEVICES, DIR, FILE, SYMLINK
from .. import protocol
from ..auth import READ, R_OK, X_OK, Caller, FileOwner, PermissionDenied, may
from ..connection import Connection
from ..service import Service
from .base import Request, op, stream_reply, streamed

GET_BATCH = 256   # entries of a get stream read per worker-thread call


SKIPPED_SHOWN = 10  # paths a get's end line names of those it left out


async def _resolve(req: Request) -> history.Resolved:
    """The commit the request's ``repo`` and ``ref`` name, when the caller may read the repo."""
    svc = req.service
    repo = req.repo()
    await req.require(repo, READ)
    return await svc.workers.run(history.resolve, svc.refs, repo, req.arg("ref", str, "main"))


def _refuse(req: Request, at: history.Resolved, path: str, what: str) -> PermissionDenied:
    return PermissionDenied(f"{at.repo}:{path}: permission denied ({what}) for uid {req.caller.uid}")


def _search(req: Request, at: history.Resolved) -> Callable[[str, dict], None]:
    """The check of each directory a path passes through: ``x`` on it."""
    caller, owner = req.caller, req.service.file_owner

    def search(path: str, entry: dict) -> None:
        if not may(caller, entry, X_OK, owner):
            raise _refuse(req, at, path, "no search permission on the directory")
    return search


async def _lookup(req: Request, at: history.Resolved, parts: list[str]) -> dict:
    """The entry at ``parts``, reached as the kernel's path walk would for the caller."""
    svc = req.service
    return await svc.workers.run(history.lookup_through, svc.store, at, parts, _search(req, at))


async def _readable_entry(req: Request, at: history.Resolved, parts: list[str], file_only: bool) -> dict:
    """The entry at ``parts`` when the caller may read it (and, with
    ``file_only``, when it is a file: otherwise the error saying what it is)."""
    svc = req.service
    entry = await _lookup(req, at, parts)
    if file_only and entry["type"] != FILE:
        entry = await svc.workers.run(history.lookup_file, svc.store, at, parts)  # its error
    if not _readable(req.caller, entry, svc.file_owner):
        raise _refuse(req, at, join_path(parts), f"the {entry['type']} is not readable")
    return entry


LS_PAGE_MAX = 100_000   # entries one page of ``ls`` holds at most


@op("ls")
async def ls(req: Request) -> dict | None:
    """A directory's entries (``r`` and ``x`` on it: the entries' attributes
    are shown, as ``ls -l`` needs both), or the one entry at a path; with
    ``limit``, a page of them from ``offset`` and the directory's ``total``;
    with ``stream``, every entry on streamed lines (``stream_reply``)."""
    svc = req.service
    at = await _resolve(req)
    parts = split_path(req.arg("path", str, "/"))
    entry = await _lookup(req, at, parts)
    if entry["type"] == DIR and not may(req.caller, entry, R_OK | X_OK, svc.file_owner):
        raise _refuse(req, at, join_path(parts), "the directory is not readable")
    if streamed(req):
        await stream_reply(req, {"commit": at.commit, "path": join_path(parts)},
                           history.iter_listing(svc.store, at, parts))
        return None
    limit = req.arg("limit", int, None, low=1, high=LS_PAGE_MAX)
    listing = await svc.workers.run(history.list_path, svc.store, at, parts,
                                    req.arg("offset", int, 0), limit)
    return listing.to_json()


@op("resolve")
async def resolve(req: Request) -> dict:
    """The commit a ref (branch, tag, commit id or prefix) names now; None
    for a branch without commits."""
    at = await _resolve(req)
    return {"repo": at.repo, "commit": at.commit, "branch": at.branch}


@op("stat")
async def stat(req: Request) -> dict:
    """The one entry at a path (``ls`` of a directory lists what it holds),
    reached as the kernel's path walk would for the caller, as stat(2)."""
    at = await _resolve(req)
    parts = split_path(req.arg("path", str, "/"))
    entry = await _lookup(req, at, parts)
    summary = await req.service.workers.run(history.stat_entry, req.service.store, at, entry)
    return {"commit": at.commit, "path": join_path(parts), "entry": summary}


READ_MAX = 64 << 20    # bytes one ``read`` returns at most
READ_FRAME = 1 << 20   # bytes per data frame of a ``read`` reply


@op("read")
async def read(req: Request) -> None:
    """Reply with a file's size and content id, then stream ``length``
    bytes of it from ``offset`` (fewer at its end; at most READ_MAX), reading
    only the chunks that cover them: ranged reads for the Python data stack
    (a Parquet footer, one column) without the rest of the file."""
    svc = req.service
    at = await _resolve(req)
    parts = split_path(req.arg("path", str, "/"))
    offset, length = req.arg("offset", int, 0), req.arg("length", int, READ_MAX)
    if isinstance(offset, bool) or isinstance(length, bool) or offset < 0 or not 0 <= length <= READ_MAX:
        raise InvalidArgument(f"read: offset must be 0 or more and length from 0 to {READ_MAX}")
    entry = await _readable_entry(req, at, parts, file_only=True)
    wanted = history.covering_chunks(entry, offset, length)
    data = history.assemble(await svc.cache.get_many([bid for bid, _, _ in wanted]), wanted)
    svc.cache.delivered(len(data))
    conn = req.conn
    await conn.send(protocol.ok_reply({"commit": at.commit, "size": entry.get("size", 0),
                                       "content": history.content_id(entry), "offset": offset,
                                       "length": len(data)}))
    req.started = True
    for start in range(0, len(data), READ_FRAME):
        await conn.send_data(data[start:start + READ_FRAME])
    await conn.send({"end": True})


GET_CHUNKS = 8   # chunks of a file a get reads at once (one coalesced store read, or cache hits)


async def _send_file(svc: Service, conn: Connection, chunks: list) -> None:
    """Stream a file's bytes, GET_CHUNKS chunks at a time, reading ahead of
    the sender as the mount reads ahead of a sequential reader (same window,
    same pack-sized requests), through the daemon's one chunk cache: the
    next chunks load while these are sent."""
    cache = svc.cache
    for ids, ahead, size in cache.plan(chunks, GET_CHUNKS):
        for data in await cache.read_group(ids, ahead, size):
            await conn.send_data(data)


def _next_batch(entries: Iterator[tuple[str, dict]]) -> list[tuple[str, dict]]:
    return list(itertools.islice(entries, GET_BATCH))


def _get_head(rel: str, e: dict) -> dict:
    """The entry line of a get stream for ``e`` (bytes follow a file's)."""
    head = {"path": rel, "type": e["type"], "mode": e.get("mode"), "mtime": e.get("mtime")}
    if e["type"] == SYMLINK:
        head["target"] = e.get("target", "")
    elif e["type"] == FILE:
        head["size"] = e.get("size", 0)
    elif e["type"] in DEVICES:
        head["rdev"] = e.get("rdev", 0)
    if "link" in e:
        head["link"] = e["link"]
    return head


class _LinkNames:
    """With ``links``, each later name of a hard-link group in one get
    stream refers to the first name the stream sent (``link_to``) and
    comes without bytes."""

    def __init__(self, wanted: bool) -> None:
        self.wanted = wanted
        self.first: dict[str, str] = {}   # link id -> the path of the name sent first

    def refer(self, head: dict) -> bool:
        """Whether ``head`` (given its ``link_to``) is a later name."""
        link = head.get("link")
        if not self.wanted or link is None:
            return False
        first = self.first.setdefault(link, head["path"])
        if first == head["path"]:
            return False
        head["link_to"] = first
        return True


@op("get")
async def get(req: Request) -> None:
    """Reply, then stream the entry at ``path`` and everything below it."""
    svc = req.service
    at = await _resolve(req)
    parts = split_path(req.arg("path", str, "/"))
    entry = await _readable_entry(req, at, parts, req.arg("file_only", bool, False))
    links = _LinkNames(req.arg("links", bool, False))
    caller, owner = req.caller, svc.file_owner
    skipped: list[str] = []

    def keep(rel: str, e: dict) -> bool:  # what the caller may not read is left out, and counted
        if not rel or _readable(caller, e, owner):
            return True
        skipped.append(rel)
        return False
    conn = req.conn
    await conn.send(protocol.ok_reply({"commit": at.commit, "type": entry["type"],
                                       "size": entry.get("size", 0), "files": entry.get("files", 1)}))
    req.started = True
    entries = history.entries_below(svc.store, entry, keep)
    while batch := await svc.bulk.run(_next_batch, entries):
        for rel, e in batch:
            head = _get_head(rel, e)
            later = links.refer(head)
            await conn.send({"entry": head})
            if e["type"] == FILE and not later:
                await _send_file(svc, conn, e.get("chunks") or [])
                await conn.send({"eof": True})
    end: dict = {"end": True}
    if skipped:
        end.update(skipped=len(skipped), skipped_paths=skipped[:SKIPPED_SHOWN])
    await conn.send(end)


def _readable(caller: Caller, entry: dict, owner: FileOwner) -> bool:
    """Whether ``get`` may send an entry: ``r`` on a file, ``r`` and ``x`` on a
    directory (to list it and reach what it holds); a symlink, FIFO,
    socket or device (metadata only) always."""
    if entry["type"] == FILE:
        return may(caller, entry, R_OK, owner)
    if entry["type"] == DIR:
        return may(caller, entry, R_OK | X_OK, owner)
    return True


@op("log")
async def log_op(req: Request) -> list | None:
    svc = req.service
    at = await _resolve(req)
    if streamed(req):
        await stream_reply(req, {"repo": at.repo, "commit": at.commit},
                           history.iter_log(svc.store, at.commit, req.arg("limit", int, 0)))
        return None
    return await svc.workers.run(history.log, svc.store, at.commit, req.arg("limit", int, 0))


@op("show")
async def show(req: Request) -> dict:
    svc = req.service
    at = await _resolve(req)
    return await svc.workers.run(history.show, svc.store, at)


@op("diff")
async def diff(req: Request) -> dict | None:
    svc = req.service
    repo = req.repo()
    await req.require(repo, READ)
    ref1 = req.arg("ref1", str, "main")
    ref2 = req.arg("ref2", str, None)
    if streamed(req):
        old, new, found = await svc.workers.run(history.iter_diff, svc.store, svc.refs, repo, ref1, ref2)
        await stream_reply(req, {"from": old, "to": new},
                           ({"status": code, "path": path} for code, path in found))
        return None
    changes = await svc.workers.run(history.diff, svc.store, svc.refs, repo, ref1, ref2)
    return changes.to_json()


@op("provenance")
async def provenance(req: Request) -> list:
    """A commit's provenance upstream through every stage of the DAG."""
    svc = req.service
    at = await _resolve(req)
    return await svc.workers.run(history.provenance, svc.store, at)
