"""A branch's staged changes as a commit change (see ``trunkfs.daemon.commits``).

The caller freezes the area first (``StagingArea.frozen``).  ``prepare``
cuts every changed file into chunks once, in a worker thread; ``build``
writes the staged directories over whatever head the commit lands on, and
journals the root tree it is about to publish (a path the head changed
since it was staged fails the commit: ``conflicts``), so that a daemon killed
between moving the branch and clearing the staging finds the branch at
that tree at its next start and drops the staging instead of committing
it twice.  After a successful commit the caller drops the area
(``StagingArea.drop_all``); after a failure it calls :meth:`aborted`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..store.errors import IntegrityError
from ..store.store import Store
from ..store.writer import WriteSession
from .area import StagingArea
from .build import Entries, build_tree, file_entries, staged_bytes

Run = Callable[..., Awaitable[Any]]
Progress = Callable[[int, int], None]
MISSING_GROUP = 50_000   # chunk ids asked about at once


class StagedChange:
    def __init__(self, area: StagingArea, store: Store, run: Run,
                 progress: Progress | None = None, force: bool = False) -> None:
        self.area = area
        self.force = force     # staged versions win over the head's changes to the same paths
        self.store = store
        self.run = run
        self.progress = progress
        self.entries: Entries = {}

    async def prepare(self, session: WriteSession) -> None:
        if self.area.root is None:
            return
        total = staged_bytes(self.area)
        done = 0

        def advance(n: int) -> None:  # from the worker thread
            nonlocal done
            done += n
            if self.progress is not None:
                self.progress(done, total)
        self.entries = await self.run(file_entries, self.area, self.store, session, advance)
        missing = await self.run(self._missing, session)
        if missing:   # a staged file kept chunks of a commit the collector dropped since
            raise IntegrityError(
                f"the staging of {self.area.where} refers to {len(missing)} chunk(s) the garbage "
                f"collector deleted (e.g. {missing[0].hex()[:12]}): discard the files staged from "
                "an expired commit and write them again; nothing was committed")

    def _missing(self, session: WriteSession) -> list[bytes]:
        """The chunks the staged files keep that the store lacks (checked
        in groups, so a million files never hold every chunk id at once)."""
        missing: list[bytes] = []
        group: set[bytes] = set()

        def check() -> None:
            missing.extend(self.store.missing_blobs([b for b in group if not session.stored_here(b)]))
            group.clear()
        for entry in self.entries.values():
            group.update(bytes.fromhex(c[0]) for c in entry.get("chunks", ()))
            if len(group) >= MISSING_GROUP:
                check()
        check()
        return missing

    def build(self, base: dict | None, session: WriteSession) -> dict:
        if self.area.root is None:  # an empty commit (allow_empty)
            return base if base is not None else {"tree": session.put_tree([]), "size": 0,
                                                  "files": 0, "dirs": 0}
        root = build_tree(self.area, self.store, session, base, self.entries, self.force)
        self.area.journal.mark_commit(self.area.repo, self.area.branch, root["tree"])
        return root

    def aborted(self) -> None:
        self.area.journal.clear_mark(self.area.repo, self.area.branch)
        self.area.journal.stash(self.area.repo, self.area.branch).clear()
