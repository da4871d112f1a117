"""Merging a branch or commit into a branch, and reverting a commit.

``merge`` fast-forwards when the target branch's head is an ancestor of the
source, else commits a three-way merge with two parents (the head, then
the source) through the one commit path; ``revert`` commits the undoing of
one commit of the branch's history.  The tree work is
:mod:`trunkfs.store.merge`; the changes are :mod:`trunkfs.store.mergechange`.
"""

from __future__ import annotations

import logging

from ...store.changes import CommitMeta
from ...store.errors import InvalidArgument
from ...store.merge import check_strategy, is_ancestor, merge_base
from ...store.mergechange import MergeChange, RevertChange
from ..auth import WRITE
from .base import Request, op

log = logging.getLogger(__name__)


@op("merge")
async def merge(req: Request) -> dict:
    """Args: ``repo``, ``source`` (a branch or commit), ``branch`` (the
    target, default main), ``message``, ``strategy`` (``ours``/``theirs``:
    how conflicting paths are settled; without it they fail the merge)."""
    svc = req.service
    repo, branch = await req.branch_args(WRITE)
    source_ref = req.arg("source", str)
    strategy = check_strategy(req.arg("strategy", str, None))
    source, _ = await svc.workers.run(svc.refs.resolve, repo, source_ref)
    if source is None:
        raise InvalidArgument(f"{repo}@{source_ref} has no commits to merge")
    head, _ = await svc.workers.run(svc.refs.read_branch, repo, branch)
    out = {"repo": repo, "branch": branch, "source": source}
    base = await svc.workers.run(merge_base, svc.store, head, source)
    if head is not None and base == source:
        return dict(out, kind="up-to-date", commit=head, parents=[], jobs=[], resolved=[])

    def behind(now: str | None) -> bool:   # runs in the worker thread, under the branch's lock
        return is_ancestor(svc.store, now, source)
    if base == head:     # the head is the source's ancestor (or the branch has no commits)
        done = await svc.commits.fast_forward(repo, branch, source, behind)
        if done is not None:
            return dict(out, kind="fast-forward", commit=done.id, parents=done.commit.parents,
                        jobs=done.jobs, resolved=[])
    where = f"{repo}@{branch}"
    change = MergeChange(svc.store, where, source, strategy)
    message = req.arg("message", str, "") or f"Merge {repo}@{source_ref} into {branch}"
    committed = await svc.commits.commit(repo, branch, change, CommitMeta(
        message=message, author=req.author, extra_parents=[source]))
    return dict(out, kind="merge", commit=committed.id, parents=committed.commit.parents,
                jobs=committed.jobs, resolved=change.resolved)


@op("revert")
async def revert(req: Request) -> dict:
    """Args: ``repo``, ``commit`` (a commit id or branch), ``branch`` (where
    the revert is committed, default main; the commit must be in its
    history), ``message``."""
    svc = req.service
    repo, branch = await req.branch_args(WRITE)
    ref = req.arg("commit", str)
    reverted, _ = await svc.workers.run(svc.refs.resolve, repo, ref)
    if reverted is None:
        raise InvalidArgument(f"{repo}@{ref} has no commits to revert")
    where = f"{repo}@{branch}"
    change = await svc.workers.run(RevertChange, svc.store, where, reverted)
    subject = (await svc.workers.run(svc.store.read_commit, reverted)).message.split("\n", 1)[0]
    message = req.arg("message", str, "") or f'Revert "{subject}" ({reverted[:12]})'
    done = await svc.commits.commit(repo, branch, change, CommitMeta(
        message=message, author=req.author, allow_empty=False))
    return {"repo": repo, "branch": branch, "reverted": reverted, "commit": done.id,
            "parents": done.commit.parents, "jobs": done.jobs}
