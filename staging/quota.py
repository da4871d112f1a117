"""The per-uid staging quota: how many bytes each uid has staged, across
every branch, and the limit a write may not cross.

What a staged file costs (:meth:`FileNode.quota_bytes`) is what a commit of
it has to cut and store anew: the bytes written over or past its committed
base, and the bytes a truncate grew it by (they read as zeros, but a commit
chunks them).  A copy-up costs nothing, it stages by reference; directories,
symlinks and metadata cost nothing either.  Each file records who paid for
its bytes (``FileNode.charges``, journaled with its extents), so the count
is rebuilt from the journal at every start, and a commit, a discard or an
unlink gives the bytes back to whoever paid.  Root (uid 0) is counted but
never limited.  A limit of 0 is no limit.  The quota also counts the files
that have bytes charged (``files``: what the next commits have to cut).
"""

from __future__ import annotations

import errno
import logging

from .nodes import FileNode

log = logging.getLogger(__name__)


class QuotaExceeded(OSError):
    """A write would take a uid's staged bytes beyond the quota (EDQUOT)."""

    def __init__(self, uid: int, used: int, more: int, limit: int, where: str) -> None:
        super().__init__(errno.EDQUOT,
                         f"uid {uid} has {used} bytes staged and the staging quota is {limit}: "
                         f"{more} more bytes in {where} are refused")
        self.uid = uid


class StagingQuota:
    """Staged bytes per uid and the limit (bytes per uid; 0: none)."""

    def __init__(self, limit: int = 0) -> None:
        if limit < 0:
            raise ValueError("a staging quota is 0 (none) or more bytes")
        self.limit = limit
        self._used: dict[int, int] = {}
        self.files = 0       # staged files with bytes charged (``/metrics``)

    def used(self, uid: int) -> int:
        return self._used.get(uid, 0)

    def usage(self) -> dict[int, int]:
        """Staged bytes by uid (uids with none left out)."""
        return {uid: n for uid, n in self._used.items() if n}

    def charge(self, node: FileNode, uid: int, more: int, where: str) -> None:
        """``uid`` pays ``more`` bytes for ``node``; QuotaExceeded (nothing
        charged) if that takes it beyond the limit."""
        if more <= 0:
            return
        used = self._used.get(uid, 0)
        if self.limit and uid != 0 and used + more > self.limit:
            log.debug("staging quota: refusing %d bytes of uid %d in %s (%d of %d used)",
                      more, uid, where, used, self.limit)
            raise QuotaExceeded(uid, used, more, self.limit, where)
        self._used[uid] = used + more
        if not node.charges:
            self.files += 1
        node.charges[uid] = node.charges.get(uid, 0) + more

    def settle(self, node: FileNode, uid: int) -> None:
        """Give back what ``node`` was charged beyond what it costs now (it
        shrank): first to ``uid``, then to the others who paid."""
        excess = sum(node.charges.values()) - node.quota_bytes()
        for payer in sorted(node.charges, key=lambda p: p != uid):
            if excess <= 0:
                break
            back = min(excess, node.charges[payer])
            self._take(payer, back)
            node.charges[payer] -= back
            if not node.charges[payer]:
                del node.charges[payer]
                if not node.charges:
                    self.files -= 1
            excess -= back

    def release(self, node: FileNode) -> None:
        """Everything ``node`` was charged goes back (committed, discarded, removed)."""
        if node.charges:
            self.files -= 1
        for payer, n in node.charges.items():
            self._take(payer, n)
        node.charges.clear()

    def count(self, node: FileNode) -> None:
        """Add a node loaded from the journal to the count."""
        if node.charges:
            self.files += 1
        for payer, n in node.charges.items():
            self._used[payer] = self._used.get(payer, 0) + n

    def _take(self, uid: int, n: int) -> None:
        left = self._used.get(uid, 0) - n
        if left > 0:
            self._used[uid] = left
        else:
            self._used.pop(uid, None)
