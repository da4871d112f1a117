"""What the socket handlers see: the daemon's parts, built once by
``daemon.wiring`` with their dependencies passed in."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ..store.errors import InvalidArgument
from ..store.refs import Refs
from ..store.store import Store
from ..pipelines.registry import PipelineRegistry
from ..staging.manager import StagingManager
from .auth import FileOwner
from .commits import CommitPath
from .events import EventBus
from .heads import BranchHeads
from .workers import Workers

if TYPE_CHECKING:
    from .beacon import BeaconTask
    from .headwatch import HeadWatch
    from ..cache.chunkcache import ChunkCache
    from .console.tokens import ConsoleTokens
    from .metrics import DaemonMetrics
    from ..pipelines.scheduler import JobScheduler


@dataclass
class Service:
    store: Store
    refs: Refs
    workers: Workers                    # the mount and quick socket calls
    heads: BranchHeads
    events: EventBus
    commits: CommitPath
    pipelines: PipelineRegistry
    staging: StagingManager
    jobs: "JobScheduler"
    cache: "ChunkCache"                 # the chunk cache of every reader: mount, get/cat/read, job inputs
    metrics: "DaemonMetrics | None" = None   # what /metrics serves (only with --http)
    console: "ConsoleTokens | None" = None   # the web console's tokens (only with --http)
    console_url: str | None = None           # where the console listens (only with --http)
    stop_requested: trio.Event = field(default_factory=trio.Event)
    # whose committed entries without an owner are (as the mount shows them): the
    # daemon's --uid/--gid, by default its own user
    file_owner: FileOwner = field(default_factory=lambda: FileOwner(os.getuid(), os.getgid()))
    # bulk socket work (put, get, commit, fsck): its own threads (daemon/workers.py)
    bulk: Workers = field(default_factory=lambda: Workers(4))
    beacon: "BeaconTask | None" = None   # this daemon's fleet record (None: not written)
    headwatch: "HeadWatch | None" = None  # follows heads other daemons move (None: off)
    mountpoint: str | None = None         # where the branch views are mounted (None: no mount)

    async def writable_branch(self, repo: str, ref: str | None) -> str:
        """The branch named by ``ref``; refuses a commit id."""
        ref = ref or "main"
        commit, branch = await self.workers.run(self.refs.resolve, repo, ref)
        if branch is None:
            raise InvalidArgument(f"{repo}@{ref} is a commit, and commits are read-only; name a branch")
        return branch
