"""Reading a repo: ls, get (and cat), log, show, diff, provenance.

Each handler parses its arguments, makes one call into
:mod:`trunkfs.store.history` in a worker thread and replies; ``get`` then
streams the entries and file bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from ...store import history
from ...store.names import split_path
from ...store.objects import FILE, SYMLINK
from .. import protocol
from .base import Request, op

GET_BATCH = 256   # entries of a get stream read per worker-thread call


async def _resolve(req: Request) -> history.Resolved:
    svc = req.service
    return await svc.workers.run(history.resolve, svc.refs, req.repo(), req.arg("ref", str, "main"))


@op("ls")
async def ls(req: Request) -> dict:
    svc = req.service
    at = await _resolve(req)
    parts = split_path(req.arg("path", str, "/"))
    listing = await svc.workers.run(history.list_path, svc.store, at, parts)
    return listing.to_json()


def _next_batch(entries: Iterator[tuple[str, dict]]) -> list[tuple[str, dict]]:
    return list(itertools.islice(entries, GET_BATCH))


@op("get")
async def get(req: Request) -> None:
    """Reply, then stream the entry at ``path`` and everything below it."""
    svc = req.service
    at = await _resolve(req)
    parts = split_path(req.arg("path", str, "/"))
    find = history.lookup_file if req.arg("file_only", bool, False) else history.lookup
    entry = await svc.workers.run(find, svc.store, at, parts)
    conn = req.conn
    await conn.send(protocol.ok_reply({"commit": at.commit, "type": entry["type"],
                                       "size": entry.get("size", 0), "files": entry.get("files", 1)}))
    req.started = True
    entries = history.entries_below(svc.store, entry)
    while batch := await svc.workers.run(_next_batch, entries):
        for rel, e in batch:
            head = {"path": rel, "type": e["type"], "mode": e.get("mode"), "mtime": e.get("mtime")}
            if e["type"] == SYMLINK:
                head["target"] = e.get("target", "")
            elif e["type"] == FILE:
                head["size"] = e.get("size", 0)
            await conn.send({"entry": head})
            if e["type"] == FILE:
                chunks = svc.store.iter_file(e)
                while (data := await svc.workers.run(next, chunks, None)) is not None:
                    await conn.send_data(data)
                await conn.send({"eof": True})
    await conn.send({"end": True})


@op("log")
async def log_op(req: Request) -> list:
    svc = req.service
    at = await _resolve(req)
    return await svc.workers.run(history.log, svc.store, at.commit, req.arg("limit", int, 0))


@op("show")
async def show(req: Request) -> dict:
    svc = req.service
    at = await _resolve(req)
    return await svc.workers.run(history.show, svc.store, at)


@op("diff")
async def diff(req: Request) -> dict:
    svc = req.service
    repo = req.repo()
    ref1 = req.arg("ref1", str, "main")
    ref2 = req.arg("ref2", str, None)
    changes = await svc.workers.run(history.diff, svc.store, svc.refs, repo, ref1, ref2)
    return changes.to_json()


@op("provenance")
async def provenance(req: Request) -> list:
    """A commit's provenance upstream through every stage of the DAG."""
    svc = req.service
    at = await _resolve(req)
    return await svc.workers.run(history.provenance, svc.store, at)
