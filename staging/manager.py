"""Every branch's staging area, and the discard of staged paths.

The manager owns the journal (``<state>/staging/journal``) and the data
files (``<state>/staging/data``), and writes journal batches in groups.  A
commit of an area is a ``staging.commit.StagedChange`` that the daemon's
commit path applies; the status diff is ``staging.build.changes``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from ..store.errors import InvalidArgument, NotFound
from ..store.names import split_path
import trio

from .area import GROUP_COMMIT_S, StagingArea
from .journal import Journal
from .nodes import DirNode

log = logging.getLogger(__name__)


class StagingManager:
    def __init__(self, state_dir: str, head_tree: "Callable[[str, str], str | None] | None" = None) -> None:
        self.head_tree = head_tree
        self.dir = os.path.join(state_dir, "staging")
        self.data_dir = os.path.join(self.dir, "data")
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        self.journal = Journal(os.path.join(self.dir, "journal"))
        self.areas: dict[tuple[str, str], StagingArea] = {}
        self._clean_data()

    def _clean_data(self) -> None:
        """Remove data files no journaled node owns (left by a crash)."""
        owned: set[str] = set()
        for repo, branch in self.journal.areas():
            area = self.area(repo, branch)
            owned.update(str(n.id) for n in area.walk())
        for name in os.listdir(self.data_dir):
            if name not in owned:
                try:
                    os.unlink(os.path.join(self.data_dir, name))
                except OSError as exc:
                    log.warning("cannot remove stale staging file %s: %s", name, exc)

    def close(self) -> None:
        for area in self.areas.values():
            area.flush_files()
        self.journal.close()

    def area(self, repo: str, branch: str) -> StagingArea:
        key = (repo, branch)
        area = self.areas.get(key)
        if area is None:
            area = StagingArea(repo, branch, self.journal, self.data_dir)
            area.load((lambda: self.head_tree(repo, branch)) if self.head_tree else None)
            self.areas[key] = area
        return area

    def flush(self, sync: bool = False) -> None:
        for area in self.areas.values():
            area.flush_files(sync)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
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
                node = area.root
                for name in parts[:-1]:
                    node = node.delta.get(name) if isinstance(node, DirNode) else None
                if not isinstance(node, DirNode) or parts[-1] not in node.delta:
                    continue
                area.forget_entry(node, parts[-1])
                dropped += 1
            if paths and not dropped:
                raise NotFound(f"nothing staged at {', '.join(paths)} in {repo}@{branch}")
            return dropped
