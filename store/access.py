"""Who a user is to the store, and which role they have on a repo.

The part of the access rules every layer needs: the socket's handlers
(:mod:`trunkfs.daemon.auth`), the mount (a repo a user may not read is not
readable there either) and the pipelines (a job re-checks its owner's roles
when it runs).  A :class:`Caller` is a uid, a gid and every group of the uid;
a repo's record (:class:`~trunkfs.store.objects.RepoInfo`) gives its owner
(admin) and its access list.  Root is admin everywhere.
"""

from __future__ import annotations

import logging
import os
import pwd

from .objects import EVERYONE, ROLES, RepoInfo

log = logging.getLogger(__name__)

READ, WRITE, ADMIN = ROLES
_RANK = {role: rank for rank, role in enumerate(ROLES, 1)}


def groups_of(uid: int, gid: int) -> frozenset[int]:
    """``gid`` and the supplementary groups of ``uid`` in the group database
    (just ``gid`` for a uid the database does not know)."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return frozenset({gid})
    try:
        return frozenset(os.getgrouplist(name, gid)) | {gid}
    except OSError:
        log.warning("the groups of user %s (uid %d) cannot be read; only gid %d counts", name, uid, gid)
        return frozenset({gid})


class Caller:
    """A user the daemon acts for (a socket client, a FUSE request, a
    pipeline owner): ``uid``, ``gid`` and every group it is in."""

    __slots__ = ("uid", "gid", "groups")

    def __init__(self, uid: int, gid: int, groups: frozenset[int] | None = None) -> None:
        self.uid = uid
        self.gid = gid
        self.groups = groups_of(uid, gid) if groups is None else groups

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def __repr__(self) -> str:
        return f"Caller(uid={self.uid}, gid={self.gid})"


def role_of(caller: Caller, info: RepoInfo) -> str | None:
    """The strongest role ``caller`` has on a repo (None: no access)."""
    if caller.is_root or caller.uid == info.owner:
        return ADMIN
    best = 0
    for e in info.acl:
        kind, ident = e.get("kind"), e.get("id")
        if (kind == EVERYONE or (kind == "user" and ident == caller.uid)
                or (kind == "group" and ident in caller.groups)):
            best = max(best, _RANK.get(str(e.get("role")), 0))
    return ROLES[best - 1] if best else None


def allows(caller: Caller, info: RepoInfo, role: str) -> bool:
    have = role_of(caller, info)
    return have is not None and _RANK[have] >= _RANK[role]
