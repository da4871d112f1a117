"""Every branch's staging area, and the discard of staged paths.

The manager owns the journal (``<state>/staging/journal``) and the data
files (``<state>/staging/data``, :mod:`.datafiles`), and writes journal
batches in groups.  A commit of an area is a ``staging.commit.StagedChange``
that the daemon's commit path applies; the status diff is
``staging.status.changes``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import trio

from ..store.errors import InvalidArgument, NotFound
from ..store.names import split_path
from .area import GROUP_COMMIT_S, PAGED_ENTRIES, StagingArea
from .datafiles import DataFiles
from .journal import Journal
from .nodes import DirNode, Node
from .quota import StagingQuota

HeadTree = Callable[[str, str], "str | None"]

log = logging.getLogger(__name__)


class StagingManager:
    """``head_tree(repo, branch)`` tells a branch head's root tree id (None
    without commits); loading an area asks it to finish a commit that was
    cut short after it moved the branch.  ``quota`` counts the bytes each
    uid has staged over every area (rebuilt from the journal here, as every
    area is loaded); without one nothing is limited."""

    def __init__(self, state_dir: str, head_tree: HeadTree | None = None,
                 quota: StagingQuota | None = None, paged_entries: int = PAGED_ENTRIES) -> None:
        self.head_tree = head_tree
        self.paged_entries = paged_entries   # per area (``StagingArea.trim``)
        self.quota = StagingQuota() if quota is None else quota
        self.dir = os.path.join(state_dir, "staging")
        self.journal = Journal(os.path.join(self.dir, "journal"))
        self.datafiles = DataFiles(os.path.join(self.dir, "data"), self.journal)
        self.areas: dict[tuple[str, str], StagingArea] = {}
        # told of paths staged other than through the mount (the socket's
        # stage.*): the mount drops what the kernel caches of them
        self._listeners: list[Callable[[str, str, list[list[str]]], None]] = []
        self._clean_data()

    def add_listener(self, fn: Callable[[str, str, list[list[str]]], None]) -> None:
        self._listeners.append(fn)

    def changed(self, repo: str, branch: str, paths: list[list[str]]) -> None:
        """Paths of a branch were staged other than through the mount."""
        for fn in self._listeners:
            try:
                fn(repo, branch, paths)
            except Exception:   # a listener must not fail the change
                log.exception("staging listener failed for %s@%s", repo, branch)

    def _clean_data(self) -> None:
        """Remove data files no journaled node owns (left by a crash)."""
        for repo, branch in self.journal.areas():
            self.area(repo, branch)     # drops the nodes a crash left without a name
        owned = self.journal.node_ids()
        removed = self.datafiles.remove_unowned(owned)
        if removed:
            log.info("removed %d staging data files no staged node owns", removed)
        stray = {nid for nid in self.journal.inline_ids() if nid not in owned}
        if stray:
            self.journal.drop_inline(stray)
            log.info("dropped the inline bytes of %d files no staged node owns", len(stray))

    def close(self) -> None:
        for area in self.areas.values():
            area.flush_files()
        self.journal.close()

    def area(self, repo: str, branch: str) -> StagingArea:
        key = (repo, branch)
        area = self.areas.get(key)
        if area is None:
            area = StagingArea(repo, branch, self.journal, self.datafiles, self.quota, self.paged_entries)
            head_tree = self.head_tree
            area.load((lambda: head_tree(repo, branch)) if head_tree is not None else None)
            self.areas[key] = area
        return area

    def paging_stats(self) -> dict[str, int]:
        """Staged directories, entries and nodes in memory over every area."""
        out = {"dirs": 0, "entries": 0, "limit": self.paged_entries, "nodes": 0}
        for area in self.areas.values():
            for k, v in area.paging_stats().items():
                if k != "limit":
                    out[k] += v
        return out

    def flush(self, sync: bool = False) -> None:
        for area in self.areas.values():
            area.flush_files(sync)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write changes waiting for the journal (group commit)."""
        task_status.started()
        while True:
            await trio.sleep(GROUP_COMMIT_S)
            for area in self.areas.values():
                if area.has_pending:
                    area.write_pending()

    # -- discard -----------------------------------------------------------------------

    async def discard(self, repo: str, branch: str, paths: list[str]) -> int:
        """Drop staged changes (all, or under ``paths``); returns how many paths were dropped."""
        area = self.area(repo, branch)
        async with area.mutation():
            if not paths:
                had = area.root is not None
                area.drop_all()
                return int(had)
            dropped = 0
            for path in paths:
                parts = split_path(path)
                if not parts:
                    raise InvalidArgument("discard: name a path below the repo root, or none for all")
                node: Node | None = area.root
                for name in parts[:-1]:
                    node = node.delta.get(name) if isinstance(node, DirNode) else None
                if not isinstance(node, DirNode) or parts[-1] not in node.delta:
                    continue
                area.forget_entry(node, parts[-1])
                dropped += 1
            if paths and not dropped:
                raise NotFound(f"nothing staged at {', '.join(paths)} in {repo}@{branch}")
            return dropped
