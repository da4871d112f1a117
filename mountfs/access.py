"""Repo roles on the mount: who a FUSE request comes from, and what they
may do in the repo whose view it reaches.

The kernel checks each entry's mode itself (``default_permissions``); what
it cannot know is a repo's access list.  So every request that carries a
caller (lookup, getattr, open, opendir, the changes...) in a view of a repo
needs ``read`` on it, and every change in a branch view ``write``, as
through the socket (:mod:`trunkfs.store.access`: the same rules, the same
groups: the uid's groups in the group database plus the request's gid).

Lookups must not read the store each time, so repo records and callers'
groups are kept for :data:`ACCESS_TTL` seconds: an access-list change (or a
group change) reaches the mount within that time.  A repo that not everyone
may read has its name in the mount root answered with entry timeout 0
(:meth:`RepoGate.entry_timeout`), so the kernel asks again, as the caller of
the moment, at every path walk through it instead of reusing an entry
another user's lookup left in its cache.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pyfuse3

from ..store.access import READ, Caller, allows
from ..store.errors import NotFound
from ..store.objects import RepoInfo
from ..store.refs import Refs

log = logging.getLogger(__name__)

ACCESS_TTL = 3.0          # seconds a repo record or a caller's groups is reused
_ANYONE = Caller(-1, -1, frozenset())   # no uid, no group: what `everyone` entries grant

Run = Callable[..., Awaitable[Any]]


def refused(repo: str, uid: int, role: str) -> pyfuse3.FUSEError:
    log.debug("uid %d lacks the %s role on repo %r: EACCES", uid, role, repo)
    return pyfuse3.FUSEError(errno.EACCES)


class RepoGate:
    """Repo records and callers, cached briefly; the role checks of the mount."""

    def __init__(self, refs: Refs, run: Run, ttl: float = ACCESS_TTL) -> None:
        self.refs = refs
        self.run = run
        self.ttl = ttl
        self._repos: dict[str, tuple[float, RepoInfo]] = {}
        self._callers: dict[tuple[int, int], tuple[float, Caller]] = {}

    # -- the cached records ------------------------------------------------------------

    async def info(self, repo: str) -> RepoInfo | None:
        """The repo's record (None: no such repo), at most ``ttl`` seconds old."""
        now = time.monotonic()
        got = self._repos.get(repo)
        if got is not None and now - got[0] < self.ttl:
            return got[1]
        try:
            info: RepoInfo = await self.run(self.refs.get_repo, repo)
        except NotFound:   # not remembered: a repo created now is checked at once
            self._repos.pop(repo, None)
            return None
        self._repos[repo] = (time.monotonic(), info)
        return info

    def remember(self, infos: list[RepoInfo]) -> None:
        """Records just read (the root listing)."""
        now = time.monotonic()
        for info in infos:
            self._repos[info.name] = (now, info)

    async def caller(self, uid: int, gid: int) -> Caller:
        now = time.monotonic()
        got = self._callers.get((uid, gid))
        if got is not None and now - got[0] < self.ttl:
            return got[1]
        caller = await self.run(Caller, uid, gid)   # reads the group database
        if len(self._callers) > 4096:
            self._callers.clear()
        self._callers[(uid, gid)] = (time.monotonic(), caller)
        return caller

    # -- the checks ---------------------------------------------------------------------

    async def allows(self, ctx: pyfuse3.RequestContext, repo: str, role: str) -> bool:
        """Whether the request's caller has ``role`` on ``repo`` (root: always;
        a repo that does not exist: nobody else)."""
        if ctx.uid == 0:
            return True
        info = await self.info(repo)
        if info is None:
            return False
        return allows(await self.caller(ctx.uid, ctx.gid), info, role)

    async def require(self, ctx: pyfuse3.RequestContext, repo: str | None, role: str,
                      missing_ok: bool = False) -> None:
        """EACCES unless the caller has ``role`` on ``repo`` (None: not in a
        repo); ENOENT for a repo that does not exist, unless ``missing_ok``
        (a lookup in the mount root answers that itself)."""
        if repo is None or ctx.uid == 0:
            return
        info = await self.info(repo)
        if info is None:
            if missing_ok:
                return
            raise pyfuse3.FUSEError(errno.ENOENT)
        if not allows(await self.caller(ctx.uid, ctx.gid), info, role):
            raise refused(repo, ctx.uid, role)

    async def entry_timeout(self, repo: str, timeout: float) -> float:
        """How long the kernel may keep the mount root's entry of a view of
        ``repo``: ``timeout`` if everyone may read it, else 0."""
        info = await self.info(repo)
        return timeout if info is not None and allows(_ANYONE, info, READ) else 0.0
