"""The Python client of the trunkfs daemon (standard library only, so the
CLI starts fast)::

    from trunkfs.client import Client

    with Client() as c:
        c.repo_create("raw")
        done = c.put("raw", ["data/"], message="first")
        print(done.commit, c.show("raw").size)

See docs/client.md.  The modules: :mod:`.connection` (the framing),
:mod:`.transfer` (the put, get and cat streams), :mod:`.results` and
:mod:`.pipeline_results` (typed results), :mod:`.errors` (exceptions with
the protocol's error code), :mod:`.client` (the methods).
"""

from .client import Client, Watch
from .connection import FRAME_SIZE, Connection, default_socket_path
from .errors import (AlreadyExistsError, ClientError, ConflictError, DisconnectedError,
                     InvalidArgumentError, NotFoundError, NothingToCommitError,
                     PermissionDeniedError, ProtocolError, UnavailableError, error_for)
from .pipeline_results import (CommitEvent, DatumCounts, DatumLog, Event, JobEvent, JobInfo,
                               JobInput, JobLogs, OtherEvent, PipelineInfo)
from .results import (Author, BranchInfo, CacheStats, Change, CommitInfo, CommitResult,
                      DaemonInfo, Deleted, Diff, DiscardResult, Entry, FsckReport, GetResult,
                      Listing, Origin, ProvenanceRef, ProvenanceStep, PutResult, RepoInfo, Result,
                      RmResult, StatsInfo, Status)
from .transfer import Progress

__all__ = [
    "Client", "Watch", "Connection", "FRAME_SIZE", "default_socket_path", "Progress",
    "ClientError", "AlreadyExistsError", "ConflictError", "DisconnectedError",
    "InvalidArgumentError", "NotFoundError", "NothingToCommitError", "PermissionDeniedError",
    "ProtocolError", "UnavailableError", "error_for",
    "Result", "DaemonInfo", "Deleted", "RepoInfo", "BranchInfo", "Author", "Origin",
    "ProvenanceRef", "CommitInfo", "Change", "Diff", "Status", "Entry", "Listing", "PutResult",
    "RmResult", "CommitResult", "DiscardResult", "GetResult", "FsckReport", "CacheStats",
    "StatsInfo", "ProvenanceStep", "PipelineInfo", "DatumCounts", "JobInput", "JobInfo",
    "DatumLog", "JobLogs", "CommitEvent", "JobEvent", "OtherEvent", "Event",
]
