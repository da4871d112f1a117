"""Configuration: defaults, then a TOML file, then command-line flags.

Every setting has a default that works with no file at all.  The file is
``--config PATH``, else ``$TRUNKFS_CONFIG``, else ``/etc/trunkfs/config.toml``
for root and ``~/.config/trunkfs/config.toml`` for other users, if present.
Keys of the file are the long flag names with ``_`` for ``-``, e.g.::

    store = "s3://my-bucket/trunkfs"
    s3_endpoint = "http://127.0.0.1:9000"
    state = "/var/lib/trunkfs"
    socket = "/run/trunkfs/trunkfs.sock"
    socket_group = "trunkfs"
    compression_level = 1
    log_level = "INFO"
    max_connections_per_uid = 64   # socket connections of one uid at once (root: no limit)
    idle_timeout = 300             # seconds a connection may send nothing between requests
    job_output_limit = "100G"      # bytes the datums of one job may store together (0: no cap)
    job_log_limit = "1M"           # output kept per datum attempt, start and end (0: no cap)
    job_keep_days = 30             # finished jobs and their logs are deleted after (0: no limit)
    job_keep_count = 1000          # finished jobs kept per pipeline (0: no limit)
    staging_quota = "100G"         # bytes one uid may stage through the mount (root: no limit; 0: none)
    staging_entries = 50000        # staged entries kept in memory per branch (the rest paged from the journal)
    head_poll_interval = 1.0       # seconds between reads of branch heads other daemons may move (0: off)
    run_jobs = true                # false: this daemon makes jobs for its commits but runs none
    job_lease_seconds = 30         # a job whose daemon is silent this long is run by another daemon

    [executors.cluster]            # a Dask cluster pipelines may name (executor = "cluster")
    type = "dask"
    scheduler = "tcp://10.0.0.5:8786"
    wait_seconds = 300             # a job waits this long for an unreachable scheduler, then fails
    datums_per_task = 0            # datums per Dask task when a spec does not say (0: chosen per job)
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ..client.connection import default_socket_path
from ..store.errors import InvalidArgument
from ..store.sizes import parse_size

__all__ = ["Config", "ReadSettings", "READ_DEFAULTS", "load_config", "parse_size", "default_state_dir",
           "default_config_file"]


def default_state_dir() -> str:
    if os.geteuid() == 0:
        return "/var/lib/trunkfs"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "trunkfs")


def default_config_file() -> str:
    if os.environ.get("TRUNKFS_CONFIG"):
        return os.environ["TRUNKFS_CONFIG"]
    if os.geteuid() == 0:
        return "/etc/trunkfs/config.toml"
    return os.path.expanduser("~/.config/trunkfs/config.toml")


class Config:
    """The daemon's settings (the defaults are in ``__init__``).  A plain
    class, not a dataclass: every ``trunkfs`` command imports this module
    (for the default socket), and ``dataclasses`` would add to its start."""

    # the settings, by their names in the config file (and on the command line)
    SETTINGS = ("state", "store", "socket", "socket_group", "mount", "allow_other", "cache_size",
                "cache_local", "cache_memory", "tree_cache", "readahead", "read_requests", "read_request_size", "uid", "gid", "s3_endpoint", "s3_region", "compression_level",
                "pack_size_mib", "threads", "bulk_threads", "log_level", "max_connections_per_uid", "idle_timeout",
                "job_output_limit", "job_log_limit", "job_keep_days", "job_keep_count",
                "staging_quota", "staging_entries", "head_poll_interval", "run_jobs", "job_lease_seconds", "executors",
                "executor", "http", "metrics_auth", "console_token_hours", "writeback_cache", "listing",
                "request_loop")

    def __init__(self, state: str | None = None, store: str = "", socket: str | None = None,
                 socket_group: str | None = None, mount: str | None = None,
                 allow_other: bool = False, cache_size: str | int | None = None,
                 cache_local: bool = False, cache_memory: str | int | None = None,
                 tree_cache: str | int = "64M", readahead: str | int | None = None, read_requests: int | None = None,
                 read_request_size: str | int | None = None, uid: int | None = None, gid: int | None = None,
                 s3_endpoint: str | None = None, s3_region: str | None = None,
                 compression_level: int = 1, pack_size_mib: int = 32, threads: int = 8,
                 bulk_threads: int = 4,
                 log_level: str = "INFO", max_connections_per_uid: int = 64,
                 idle_timeout: float = 300.0, job_output_limit: str | int = "100G",
                 job_log_limit: str | int = "1M", job_keep_days: float = 30.0,
                 job_keep_count: int = 1000, staging_quota: str | int = "100G",
                 staging_entries: int = 50_000,
                 head_poll_interval: float = 1.0, run_jobs: bool = True,
                 job_lease_seconds: float = 30.0, executors: dict | None = None,
                 executor: list[str] | None = None, http: str | None = None,
                 metrics_auth: str = "auto", console_token_hours: float = 168.0,
                 writeback_cache: bool = True, listing: str = "auto",
                 request_loop: str = "lean") -> None:
        self.state: str = default_state_dir() if state is None else state
        self.store: str = store                   # default: file://<state>/store
        self.socket: str = default_socket_path() if socket is None else socket
        self.socket_group = socket_group
        self.mount = mount
        self.allow_other = allow_other
        self.cache_size = cache_size              # bytes or "10G"; default 10% of free disk, at most 10 GiB
        self.cache_local = cache_local            # keep a disk cache even when the store is a local directory
        # the kernel gathers writes in its page cache (faster small writes);
        # a quota or disk-full refusal then reaches the writer at close/fsync (ENOSPC)
        self.writeback_cache = writeback_cache
        # files in a listing: by name only while few are then looked up (auto),
        # always with their attributes (whole), or by name only (names)
        self.listing = listing
        # the lock pyfuse3's loop takes before each FUSE request: lean (no trio
        # checkpoint when free, mountfs/fuseloop.py) or stock (pyfuse3's trio.Lock)
        self.request_loop = request_loop
        # how committed data is read (defaults by store kind: read_settings)
        self.cache_memory = cache_memory          # the chunk cache's memory layer (bytes or "96M")
        self.tree_cache = tree_cache              # decoded trees (and their name indexes) kept in memory
        self.readahead = readahead                # most bytes read ahead of one sequential reader; 0: off
        self.read_requests = read_requests        # readahead requests in flight at once, per daemon
        self.read_request_size = read_request_size  # most bytes one read request asks for
        self.uid = uid                            # owner shown for files; default: the daemon's user
        self.gid = gid
        self.s3_endpoint = s3_endpoint
        self.s3_region = s3_region
        self.compression_level = compression_level
        self.pack_size_mib = pack_size_mib
        self.threads = threads                    # worker threads of the mount and quick socket calls
        self.bulk_threads = bulk_threads          # of bulk socket work: put, get, commit, fsck
        self.log_level = log_level
        self.max_connections_per_uid = max_connections_per_uid
        self.idle_timeout = idle_timeout
        self.job_output_limit = job_output_limit  # bytes or "100G" a job may store; 0: no cap
        self.job_log_limit = job_log_limit        # output kept per datum attempt; 0: no cap
        self.job_keep_days = job_keep_days        # age of finished jobs pruned; 0: no limit
        self.job_keep_count = job_keep_count      # finished jobs kept per pipeline; 0: no limit
        self.staging_quota = staging_quota        # bytes or "100G" a uid may stage (EDQUOT); 0: none
        self.staging_entries = staging_entries    # staged entries in memory per branch; the rest paged out
        self.head_poll_interval = head_poll_interval  # s between reads of heads moved elsewhere; 0: off
        self.run_jobs = run_jobs                  # False: jobs are made here, run by other daemons
        self.job_lease_seconds = job_lease_seconds  # silence after which another daemon takes a job
        self.executors = executors or {}          # [executors.NAME] tables: Dask clusters pipelines may use
        self.executor = list(executor or [])      # --executor NAME=ADDRESS flags (a Dask scheduler each)
        self.http = http                          # HOST:PORT of the console and /metrics; None: no listener
        self.metrics_auth = metrics_auth          # /metrics: auto (open on loopback), token, none
        self.console_token_hours = console_token_hours  # how long a `trunkfs console` token stays valid
        self.finish()

    def __repr__(self) -> str:
        return "Config(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.SETTINGS) + ")"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config) or other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.SETTINGS)

    def finish(self) -> None:
        self.state = os.path.abspath(os.path.expanduser(self.state))
        if not self.store:
            self.store = "file://" + os.path.join(self.state, "store")
        if not 1 <= int(self.compression_level) <= 22:
            raise InvalidArgument("compression_level must be between 1 and 22")
        if not 1 <= int(self.pack_size_mib) <= 1024:
            raise InvalidArgument("pack_size_mib must be between 1 and 1024")
        for name in ("threads", "bulk_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
                raise InvalidArgument(f"{name} must be an integer between 1 and 256")
        if isinstance(self.max_connections_per_uid, bool) or not isinstance(self.max_connections_per_uid, int) \
                or not 1 <= self.max_connections_per_uid <= 100_000:
            raise InvalidArgument("max_connections_per_uid must be an integer between 1 and 100000")
        if isinstance(self.idle_timeout, bool) or not isinstance(self.idle_timeout, (int, float)) \
                or not 0 < self.idle_timeout <= 7 * 86400:
            raise InvalidArgument("idle_timeout must be a number of seconds, above 0 and at most a week")
        if parse_size(self.job_output_limit) < 0:
            raise InvalidArgument("job_output_limit must be a size of 0 (no cap) or more, e.g. 100G")
        if parse_size(self.job_log_limit) < 0:
            raise InvalidArgument("job_log_limit must be a size of 0 (no cap) or more, e.g. 1M")
        if isinstance(self.job_keep_days, bool) or not isinstance(self.job_keep_days, (int, float)) \
                or not 0 <= self.job_keep_days <= 100 * 366:
            raise InvalidArgument("job_keep_days must be a number of days, 0 (no limit) or more")
        if isinstance(self.job_keep_count, bool) or not isinstance(self.job_keep_count, int) \
                or self.job_keep_count < 0:
            raise InvalidArgument("job_keep_count must be an integer, 0 (no limit) or more")
        if parse_size(self.staging_quota) < 0:
            raise InvalidArgument("staging_quota must be a size of 0 (no limit) or more, e.g. 100G")
        if isinstance(self.staging_entries, bool) or not isinstance(self.staging_entries, int) \
                or not 1 <= self.staging_entries <= 100_000_000:
            raise InvalidArgument("staging_entries must be an integer from 1 to 100000000")
        if isinstance(self.head_poll_interval, bool) or not isinstance(self.head_poll_interval, (int, float)) \
                or not 0 <= self.head_poll_interval <= 60:
            raise InvalidArgument("head_poll_interval must be a number of seconds from 0 (off) to 60")
        if not isinstance(self.run_jobs, bool):
            raise InvalidArgument("run_jobs must be true or false")
        if isinstance(self.job_lease_seconds, bool) or not isinstance(self.job_lease_seconds, (int, float)) \
                or not 1 <= self.job_lease_seconds <= 3600:
            raise InvalidArgument("job_lease_seconds must be a number of seconds from 1 to 3600")
        if self.executors or self.executor:
            self.executor_configs()   # refuses a malformed table now, at start
        if self.mount:
            self.mount = os.path.abspath(os.path.expanduser(self.mount))
        if self.cache_size not in (None, ""):
            parse_size(self.cache_size)
        self.read_settings()   # refuses a bad value now, at start
        self.tree_cache_bytes()
        if self.http:
            from .http import parse_listen   # refuses a bad address now
            parse_listen(str(self.http))
        if self.request_loop not in ("lean", "stock"):
            raise InvalidArgument(f"request_loop must be lean or stock, not {self.request_loop!r}")
        if self.listing not in ("auto", "whole", "names"):
            raise InvalidArgument(f"listing must be auto, whole or names, not {self.listing!r}")
        if self.metrics_auth not in ("auto", "token", "none"):
            raise InvalidArgument(f"metrics_auth must be auto, token or none, not {self.metrics_auth!r}")
        if not isinstance(self.console_token_hours, (int, float)) or isinstance(self.console_token_hours, bool) \
                or not 0 < self.console_token_hours <= 24 * 366:
            raise InvalidArgument("console_token_hours must be a number of hours from 0 to 8784")

    def read_settings(self) -> ReadSettings:
        """How committed data is read: what the file or the flags say, else
        the defaults measured for the kind of store (``READ_DEFAULTS``)."""
        base = READ_DEFAULTS["local" if self.store_is_local else "remote"]
        memory = parse_size(self.cache_memory) if self.cache_memory not in (None, "") else base.memory
        ahead = parse_size(self.readahead) if self.readahead not in (None, "") else base.readahead
        size = parse_size(self.read_request_size) if self.read_request_size not in (None, "") \
            else base.request_size
        requests = self.read_requests if self.read_requests is not None else base.requests
        if not 0 <= memory <= 64 << 30:
            raise InvalidArgument("cache_memory must be a size from 0 to 64G, e.g. 96M")
        if not 0 <= ahead <= 16 << 30:
            raise InvalidArgument("readahead must be a size from 0 (off) to 16G, e.g. 48M")
        if not 64 << 10 <= size <= 1 << 30:
            raise InvalidArgument("read_request_size must be a size from 64K to 1G, e.g. 40M")
        if isinstance(requests, bool) or not isinstance(requests, int) or not 1 <= requests <= 256:
            raise InvalidArgument("read_requests must be an integer between 1 and 256")
        return ReadSettings(memory, ahead, requests, size)

    def tree_cache_bytes(self) -> int:
        """The decoded-tree cache's limit in bytes (``store.treecache``)."""
        try:
            size = parse_size(self.tree_cache)
        except InvalidArgument as exc:
            raise InvalidArgument(f"tree_cache: {exc}") from None
        if not 1 << 20 <= size <= 64 << 30:
            raise InvalidArgument("tree_cache must be a size from 1M to 64G, e.g. 64M")
        return size

    def executor_configs(self) -> dict:
        """The executors pipelines may name: ``local`` and the Dask clusters
        listed (``pipelines.executorconfig.ExecutorConfig`` by name)."""
        from ..pipelines.executorconfig import parse_executors   # only when some are listed
        return parse_executors(self.executors, self.executor)

    @property
    def cache_dir(self) -> str:
        return os.path.join(self.state, "cache")

    def job_output_limit_bytes(self) -> int:
        """The bytes a job's datums may store together; 0 is no cap."""
        return parse_size(self.job_output_limit)

    def job_log_limit_bytes(self) -> int:
        """The output kept per datum attempt in bytes; 0 is no cap."""
        return parse_size(self.job_log_limit)

    def staging_quota_bytes(self) -> int:
        """The bytes one uid may stage through the mount; 0 is no limit."""
        return parse_size(self.staging_quota)

    def cache_limit(self) -> int | None:
        """The cache bound in bytes, or None for the default."""
        return parse_size(self.cache_size) if self.cache_size not in (None, "") else None

    @property
    def store_is_local(self) -> bool:
        return self.store.startswith("file://") or self.store.startswith("/")

    @property
    def index_path(self) -> str:
        return os.path.join(self.state, "index")

    @property
    def tmp_dir(self) -> str:
        return os.path.join(self.state, "tmp")


