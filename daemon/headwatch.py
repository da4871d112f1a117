"""Following branch moves made by other daemons on the same store.

This daemon learns of its own moves from the commit path; another daemon's
commit changes only the ref object in the store.  :class:`HeadWatch` reads
the refs back every ``head_poll_interval`` seconds (one ``get`` per watched
branch, in a worker thread) and, when a branch moved elsewhere, runs the
notification a local commit runs:

- the branch-moved listeners (``BranchHeads.changed``: the cached head is
  dropped, the mount invalidates the kernel's entries of the branch's views);
- a ``commit`` event for each commit between the head this daemon knew and
  the new one (oldest first), for ``trunkfs watch``.

It never runs the commit triggers: a commit made elsewhere plans no jobs
here (which daemon runs a job is decided by job claims, not by who saw the
commit first).  Moves of this daemon's own commits are recognised by
:class:`LocalCommits`, a commit trigger that only records ids, and are not
announced twice.

Which branches: those this daemon has in use (the heads ``BranchHeads``
caches: mount views, status, commits), every round; and while anyone
watches (``EventBus.watching``), every branch of every repo, found by a
listing every ``LISTING_EVERY`` seconds (and at once when a watch starts).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import trio

from ..store.errors import NotFound, TrunkError
from ..store.objects import Commit
from ..store.refs import Refs
from ..store.store import Store
from .events import EventBus
from .heads import BranchHeads
from .workers import Workers

log = logging.getLogger(__name__)

Key = tuple[str, str]          # (repo, branch)

LISTING_EVERY = 10.0           # seconds between listings of every repo's branches
KEEP_POLLING = 30.0            # a branch no longer in use is still read for this long
MAX_EVENTS_PER_MOVE = 100      # commits announced for one move; beyond: the new head only
LOCAL_IDS_KEPT = 4096          # this daemon's recent commit ids remembered
_GONE = "\0gone"               # a read found no such branch (or repo)


class LocalCommits:
    """A commit trigger that plans nothing and remembers this daemon's own
    commits, so that the watcher does not announce them a second time.

    Register it before every other trigger (daemon/wiring.py): the commit
    path calls it right after the branch lock is released, before anything
    awaits, so whenever the lock is free, a head this daemon moved is here."""

    def __init__(self, keep: int = LOCAL_IDS_KEPT) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._keep = keep

    def __contains__(self, commit: object) -> bool:
        return commit in self._ids

    async def plan(self, repo: str, branch: str, commit: str) -> list[Any]:
        self._ids[commit] = None
        while len(self._ids) > self._keep:
            self._ids.popitem(last=False)
        return []

    async def start(self, planned: list[Any]) -> list[str]:
        return []


class HeadWatch:
    def __init__(self, refs: Refs, store: Store, heads: BranchHeads, events: EventBus,
                 workers: Workers, interval: float = 1.0) -> None:
        self.refs = refs
        self.store = store
        self.heads = heads
        self.events = events
        self.workers = workers
        self.interval = interval
        self.local = LocalCommits()
        self._announced: dict[Key, str | None] = {}   # the head events were published up to
        self._last_used: dict[Key, float] = {}
        self._listed: set[Key] = set()
        self._listed_at: float | None = None
        self._subscriptions_seen = -1
        self._failing = False

    def watching(self, key: Key) -> bool:
        """Whether ``key`` is read every round now."""
        return key in self._announced

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll until cancelled; a failed round is logged and the next one tried."""
        log.debug("head watch: every %.2f s", self.interval)
        task_status.started()
        while True:
            try:
                await self.poll()
            except TrunkError as exc:
                self._failed(exc)
            except Exception as exc:  # a round must never end the watcher
                self._failed(exc)
            else:
                if self._failing:
                    log.info("head watch: reading branch heads works again")
                    self._failing = False
            await trio.sleep(self.interval)

    def _failed(self, exc: BaseException) -> None:
        if not self._failing:
            log.info("head watch: cannot read branch heads (%s); trying again every %.2f s",
                     exc, self.interval)
            self._failing = True
        else:
            log.debug("head watch: still failing: %s", exc)

    # -- one round ----------------------------------------------------------------------

    async def poll(self) -> None:
        """One round: read the watched heads, notify what moved elsewhere."""
        now = trio.current_time()
        await self._maybe_list(now)
        in_use = self.heads.known()
        for key in in_use:
            self._last_used[key] = now
        if self.events.watching():
            for key in self._listed:
                self._last_used[key] = now
        for key in [k for k, t in self._last_used.items() if now - t > KEEP_POLLING]:
            del self._last_used[key]
            self._announced.pop(key, None)
        keys = sorted(self._last_used)
        if not keys:
            return
        for key in keys:   # a branch first read here starts from what this daemon showed
            if key not in self._announced and key in in_use:
                self._announced[key] = in_use[key]
        found = await self.workers.run(self._read_heads, keys)
        for key in keys:
            await self._apply(key, found[key])

    async def _maybe_list(self, now: float) -> None:
        subs = self.events.subscriptions
        if not self.events.watching():
            self._subscriptions_seen = subs
            return
        due = self._listed_at is None or now - self._listed_at >= LISTING_EVERY
        if due or subs != self._subscriptions_seen:
            self._subscriptions_seen = subs
            self._listed = await self.workers.run(self._list_branches)
            self._listed_at = now
            log.debug("head watch: %d branches in the store", len(self._listed))

    def _list_branches(self) -> set[Key]:
        out: set[Key] = set()
        for info in self.refs.list_repos():
            try:
                out.update((info.name, b) for b in self.refs.list_branches(info.name))
            except NotFound:   # deleted since the listing
                continue
        return out

    def _read_heads(self, keys: list[Key]) -> dict[Key, str | None]:
        out: dict[Key, str | None] = {}
        for repo, branch in keys:
            try:
                out[(repo, branch)] = self.refs.read_branch(repo, branch)[0]
            except NotFound:
                out[(repo, branch)] = _GONE
        return out

    async def _apply(self, key: Key, head: str | None) -> None:
        repo, branch = key
        held, served = self.heads.cached(repo, branch)
        if held and served != head:
            # what this daemon serves is not the branch any more (moved or gone elsewhere)
            log.debug("head watch: %s@%s is at %s, not %s", repo, branch, head, served)
            self.heads.changed(repo, branch)
        if head == _GONE:
            self._announced.pop(key, None)
            self._last_used.pop(key, None)
            return
        if key not in self._announced:
            self._announced[key] = head    # first read: nothing to announce yet
            return
        before = self._announced[key]
        if head == before:
            return
        if self.heads.lock(repo, branch).locked():
            return   # a commit of this daemon is in flight: its id is known once it is done
        self._announced[key] = head
        assert head is not None       # a branch never moves back to "no commit"
        for cid, commit in await self.workers.run(self._commits_between, before, head):
            if cid not in self.local:
                self._publish(repo, branch, cid, commit)

    def _commits_between(self, before: str | None, head: str) -> list[tuple[str, Commit]]:
        """The commits after ``before`` up to ``head``, oldest first, along
        first parents; just ``head`` if ``before`` is not among its last
        ``MAX_EVENTS_PER_MOVE`` ancestors (the branch was reset elsewhere)."""
        chain: list[tuple[str, Commit]] = []
        cid: str | None = head
        while cid is not None and cid != before:
            if len(chain) >= MAX_EVENTS_PER_MOVE:
                return chain[:1]
            commit = self.store.read_commit(cid)
            chain.append((cid, commit))
            cid = commit.parents[0] if commit.parents else None
        if cid != before:
            return chain[:1]
        chain.reverse()
        return chain

    def _publish(self, repo: str, branch: str, cid: str, commit: Commit) -> None:
        log.debug("head watch: %s@%s moved elsewhere to %s", repo, branch, cid[:12])
        # the shape of the commit path's event; no jobs: none are planned here
        self.events.publish({"type": "commit", "repo": repo, "branch": branch, "commit": cid,
                             "parents": commit.parents, "message": commit.message,
                             "origin": commit.origin, "time": commit.time, "jobs": []})
