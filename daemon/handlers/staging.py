"""A branch's staging area through the socket: status, commit, discard."""

from __future__ import annotations

import errno
import logging

import trio

from ...mountfs.mount import write_back
from ...staging import pathops
from ...staging.area import StagingArea
from ...staging.status import changes, iter_changes
from ...staging.commit import Progress, StagedChange
from ...store import walk
from ...staging.quota import QuotaExceeded
from ...store.errors import InvalidArgument, NoSpace, NothingToCommit, TrunkError
from ...store.names import join_path, split_path
from ...store.objects import SPECIAL
from ...store.changes import CommitMeta
from .. import protocol
from ..auth import READ, WRITE
from ..connection import ProtocolError
from ..commits import CommitResult
from ..service import Service
from .base import Request, file_frames, first_error, next_entry, op, stream_reply, streamed

log = logging.getLogger(__name__)


async def commit_area(svc: Service, area: StagingArea, meta: CommitMeta,
                      progress: Progress | None = None, force: bool = False) -> CommitResult:
    """Commit a branch's staged changes through the commit path; on success
    the staging is dropped, on failure (a conflict too) it stays as it was.
    What the kernel still holds dirty of the mount's files is written first."""
    if svc.mountpoint is not None:
        try:
            await svc.bulk.run(write_back, svc.mountpoint)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:   # cached writes refused (a quota, a full disk): their writers are told
                log.info("commit of %s: the write-back of the mount refused some writes: %s", area.where, exc)
            else:                           # the mount gone from under the daemon: nothing is held dirty there
                log.warning("commit of %s: cannot write back the mount at %s first: %s",
                            area.where, svc.mountpoint, exc)
    async with area.frozen():
        if area.root is None and not meta.allow_empty:
            raise NothingToCommit(f"nothing to commit on {area.where}")
        log.info("commit of %s: staging frozen; writes wait for the commit", area.where)
        change = StagedChange(area, svc.store, svc.bulk.run, progress, force)
        try:
            result = await svc.commits.commit(area.repo, area.branch, change, meta)
        except BaseException:
            change.aborted()
            raise
        area.drop_all()
    return result


@op("status")
async def status(req: Request) -> dict | None:
    """Staged changes of a branch against its head: [{status: A|M|D, path}]
    (with ``stream``, on streamed lines after the repo, branch and head)."""
    svc = req.service
    repo, branch = await req.branch_args(READ)
    area = svc.staging.area(repo, branch)
    head = await svc.heads.head(repo, branch)
    head_root = (await svc.workers.run(svc.store.read_commit, head)).root_entry() if head else None
    if streamed(req):   # found while sent: the whole list is never in memory
        await stream_reply(req, {"repo": repo, "branch": branch, "head": head},
                           ({"status": code, "path": path}
                            for code, path in iter_changes(area, svc.store, head_root)))
        return None
    found = await svc.workers.run(changes, area, svc.store, head_root)
    return {"repo": repo, "branch": branch, "head": head,
            "changes": [{"status": code, "path": path} for code, path in found]}


@op("commit")
async def commit_staged(req: Request) -> dict:
    """Cut a branch's staged changes into a commit.  With ``progress`` true,
    ``{"progress": bytes done, "total": bytes}`` lines precede the reply."""
    svc = req.service
    repo, branch = await req.branch_args(WRITE)
    message = req.arg("message", str, "")
    allow_empty = req.arg("allow_empty", bool, False)
    force = req.arg("force", bool, False)
    want_progress = req.arg("progress", bool, False)
    state = {"done": 0, "total": 0}

    def progress(done: int, total: int) -> None:  # from a worker thread
        state["done"], state["total"] = done, total
    result: dict = {}
    try:
        async with trio.open_nursery() as nursery:
            async def report() -> None:
                last = -1
                while True:
                    await trio.sleep(0.25)
                    if state["done"] != last:
                        last = state["done"]
                        await req.conn.send({"progress": state["done"], "total": state["total"]})
            if want_progress:
                nursery.start_soon(report)
            done = await commit_area(svc, svc.staging.area(repo, branch), CommitMeta(
                message=message or "commit", author=req.author, allow_empty=allow_empty), progress,
                force)
            result = {"commit": done.id, "repo": repo, "branch": branch, "size": done.commit.size,
                      "files": done.commit.files, "jobs": done.jobs}
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    return result


@op("discard")
async def discard(req: Request) -> dict:
    svc = req.service
    repo, branch = await req.branch_args(WRITE)
    paths = req.arg("paths", list, [])
    if not all(isinstance(p, str) for p in paths):
        raise InvalidArgument("discard: 'paths' must be a list of paths")
    dropped = await svc.staging.discard(repo, branch, paths)
    svc.heads.changed(repo, branch)
    return {"repo": repo, "branch": branch, "discarded": dropped}