class ReadSettings(NamedTuple):
    memory: int         # bytes of the chunk cache's memory layer
    readahead: int      # most bytes read ahead of one sequential reader (0: off)
    requests: int       # readahead requests in flight at once, per daemon
    request_size: int   # most bytes one request asks for (coalesced chunks)


# Measured with bench/s3read.py (S3: few large requests, one per pack, a
# window of several) and bench/read.py (a local store: a request is a pread,
# small batches come back sooner and many run at once); docs/reads.md.
READ_DEFAULTS = {
    "remote": ReadSettings(96 << 20, 48 << 20, 4, 40 << 20),
    "local": ReadSettings(32 << 20, 16 << 20, 8, 4 << 20),
}


def load_config(path: str | None, overrides: dict) -> Config:
    """Build the configuration: file (if any) first, then non-None overrides."""
    import tomllib  # imported when a file is read: the daemon starts as fast as it can
    values: dict = {}
    explicit = path is not None
    path = path or default_config_file()
    if os.path.exists(path):
        try:
            with open(path, "rb") as f:
                values = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidArgument(f"cannot read config file {path}: {exc}") from exc
    elif explicit:
        raise InvalidArgument(f"config file {path} does not exist")
    known = set(Config.SETTINGS)
    unknown = set(values) - known
    if unknown:
        raise InvalidArgument(f"config file {path}: unknown settings {', '.join(sorted(unknown))}")
    values.update({k: v for k, v in overrides.items() if v is not None and k in known})
    try:
        return Config(**values)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"bad configuration: {exc}") from exc
