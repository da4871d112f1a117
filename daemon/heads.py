"""Branch heads as this daemon last saw them, per-branch commit locks, and
the branch-moved notification.

This daemon learns of every move it makes itself; ``changed`` drops the
cached head and tells the listeners (the mount invalidates what the kernel
holds for the branch's views).  Moves made by other daemons on the same
store reach ``changed`` through the head watcher (``daemon/headwatch.py``),
which reads back the heads cached here (:meth:`BranchHeads.known`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from ..store.refs import Refs
from .workers import Workers

log = logging.getLogger(__name__)

BranchListener = Callable[[str, "str | None"], None]


class BranchHeads:
    def __init__(self, refs: Refs, workers: Workers) -> None:
        self.refs = refs
        self.workers = workers
        self._heads: dict[tuple[str, str], str | None] = {}
        self._locks: dict[tuple[str, str], trio.Lock] = {}
        self._listeners: list[BranchListener] = []

    def add_listener(self, fn: BranchListener) -> None:
        """Call ``fn(repo, branch)`` after a branch moves or goes away
        (``branch`` None: the whole repo changed)."""
        self._listeners.append(fn)

    async def head(self, repo: str, branch: str) -> str | None:
        """The head commit of a branch (cached); NotFound if there is none."""
        key = (repo, branch)
        if key in self._heads:
            return self._heads[key]
        commit, _ = await self.workers.run(self.refs.read_branch, repo, branch)
        self._heads[key] = commit
        return commit

    def known(self) -> dict[tuple[str, str], str | None]:
        """The heads this daemon has read and serves now, by (repo, branch)."""
        return dict(self._heads)

    def cached(self, repo: str, branch: str) -> tuple[bool, str | None]:
        """(whether this daemon holds the head of the branch, that head)."""
        key = (repo, branch)
        return (key in self._heads, self._heads.get(key))

    def lock(self, repo: str, branch: str) -> trio.Lock:
        """Serializes the commits of one branch in this daemon (the ref's
        compare-and-swap is the guard against other processes)."""
        return self._locks.setdefault((repo, branch), trio.Lock())

    def changed(self, repo: str, branch: str | None) -> None:
        """A branch moved (here or elsewhere) or went away: forget its head, tell the listeners."""
        if branch is None:
            for key in [k for k in self._heads if k[0] == repo]:
                del self._heads[key]
        else:
            self._heads.pop((repo, branch), None)
        for fn in self._listeners:
            try:
                fn(repo, branch)
            except Exception:  # a listener must not break a commit
                log.exception("branch listener failed for %s@%s", repo, branch)