async def _path_ops(req: Request, area: StagingArea) -> tuple[dict | None, pathops.Listing]:
    """The branch head's root entry and a listing of committed directories
    (in a worker thread), for :mod:`trunkfs.staging.pathops`."""
    svc = req.service
    head = await svc.heads.head(area.repo, area.branch)
    head_root = (await svc.workers.run(svc.store.read_commit, head)).root_entry() if head else None

    async def listing(entry: dict | None) -> dict[str, dict]:
        return await svc.workers.run(walk.listing, svc.store, entry)
    return head_root, listing


def _paths_arg(req: Request, op_name: str) -> list[list[str]]:
    """The request's ``paths``: a non-empty list of paths below the root, split."""
    paths = req.arg("paths", list)
    if not paths or not all(isinstance(p, str) for p in paths):
        raise InvalidArgument(f"{op_name}: 'paths' must be a non-empty list of paths below the root")
    split = [split_path(p) for p in paths]
    if not all(split):
        raise InvalidArgument(f"{op_name}: 'paths' must be a non-empty list of paths below the root")
    return split


def _unstageable(head: dict) -> InvalidArgument | None:
    """Why a ``stage.put`` entry that carries no bytes cannot be staged: a
    FIFO, socket, device or a later name of a hard link (``put`` commits
    those; staging holds files, directories and symlinks)."""
    kind = head.get("type")
    if kind in SPECIAL:
        return InvalidArgument(f"stage.put: {head['path']}: a {kind} cannot be staged (put commits it)")
    if "link_to" in head:
        return InvalidArgument(f"stage.put: {head['path']}: hard links cannot be staged (put commits them)")
    return None


@op("stage.put")
async def stage_put(req: Request) -> dict:
    """Stage files on a branch by path (as writes through the mount do):
    ``{"entry": {"path", "type": "file", "mode"}}``, its data frames and
    ``{"eof": true}`` for each, then ``{"end": true}``.  Nothing is
    committed: ``trunkfs commit`` (or ``status``) sees them."""
    svc = req.service
    repo, branch = await req.branch_args(WRITE)
    area = svc.staging.area(repo, branch)
    conn, uid, gid = req.conn, req.conn.uid, req.conn.gid
    staged: list[str] = []
    written = 0
    refused: Exception | None = None    # the rest of the stream is read, then this is the reply
    while (head := await next_entry(conn, "stage.put")) is not None:
        unstageable = _unstageable(head)
        if unstageable is not None:   # no bytes follow such an entry: refused, the stream read on
            refused = refused or unstageable
            continue
        if head.get("type") != "file":
            raise ProtocolError(protocol.BAD_REQUEST, "stage.put: expected a file entry or end", fatal=True)
        node = None
        if refused is None and "link" in head:
            refused = InvalidArgument(f"stage.put: {head['path']}: hard links cannot be staged "
                                      "(put commits them)")
        if refused is None:
            try:
                parts = split_path(head["path"])
                mode = head.get("mode", 0o644)
                if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
                    raise InvalidArgument(f"stage.put: {head['path']}: mode must be permission bits (0 to 0o777)")
                async with area.mutation():
                    head_root, listing = await _path_ops(req, area)
                    node = await pathops.new_file(area, head_root, parts, listing, uid, gid, mode)
            except TrunkError as exc:
                refused = exc
        offset = 0
        async for data in file_frames(conn):     # read to its end even when refused
            if node is not None and refused is None:
                try:
                    async with area.mutation():
                        offset += await svc.workers.run(area.write, node, offset, data, uid)
                except TrunkError as exc:
                    refused = exc
                except QuotaExceeded as exc:
                    refused = NoSpace(f"stage.put: {join_path(parts)}: {exc}")
        if node is not None:
            async with area.mutation():
                area.save(node)
            staged.append(join_path(parts))
            written += offset
            svc.staging.changed(repo, branch, [parts])
    if refused is not None:
        raise refused
    return {"repo": repo, "branch": branch, "staged": staged, "bytes": written}


@op("stage.mkdir")
async def stage_mkdir(req: Request) -> dict:
    """Stage directories (with their parents) on a branch by path; one that
    is there already is fine, a file in the way is refused."""
    svc = req.service
    repo, branch = await req.branch_args(WRITE)
    paths = _paths_arg(req, "stage.mkdir")
    area = svc.staging.area(repo, branch)
    conn = req.conn
    async with area.mutation():
        head_root, listing = await _path_ops(req, area)
        for parts in paths:
            await pathops.directory(area, head_root, parts, listing, conn.uid, conn.gid, create=True)
    svc.staging.changed(repo, branch, paths)
    return {"repo": repo, "branch": branch, "made": [join_path(parts) for parts in paths]}


@op("stage.rm")
async def stage_rm(req: Request) -> dict:
    """Stage the removal of files (or symlinks) on a branch by path."""
    svc = req.service
    repo, branch = await req.branch_args(WRITE)
    paths = _paths_arg(req, "stage.rm")
    area = svc.staging.area(repo, branch)
    async with area.mutation():
        head_root, listing = await _path_ops(req, area)
        for parts in paths:
            await pathops.remove(area, head_root, parts, listing)
    svc.staging.changed(repo, branch, paths)
    return {"repo": repo, "branch": branch, "removed": [join_path(parts) for parts in paths]}
