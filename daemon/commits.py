"""The one commit path: every commit of the daemon goes through
:meth:`CommitPath.commit`.

A commit is a *change* applied to a branch head.  The path owns what every
commit needs, in this order:

1. a write session of the store (aborted if anything fails);
2. ``change.prepare(session)``: the work done once, before the head is
   read (receiving a ``put`` stream, re-chunking staged files);
3. under the branch's lock, in a worker thread, the compare-and-swap loop:
   read the head, ``change.build(head root entry, session)`` writes the new
   root tree over it, flush the session's packs, write the commit, move the
   ref from the head it read; if another writer moved the branch meanwhile,
   build again on the new head (at most ``CAS_ATTEMPTS`` times);
4. the branch-moved notification (heads cache, mount invalidation);
5. the triggers (pipelines): jobs planned for the new commit, the commit
   event with their ids, then the jobs started, so a watcher sees events in
   the order they happen.

Changes are small classes (``trunkfs.store.changes``): ``Edit`` (rm),
``ReplaceRoot`` (a pipeline's merged output), the received entries of a
``put`` (``handlers/writes.py``) and the staged build of a branch's staging
area (``trunkfs.staging.commit``).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Protocol

from ..store.changes import Change, CommitMeta, HeadChecked
from ..store.backends.wrappers import LostReplyConflict
from ..store.errors import Conflict, NothingToCommit
from ..store.objects import EMPTY_TREE_ID, Commit
from ..store.refs import Refs
from ..store.store import Store
from ..store.writer import WriteSession
from .events import EventBus
from .malloc import trim
from .heads import BranchHeads
from .workers import Workers

log = logging.getLogger(__name__)

CAS_ATTEMPTS = 100      # other daemons may commit to the branch too: replay, with a growing pause


@dataclass
class CommitResult:
    id: str
    commit: Commit
    jobs: list[str]
    new_bytes: int   # bytes this commit added to the store (after dedup and compression)


class Planned(Protocol):
    """An item of work a trigger planned (a pipeline job)."""

    @property
    def id(self) -> str: ...


class CommitTrigger(Protocol):
    """Something that starts work on new commits (the pipeline scheduler)."""

    async def plan(self, repo: str, branch: str, commit: str) -> list[Any]:
        """New work for this commit, not yet started (:class:`Planned` items)."""

    async def start(self, planned: list[Any]) -> list[str]:
        """Announce and start what :meth:`plan` returned; returns the ids."""


def _pause(attempt: int) -> None:
    """Before a retry of a compare-and-swap someone else won: a random
    pause, growing with the attempts, spreads the writers out."""
    if attempt:
        time.sleep(random.uniform(0, min(0.5, 0.002 * 2 ** min(attempt, 8))))


class CommitPath:
    def __init__(self, store: Store, refs: Refs, heads: BranchHeads, events: EventBus,
                 workers: Workers, daemon_id: str = "") -> None:
        self.daemon_id = daemon_id    # recorded on every commit
        self.store = store
        self.refs = refs
        self.heads = heads
        self.events = events
        self.workers = workers
        self._triggers: list[CommitTrigger] = []
        self.made: dict[str, int] = {}          # commits cut here, by repo (``/metrics``)
        self.new_bytes: dict[str, int] = {}     # bytes they added to the store, by repo

    def add_trigger(self, trigger: CommitTrigger) -> None:
        self._triggers.append(trigger)

    async def commit(self, repo: str, branch: str, change: Change, meta: CommitMeta) -> CommitResult:
        session = self.store.session()
        try:
            await change.prepare(session)
            async with self.heads.lock(repo, branch):
                try:
                    cid, commit = await self.workers.run(self._commit_sync, repo, branch, change,
                                                         session, meta)
                finally:
                    self.heads.changed(repo, branch)
        except BaseException:
            session.abort()
            raise
        self.made[repo] = self.made.get(repo, 0) + 1
        self.new_bytes[repo] = self.new_bytes.get(repo, 0) + session.new_bytes
        jobs = await self._announce(repo, branch, cid, commit)
        await self.workers.run(trim)    # what the commit's buffers held goes back to the kernel now
        return CommitResult(cid, commit, jobs, session.new_bytes)

    async def fast_forward(self, repo: str, branch: str, target: str,
                           may_move: Callable[[str | None], bool]) -> CommitResult | None:
        """Move ``branch`` to the existing commit ``target`` if
        ``may_move(head)`` holds for the head read under the branch's lock
        (a merge: the head is an ancestor of ``target``); None, leaving the
        branch as it is, when it does not.  The branch then has a new head
        as after a commit, and it is announced as one: the commit event
        (with ``fast_forward``) and the triggers, so pipelines run on the new
        head (not on every commit it passed over)."""
        async with self.heads.lock(repo, branch):
            try:
                moved = await self.workers.run(self._move_sync, repo, branch, target, may_move)
            finally:
                self.heads.changed(repo, branch)
        if moved is False:
            return None
        commit = await self.workers.run(self.store.read_commit, target)
        # announced by whoever moved it there first, when that was not us
        jobs = await self._announce(repo, branch, target, commit, fast_forward=True) if moved else []
        return CommitResult(target, commit, jobs, 0)

    async def reset(self, repo: str, branch: str, target: str) -> str | None:
        """Move ``branch`` to the existing commit ``target`` whatever its head
        (``branch reset``); the head it replaced.  Not announced as a commit:
        it runs no pipeline."""
        replaced: list[str | None] = []

        def remember(head: str | None) -> bool:
            replaced.append(head)
            return True
        async with self.heads.lock(repo, branch):
            try:
                await self.workers.run(self._move_sync, repo, branch, target, remember)
            finally:
                self.heads.changed(repo, branch)
        return replaced[-1] if replaced else target

    def _move_sync(self, repo: str, branch: str, target: str,
                   may_move: Callable[[str | None], bool]) -> bool | None:
        """True: moved; None: another writer had moved it there already;
        False: ``may_move`` refused the head."""
        for attempt in range(CAS_ATTEMPTS):
            _pause(attempt)
            head, version = self.refs.read_branch(repo, branch)
            if head == target:
                return None
            if not may_move(head):
                return False
            try:
                self.refs.move_branch(repo, branch, target, version)
            except LostReplyConflict:
                head_now, _ = self.refs.read_branch(repo, branch)
                if self._reaches(head_now, target):
                    return True
                continue
            except Conflict:
                continue
            log.info("fast-forwarded %s@%s from %s to %s", repo, branch, (head or "nothing")[:12],
                     target[:12])
            return True
        raise Conflict(f"branch {repo}@{branch} kept moving; fast-forward abandoned")

    async def _announce(self, repo: str, branch: str, cid: str, commit: Commit,
                        fast_forward: bool = False) -> list[str]:
        """Tell the triggers and the watchers of a branch's new head
        ``cid``: jobs planned, the commit event, then the jobs started."""
        planned: list[tuple[CommitTrigger, Planned]] = []
        for trigger in self._triggers:
            planned += [(trigger, item) for item in await trigger.plan(repo, branch, cid)]
        event = {"type": "commit", "repo": repo, "branch": branch, "commit": cid,
                 "parents": commit.parents, "message": commit.message,
                 "origin": commit.origin, "time": commit.time,
                 "jobs": [item.id for _, item in planned]}
        if fast_forward:
            event["fast_forward"] = True
        self.events.publish(event)
        jobs: list[str] = []
        for trigger in self._triggers:
            mine = [item for t, item in planned if t is trigger]
            if mine:
                jobs += await trigger.start(mine)
        return jobs

    def _commit_sync(self, repo: str, branch: str, change: Change, session: WriteSession,
                     meta: CommitMeta) -> tuple[str, Commit]:
        info = self.refs.get_repo(repo)
        for attempt in range(CAS_ATTEMPTS):
            _pause(attempt)
            head, version = self.refs.read_branch(repo, branch)
            if isinstance(change, HeadChecked):
                change.check_head(head)
            base = self.store.read_commit(head).root_entry() if head else None
            root = change.build(base, session)
            if not meta.allow_empty and root["tree"] == (base["tree"] if base else EMPTY_TREE_ID.hex()):
                raise NothingToCommit(f"nothing to commit on {repo}@{branch}")
            session.flush()
            self.store.check_session(session)
            commit = Commit(repo=repo, repo_id=info.id, tree=root["tree"],
                            parents=([head] if head else []) + meta.extra_parents,
                            message=meta.message,
                            author=meta.author, time=time.time(), origin=meta.origin,
                            provenance=meta.provenance, size=root.get("size", 0),
                            files=root.get("files", 0), dirs=root.get("dirs", 0),
                            packs=session.pack_ids(), daemon=self.daemon_id)
            cid = self.store.write_commit(commit)
            try:
                self.refs.move_branch(repo, branch, cid, version)
            except LostReplyConflict:
                # our swap may have landed, its reply lost, and another daemon
                # built on it before the read-back: then our commit is below the head
                head_now, _ = self.refs.read_branch(repo, branch)
                if self._reaches(head_now, cid):
                    log.info("committed %s@%s %s (its reply was lost; found below the head)",
                             repo, branch, cid[:12])
                    return cid, commit
                log.info("branch %s@%s moved during a commit; building again on the new head",
                         repo, branch)
                continue
            except Conflict:
                log.info("branch %s@%s moved during a commit; building again on the new head",
                         repo, branch)
                continue
            log.info("committed %s@%s %s (%d files, %d bytes)", repo, branch, cid[:12],
                     commit.files, commit.size)
            return cid, commit
        raise Conflict(f"branch {repo}@{branch} kept moving; commit abandoned")

    def _reaches(self, head: str | None, cid: str, limit: int = 10_000) -> bool:
        """Whether ``cid`` is ``head`` or one of its first-parent ancestors
        (looked for within ``limit`` commits)."""
        cur = head
        for _ in range(limit):
            if cur is None:
                return False
            if cur == cid:
                return True
            parents = self.store.read_commit(cur).parents
            cur = parents[0] if parents else None
        return False
