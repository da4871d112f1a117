"""Building the daemon: every part constructed once, here, with what it needs
passed to its constructor.  Nothing is patched in afterwards.

    store ─ refs ─ workers ─ heads ─ events ─ commit path ─ registry
      │                                  │
      ├─ staging manager (journal)       └─ job scheduler (a commit trigger)
      └─ chunk cache ─ mount operations (a branch listener)
"""

from __future__ import annotations

import logging
import os

import trio

from .. import __version__
from ..cache.chunkcache import ChunkCache, default_cache_limit
from ..mountfs.operations import TrunkOperations
from ..pipelines.cgroups import DatumCgroups
from ..pipelines.executorconfig import DASK
from ..pipelines.executors import Executor
from ..pipelines.jobs import JobRetention
from ..pipelines.registry import PipelineRegistry
from ..pipelines.runner import Sandbox
from ..pipelines.scheduler import JobScheduler
from ..staging.manager import StagingManager
from ..staging.quota import StagingQuota
from ..store.errors import NotFound
from ..store.fleet import Beacon, check_shareable, daemon_id
from ..store.refs import Refs
from ..store.store import Store
from .auth import FileOwner
from .beacon import BeaconTask
from .commits import CommitPath
from .config import Config
from .events import EventBus
from .heads import BranchHeads
from .headwatch import HeadWatch
from .service import Service
from .workers import Workers

log = logging.getLogger(__name__)


async def build_service(config: Config, store: Store, mountpoint: str | None) -> Service:
    """The daemon's parts over an open store (blocking set-up runs in threads)."""
    refs = Refs(store)
    workers = Workers(config.threads)
    heads = BranchHeads(refs, workers)
    events = EventBus()
    ident = await trio.to_thread.run_sync(daemon_id, config.state)
    await trio.to_thread.run_sync(check_shareable, store.backend, ident)
    commits = CommitPath(store, refs, heads, events, workers, ident)
    # moves other daemons make (daemon/headwatch.py); its recorder of this daemon's
    # own commits is the first trigger, before the jobs' (see LocalCommits)
    headwatch = HeadWatch(refs, store, heads, events, workers, config.head_poll_interval)
    commits.add_trigger(headwatch.local)
    registry = PipelineRegistry(refs)

    def head_tree(repo: str, branch: str) -> str | None:
        try:
            head, _ = refs.read_branch(repo, branch)
        except NotFound:
            return None
        return store.read_commit(head).tree if head else None
    executors = build_executors(config)
    quota = StagingQuota(config.staging_quota_bytes())
    staging = await trio.to_thread.run_sync(StagingManager, config.state, head_tree, quota,
                                            config.staging_entries)
    # one chunk cache for every reader of this daemon: the mount, get/cat/read, job inputs
    cache = await trio.to_thread.run_sync(open_cache, config, store)
    jobs = JobScheduler(store, registry, commits, events.publish, workers.run, mountpoint=mountpoint,
                        daemon_id=ident, run_jobs=config.run_jobs,
                        lease_seconds=config.job_lease_seconds,
                        output_limit=config.job_output_limit_bytes(),
                        sandbox=Sandbox(config.job_log_limit_bytes(),
                                        await trio.to_thread.run_sync(DatumCgroups.setup)),
                        retention=JobRetention(config.job_keep_days, config.job_keep_count),
                        executors=executors, read_file=cache.read_file_from_thread)
    commits.add_trigger(jobs)
    await trio.to_thread.run_sync(jobs.load)
    # entries without an owner (from put) belong to whom the mount shows them as
    owner = FileOwner(os.getuid() if config.uid is None else config.uid,
                      os.getgid() if config.gid is None else config.gid)
    beacon = BeaconTask(Beacon(store.backend, ident, __version__), workers)
    return Service(store=store, refs=refs, workers=workers, bulk=Workers(config.bulk_threads), beacon=beacon,
                   headwatch=headwatch if config.head_poll_interval > 0 else None,
                   heads=heads, events=events,
                   commits=commits, pipelines=registry, staging=staging, jobs=jobs, cache=cache,
                   file_owner=owner, mountpoint=mountpoint)


def build_executors(config: Config) -> dict[str, Executor]:
    """The Dask executors the configuration lists (``local`` is the
    scheduler's own); their workers open the store as this daemon does."""
    found = config.executor_configs() if (config.executors or config.executor) else {}
    remote = [c for c in found.values() if c.type == DASK]
    if not remote:
        return {}
    from ..pipelines.dask_executor import DaskExecutor
    from ..pipelines.remote import StoreOptions
    options = StoreOptions(config.store, config.s3_endpoint, config.s3_region, int(config.compression_level),
                           int(config.pack_size_mib) << 20)
    return {c.name: DaskExecutor(c, options, config.job_output_limit_bytes()) for c in remote}


def open_cache(config: Config, store: Store) -> ChunkCache:
    os.makedirs(config.cache_dir, exist_ok=True)
    limit = config.cache_limit() or default_cache_limit(config.cache_dir)
    if config.store_is_local and not config.cache_local:
        # The packs of a local store are on this machine already: reading them
        # is as fast as reading cache files (measured by bench/read.py), and a
        # disk cache would only copy the store.  The memory layer stays.
        log.info("chunk cache: memory only (the store is local; --cache-local keeps a disk cache)")
        limit = 0
    reads = config.read_settings()
    store.coalesce_span = max(reads.request_size, 1 << 20)
    cache = ChunkCache(store, config.cache_dir, limit, memory_bytes=reads.memory, max_fetches=reads.requests,
                       readahead_bytes=reads.readahead, request_bytes=reads.request_size)
    cache.open()
    return cache


def build_operations(config: Config, service: Service) -> TrunkOperations:
    """The mount's Operations over the service's parts; it follows branch moves."""
    ops = TrunkOperations(service.store, service.refs, service.heads, service.workers.run,
                          service.cache, service.staging, uid=config.uid, gid=config.gid,
                          writeback_cache=bool(config.writeback_cache), listing=config.listing)
    service.heads.add_listener(ops.branch_changed)
    service.staging.add_listener(ops.staged_changed)
    return ops
