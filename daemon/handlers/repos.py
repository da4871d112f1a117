"""Repos and branches: create, list, delete."""

from __future__ import annotations

from ...store import history
from ...store.names import check_name
from .base import Request, op


@op("repo.create")
async def repo_create(req: Request) -> dict:
    info = await req.service.workers.run(req.service.refs.create_repo, req.arg("name"))
    req.service.heads.changed(info.name, None)
    return {"name": info.name, "id": info.id}


@op("repo.list")
async def repo_list(req: Request) -> list:
    svc = req.service
    return await svc.workers.run(history.repo_summaries, svc.store, svc.refs)


@op("repo.delete")
async def repo_delete(req: Request) -> dict:
    name = req.arg("name")
    try:
        await req.service.workers.run(req.service.refs.delete_repo, name)
    finally:
        req.service.heads.changed(name, None)
    return {"deleted": name}


@op("branch.create")
async def branch_create(req: Request) -> dict:
    svc = req.service
    repo = req.repo()
    branch = check_name(req.arg("branch"), "branch")
    start = req.arg("from", str, "main")
    commit, _ = await svc.workers.run(svc.refs.resolve, repo, start)
    await svc.workers.run(svc.refs.create_branch, repo, branch, commit)
    svc.heads.changed(repo, branch)
    return {"repo": repo, "branch": branch, "head": commit}


@op("branch.list")
async def branch_list(req: Request) -> list:
    branches = await req.service.workers.run(req.service.refs.list_branches, req.repo())
    return [{"name": b, "head": h} for b, h in branches.items()]


@op("branch.delete")
async def branch_delete(req: Request) -> dict:
    repo = req.repo()
    branch = check_name(req.arg("branch"), "branch")
    async with req.service.heads.lock(repo, branch):
        try:
            await req.service.workers.run(req.service.refs.delete_branch, repo, branch)
        finally:
            req.service.heads.changed(repo, branch)
    return {"repo": repo, "deleted": branch}

