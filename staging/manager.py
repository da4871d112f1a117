"""Every branch's staging area, and the commit, status and discard of one.

The manager owns the journal (``<state>/staging/journal``) and the data
files (``<state>/staging/data``).  A commit freezes the area, cuts its files
into chunks in a worker thread, writes the trees over the branch head
through ``Service.commit_edit`` (so pipelines and watchers see it like any
other commit), then drops what it committed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from ..store.errors import InvalidArgument, NotFound, NothingToCommit
from ..store.names import split_path
import trio

from .area import GROUP_COMMIT_S, StagingArea
from .build import build_tree, changes, file_entries, staged_bytes
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

    # -- status ------------------------------------------------------------------------

    async def status(self, svc: Any, repo: str, branch: str) -> dict:
        area = self.area(repo, branch)
        head = await svc.head(repo, branch)
        head_root = await self._head_root(svc, head)
        found = await svc.run(changes, area, svc.store, head_root)
        return {"repo": repo, "branch": branch, "head": head,
                "changes": [{"status": code, "path": path} for code, path in found]}

    async def _head_root(self, svc: Any, head: str | None) -> dict | None:
        if head is None:
            return None
        commit = await svc.run(svc.store.read_commit, head)
        return {"name": "", "type": "dir", "tree": commit.tree}

    # -- commit ------------------------------------------------------------------------

    async def commit(self, svc: Any, repo: str, branch: str, *, message: str, author: dict,
                     allow_empty: bool = False,
                     progress: Callable[[int, int], None] | None = None) -> tuple[str, Any, list]:
        area = self.area(repo, branch)
        await area.freeze()
        try:
            if area.root is None and not allow_empty:
                raise NothingToCommit(f"nothing to commit on {repo}@{branch}")
            session = svc.store.session()
            try:
                entries: dict[int, dict] = {}
                if area.root is not None:
                    total = staged_bytes(area)
                    done = [0]

                    def advance(n: int) -> None:
                        done[0] += n
                        if progress is not None:
                            progress(done[0], total)
                    entries = await svc.run(file_entries, area, svc.store, session, advance)

                def build(head_root: dict | None, sess) -> dict:
                    root = build_tree(area, svc.store, sess, head_root, entries)
                    self.journal.mark_commit(repo, branch, root["tree"])
                    return root
                cid, commit, jobs = await svc.commit_edit(
                    repo, branch, lambda editor: None, session, message=message or "commit",
                    author=author, build=build if area.root is not None else None,
                    allow_empty=allow_empty)
            except BaseException:
                session.abort()
                self.journal.clear_mark(repo, branch)
                raise
            area.drop_all()
            log.info("committed the staging of %s@%s as %s", repo, branch, cid[:12])
            return cid, commit, jobs
        finally:
            area.thaw()

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
