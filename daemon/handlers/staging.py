"""A branch's staging area through the socket: status, commit, discard."""

from __future__ import annotations

import logging

import trio

from ...staging.area import StagingArea
from ...staging.status import changes
from ...staging.commit import Progress, StagedChange
from ...store.errors import InvalidArgument, NothingToCommit
from ...store.changes import CommitMeta
from ..auth import READ, WRITE
from ..commits import CommitResult
from ..service import Service
from .base import Request, first_error, op

log = logging.getLogger(__name__)


async def commit_area(svc: Service, area: StagingArea, meta: CommitMeta,
                      progress: Progress | None = None, force: bool = False) -> CommitResult:
    """Commit a branch's staged changes through the commit path; on success
    the staging is dropped, on failure (a conflict too) it stays as it was."""
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
async def status(req: Request) -> dict:
    """Staged changes of a branch against its head: [{status: A|M|D, path}]."""
    svc = req.service
    repo, branch = await req.branch_args(READ)
    area = svc.staging.area(repo, branch)
    head = await svc.heads.head(repo, branch)
    head_root = (await svc.workers.run(svc.store.read_commit, head)).root_entry() if head else None
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

