"""The daemon's state and commit orchestration, shared by every request.

Store calls block (RocksDB, file and network I/O, hashing), so they run in
worker threads under one CapacityLimiter.  Commits of one branch are
serialized by a per-branch trio lock; the ref's compare-and-swap is the
final guard should another process write the same store.
"""

from __future__ import annotations

import functools
import logging
import pwd
import time
from collections.abc import Callable
from typing import Any

import trio

from ..store.errors import Conflict, InvalidArgument, NothingToCommit
from ..store.objects import EMPTY_TREE_ID, Commit
from ..store.refs import Refs
from ..store.store import Store
from ..store.treeedit import TreeEditor
from ..store.writer import WriteSession
from .pipelines import PipelineRegistry

log = logging.getLogger(__name__)


def author_of(uid: int) -> dict:
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid{uid}"
    return {"uid": uid, "name": name}


class Service:
    def __init__(self, store: Store, threads: int = 8) -> None:
        self.store = store
        self.refs = Refs(store)
        self.pipelines = PipelineRegistry(self.refs)
        self.limiter = trio.CapacityLimiter(threads)
        self._branch_locks: dict[tuple[str, str], trio.Lock] = {}
        self.stop_requested = trio.Event()
        # Branch heads as this daemon last saw them: it is the store's only
        # writer, so it learns of every move; None entries mean "no commit".
        self._heads: dict[tuple[str, str], str | None] = {}
        self._listeners: list[Callable[[str, str | None], None]] = []
        self.cache = None  # the mount's chunk cache, when the daemon mounts
        self.jobs = None   # the JobManager, set by the daemon's main
        self.staging = None  # the StagingManager, set by the daemon's main
        self._watchers: set[trio.MemorySendChannel] = set()

    # -- branch heads ----------------------------------------------------------

    def add_listener(self, fn: Callable[[str, str | None], None]) -> None:
        """Call ``fn(repo, branch)`` after a branch moves or goes away
        (``branch`` None: the whole repo changed)."""
        self._listeners.append(fn)

    def changed(self, repo: str, branch: str | None) -> None:
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

    # -- events (trunkfs watch) -------------------------------------------------

    def publish(self, event: dict) -> None:
        """Hand an event to every watcher; a watcher that lags loses events, not us."""
        for chan in list(self._watchers):
            try:
                chan.send_nowait(event)
            except trio.WouldBlock:
                log.info("a watcher is too slow; dropping an event for it")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._watchers.discard(chan)

    def subscribe(self, size: int = 1000) -> trio.MemoryReceiveChannel:
        send, recv = trio.open_memory_channel(size)
        self._watchers.add(send)
        return recv

    async def head(self, repo: str, branch: str) -> str | None:
        """The head commit of a branch (cached); NotFound if there is none."""
        key = (repo, branch)
        if key in self._heads:
            return self._heads[key]
        commit, _ = await self.run(self.refs.read_branch, repo, branch)
        self._heads[key] = commit
        return commit

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run blocking store work in a worker thread."""
        return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs),
                                             limiter=self.limiter)

    def branch_lock(self, repo: str, branch: str) -> trio.Lock:
        return self._branch_locks.setdefault((repo, branch), trio.Lock())

    async def commit_edit(self, repo: str, branch: str, edit: "Callable[[TreeEditor], None] | None",
                          session: WriteSession, *, message: str, author: dict,
                          origin: dict | None = None, provenance: list | None = None,
                          build: "Callable[[dict | None, WriteSession], dict] | None" = None,
                          allow_empty: bool = True) -> tuple[str, Commit, list[str]]:
        """Apply ``edit`` to the branch head and move the branch to the result.

        Instead of ``edit``, ``build(head_root_entry, session)`` may write the
        new root tree itself (staged commits).  Without ``allow_empty`` a
        commit that changes nothing raises NothingToCommit.  Returns the
        commit id, the commit, and the ids of the pipeline jobs the new
        commit triggered.
        """
        async with self.branch_lock(repo, branch):
            try:
                cid, commit = await self.run(self._commit_sync, repo, branch, edit, session, message,
                                             author, origin or {"kind": "user"}, provenance or [],
                                             build, allow_empty)
            finally:
                self.changed(repo, branch)
        new_jobs = await self.jobs.on_commit(repo, branch, cid) if self.jobs is not None else []
        self.publish({"type": "commit", "repo": repo, "branch": branch, "commit": cid,
                      "parents": commit.parents, "message": commit.message, "origin": commit.origin,
                      "time": commit.time, "jobs": [j["id"] for j in new_jobs]})
        for job in new_jobs:
            self.jobs.announce(job)
        jobs = [await self.jobs.submit(job) for job in new_jobs]
        return cid, commit, jobs

    def _commit_sync(self, repo: str, branch: str, edit: "Callable[[TreeEditor], None] | None",
                     session: WriteSession, message: str, author: dict, origin: dict,
                     provenance: list, build: "Callable[[dict | None, WriteSession], dict] | None",
                     allow_empty: bool) -> tuple[str, Commit]:
        info = self.refs.get_repo(repo)
        for attempt in range(5):
            head, version = self.refs.read_branch(repo, branch)
            base_tree = self.store.read_commit(head).tree if head else None
            if build is not None:
                root = build({"name": "", "type": "dir", "tree": base_tree} if base_tree else None, session)
            else:
                editor = TreeEditor(self.store, base_tree)
                edit(editor)
                root = editor.write(session)
            if not allow_empty and root["tree"] == (base_tree or EMPTY_TREE_ID):
                raise NothingToCommit(f"nothing to commit on {repo}@{branch}")
            session.flush()
            commit = Commit(repo=repo, repo_id=info.id, tree=root["tree"],
                            parents=[head] if head else [], message=message, author=author,
                            time=time.time(), origin=origin, provenance=provenance,
                            size=root.get("size", 0), files=root.get("files", 0),
                            dirs=root.get("dirs", 0))
            cid = self.store.write_commit(commit)
            try:
                self.refs.move_branch(repo, branch, cid, version)
            except Conflict:
                log.info("branch %s@%s moved during a commit; retrying on the new head", repo, branch)
                continue
            log.info("committed %s@%s %s (%d files, %d bytes)", repo, branch, cid[:12],
                     commit.files, commit.size)
            return cid, commit
        raise Conflict(f"branch {repo}@{branch} kept moving; commit abandoned")

    async def writable_branch(self, repo: str, ref: str | None) -> str:
        """The branch named by ``ref``; refuses a commit id."""
        ref = ref or "main"
        commit, branch = await self.run(self.refs.resolve, repo, ref)
        if branch is None:
            raise InvalidArgument(f"{repo}@{ref} is a commit, and commits are read-only; name a branch")
        return branch
