"""Repos, branches and tags: create, list, delete, reset; a repo's access list."""

from __future__ import annotations

import logging

from ...store import history
from ...store.errors import InvalidArgument
from ...store.names import check_name
from ...store.objects import RepoInfo
from ...store.retention import RetentionRule, RetentionRules
from ..auth import (ADMIN, READ, WRITE, acl_json, allows, changed_acl, parse_grant, parse_principal,
                    require)
from .base import Request, op

log = logging.getLogger(__name__)


@op("repo.create")
async def repo_create(req: Request) -> dict:
    info = await req.service.workers.run(req.service.refs.create_repo, req.arg("name"), req.conn.uid)
    req.service.heads.changed(info.name, None)
    return {"name": info.name, "id": info.id}


@op("repo.list")
async def repo_list(req: Request) -> list:
    """The repos the caller may read."""
    svc = req.service
    caller = await req.who()
    return await svc.workers.run(history.repo_summaries, svc.store, svc.refs,
                                 lambda info: allows(caller, info, READ))


@op("repo.delete")
async def repo_delete(req: Request) -> dict:
    name = check_name(req.arg("name"), "repo")
    await req.require(name, ADMIN)
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
    await req.require(repo, WRITE)
    commit, _ = await svc.workers.run(svc.refs.resolve, repo, start)
    await svc.workers.run(svc.refs.create_branch, repo, branch, commit)
    svc.heads.changed(repo, branch)
    return {"repo": repo, "branch": branch, "head": commit}


@op("branch.list")
async def branch_list(req: Request) -> list:
    repo = req.repo()
    await req.require(repo, READ)
    branches = await req.service.workers.run(req.service.refs.list_branches, repo)
    return [{"name": b, "head": h} for b, h in branches.items()]


@op("branch.delete")
async def branch_delete(req: Request) -> dict:
    repo = req.repo()
    branch = check_name(req.arg("branch"), "branch")
    await req.require(repo, ADMIN)
    async with req.service.heads.lock(repo, branch):
        try:
            await req.service.workers.run(req.service.refs.delete_branch, repo, branch)
        finally:
            req.service.heads.changed(repo, branch)
    return {"repo": repo, "deleted": branch}



@op("branch.reset")
async def branch_reset(req: Request) -> dict:
    """Move a branch to any commit of its repo (admin only).  The commits it
    leaves stay readable by id until retention and the collector drop them;
    staged changes stay staged and settle against the new head at commit."""
    svc = req.service
    repo = req.repo()
    branch = check_name(req.arg("branch"), "branch")
    await req.require(repo, ADMIN)
    commit = await _commit_of(req, repo, req.arg("to", str))
    before = await svc.commits.reset(repo, branch, commit)
    log.info("branch %s@%s reset from %s to %s by uid %d", repo, branch, (before or "-")[:12],
             commit[:12], req.conn.uid)
    return {"repo": repo, "branch": branch, "head": commit, "before": before}


@op("tag.create")
async def tag_create(req: Request) -> dict:
    svc = req.service
    repo = req.repo()
    tag = check_name(req.arg("tag"), "tag")
    await req.require(repo, WRITE)
    commit = await _commit_of(req, repo, req.arg("ref", str, "main"))
    await svc.workers.run(svc.refs.create_tag, repo, tag, commit)
    return {"repo": repo, "tag": tag, "commit": commit}


@op("tag.list")
async def tag_list(req: Request) -> list:
    repo = req.repo()
    await req.require(repo, READ)
    tags = await req.service.workers.run(req.service.refs.list_tags, repo)
    return [{"repo": repo, "tag": t, "commit": c} for t, c in tags.items()]


@op("tag.delete")
async def tag_delete(req: Request) -> dict:
    repo = req.repo()
    tag = check_name(req.arg("tag"), "tag")
    await req.require(repo, ADMIN)
    await req.service.workers.run(req.service.refs.delete_tag, repo, tag)
    return {"repo": repo, "deleted": tag}


@op("retention.set")
async def retention_set(req: Request) -> dict:
    """Set the retention rule of a repo (or of one of its branches): admin only."""
    repo = req.repo()
    await req.require(repo, ADMIN)
    rule = RetentionRule.from_json({"branch": req.arg("branch", str, None),
                                    "keep_last": req.arg("keep_last", int, None, low=1),
                                    "keep_days": req.arg("keep_days", (int, float), None)})
    rules = await req.service.workers.run(RetentionRules(req.service.store.backend).change, repo, rule,
                                          rule.branch)
    return {"repo": repo, "rules": [r.to_json() for r in rules]}


@op("retention.show")
async def retention_show(req: Request) -> dict:
    repo = req.repo()
    await req.require(repo, READ)
    rules = await req.service.workers.run(RetentionRules(req.service.store.backend).get, repo)
    return {"repo": repo, "rules": [r.to_json() for r in rules]}


@op("retention.clear")
async def retention_clear(req: Request) -> dict:
    """Drop the rule of a repo (or of one branch): its history is kept whole again."""
    repo = req.repo()
    await req.require(repo, ADMIN)
    branch = req.arg("branch", str, None)
    if branch is not None:
        check_name(branch, "branch")
    rules = await req.service.workers.run(RetentionRules(req.service.store.backend).change, repo, None,
                                          branch)
    return {"repo": repo, "rules": [r.to_json() for r in rules]}


async def _commit_of(req: Request, repo: str, ref: str) -> str:
    """The commit ``ref`` names (InvalidArgument for a branch without commits)."""
    commit, _ = await req.service.workers.run(req.service.refs.resolve, repo, ref)
    if commit is None:
        raise InvalidArgument(f"{req.op}: {ref!r} names a branch without commits")
    return commit


def _strings(req: Request, name: str) -> list[str]:
    values = req.arg(name, list, [])
    if not all(isinstance(v, str) for v in values):
        raise InvalidArgument(f"repo.acl: {name!r} must be a list of strings")
    return values


@op("repo.acl")
async def repo_acl(req: Request) -> dict:
    """Show a repo's owner and access list (``read``); with ``grant``
    (``PRINCIPAL=ROLE`` strings) or ``revoke`` (``PRINCIPAL`` strings),
    change it first (``admin``).  A principal is ``user:NAME``,
    ``group:NAME`` (names or numbers) or ``everyone``."""
    svc = req.service
    name = check_name(req.arg("name"), "repo")
    grants = [parse_grant(g) for g in _strings(req, "grant")]
    revokes = [parse_principal(r) for r in _strings(req, "revoke")]
    if not grants and not revokes:
        await req.require(name, READ)
        return acl_json(await svc.workers.run(svc.refs.get_repo, name))
    caller = await req.who()

    def change(info: RepoInfo) -> RepoInfo:  # checked again on the record the swap replaces
        require(caller, info, ADMIN, "repo.acl")
        info.acl = changed_acl(info.acl, grants, revokes)
        return info
    await req.require(name, ADMIN)
    return acl_json(await svc.workers.run(svc.refs.update_repo, name, change))
