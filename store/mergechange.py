"""The changes (:class:`~trunkfs.store.changes.Change`) of a merge and a
revert, for the daemon's one commit path.

Both merge three trees over the head the commit path reads inside its
compare-and-swap loop, so a retry after another writer moved the branch
merges again over the new head: nothing that writer committed is lost.
"""

from __future__ import annotations

import logging

from .errors import InvalidArgument, NothingToCommit
from .history import empty_root, root_of
from .merge import MergeConflict, check_strategy, is_ancestor, merge_base, merge_roots
from .store import Store
from .writer import WriteSession

log = logging.getLogger(__name__)


class MergeChange:
    """Merge commit ``source`` into the head (three-way from their merge
    base).  ``check_head`` finds the merge base again whenever the head it
    is given is not the one seen before."""

    def __init__(self, store: Store, where: str, source: str, strategy: str | None = None) -> None:
        self.store = store
        self.where = where            # "repo@branch", for messages
        self.source = source
        self.strategy = check_strategy(strategy)
        self.head: str | None = None
        self.base: str | None = None
        self.checked = False
        self.resolved: list[str] = []   # paths a strategy settled

    async def prepare(self, session: WriteSession) -> None:
        return None

    def check_head(self, head: str | None) -> None:
        if self.checked and head == self.head:
            return
        base = merge_base(self.store, head, self.source)
        if head is not None and base == self.source:
            raise NothingToCommit(f"{self.where} already contains commit {self.source[:12]}")
        self.head, self.base, self.checked = head, base, True
        log.debug("merging %s into %s: merge base %s", self.source[:12], self.where,
                  (base or "none")[:12])

    def build(self, base: dict | None, session: WriteSession) -> dict:
        if not self.checked:    # the commit path always checks first; a direct caller may not
            raise RuntimeError("MergeChange.build before check_head")
        root, conflicts = merge_roots(self.store, session, root_of(self.store, self.base),
                                      base or empty_root(), root_of(self.store, self.source),
                                      self.strategy)
        if conflicts and self.strategy is None:
            raise MergeConflict(f"merge of {self.source[:12]} into {self.where}", conflicts,
                                " (merge with --strategy ours or theirs to settle them all)")
        self.resolved = conflicts
        return root


class RevertChange:
    """Undo what commit ``reverted`` changed against its first parent,
    over the head: a three-way merge with the reverted commit as the base,
    the head as ours and the parent as theirs.  A path changed by the
    reverted commit and again later is a conflict."""

    def __init__(self, store: Store, where: str, reverted: str) -> None:
        self.store = store
        self.where = where
        self.reverted = reverted
        parents = store.read_commit(reverted).parents
        self.parent = parents[0] if parents else None    # a merge is undone against its first parent
        self.checked: str | None = None   # the last head found to hold the reverted commit

    async def prepare(self, session: WriteSession) -> None:
        return None

    def check_head(self, head: str | None) -> None:
        if self.checked == head:    # a retry on the same head (another writer's swap lost, ours too)
            return
        if not is_ancestor(self.store, self.reverted, head):
            raise InvalidArgument(f"commit {self.reverted[:12]} is not in the history of {self.where}")
        self.checked = head

    def build(self, base: dict | None, session: WriteSession) -> dict:
        root, conflicts = merge_roots(self.store, session, root_of(self.store, self.reverted),
                                      base or empty_root(), root_of(self.store, self.parent))
        if conflicts:
            raise MergeConflict(f"revert of {self.reverted[:12]} on {self.where}", conflicts,
                                " (later commits changed them again)")
        return root
