"""The Python client of the trunkfs daemon (standard library only, so the
CLI starts fast)::

    from trunkfs.client import Client

    with Client() as c:
        c.repo_create("raw")
        done = c.put("raw", ["data/"], message="first")
        print(done.commit, c.show("raw").size)

See docs/client.md.  The modules: :mod:`.connection` (the framing),
:mod:`.transfer` (the put, get and cat streams), :mod:`.results`,
:mod:`.history_results` and :mod:`.pipeline_results` (typed results),
:mod:`.errors` (exceptions with the protocol's error code), :mod:`.client`
(the methods).  The results of history and of pipelines are imported on
first use (see :mod:`.client`), so that a command starts without them.
"""

from __future__ import annotations

from .client import Client, Watch
from .connection import FRAME_SIZE, Connection, default_socket_path
from .errors import (AlreadyExistsError, ClientError, ConflictError, DisconnectedError,
                     InvalidArgumentError, NotFoundError, NothingToCommitError,
                     PermissionDeniedError, ProtocolError, UnavailableError, error_for)
from .results import (AclEntry, BranchInfo, CacheStats, CommitResult, DaemonInfo, Deleted,
                      DiscardResult, FleetMember, FsckReport, GetResult, MergeResult, PutResult, RepoAcl,
                      RepoInfo, Result, RevertResult, RmResult, StatsInfo, TagInfo)
from .transfer import Progress

TYPE_CHECKING = False
if TYPE_CHECKING:  # at run time these come from __getattr__, on first use
    from typing import Any

    from .history_results import (Author, Change, CommitInfo, Diff, Entry, Listing, Origin,
                                  ProvenanceRef, ProvenanceStep, Status)
    from .pipeline_results import (CommitEvent, DatumCounts, DatumLog, DatumStats, Event, ExecutorInfo,
                                   JobEvent, JobInfo, JobInput, JobLogs, OtherEvent, PipelineInfo)

__all__ = [
    "Client", "Watch", "Connection", "FRAME_SIZE", "default_socket_path", "Progress",
    "ClientError", "AlreadyExistsError", "ConflictError", "DisconnectedError",
    "InvalidArgumentError", "NotFoundError", "NothingToCommitError", "PermissionDeniedError",
    "ProtocolError", "UnavailableError", "error_for",
    "Result", "DaemonInfo", "Deleted", "RepoInfo", "RepoAcl", "AclEntry", "BranchInfo", "Author", "Origin",
    "ProvenanceRef", "CommitInfo", "Change", "Diff", "Status", "Entry", "Listing", "PutResult",
    "RmResult", "CommitResult", "MergeResult", "RevertResult", "DiscardResult", "GetResult", "FleetMember",
    "FsckReport", "CacheStats", "StatsInfo", "TagInfo", "ProvenanceStep", "PipelineInfo", "DatumCounts",
    "JobInput", "JobInfo", "DatumStats", "ExecutorInfo",
    "DatumLog", "JobLogs", "CommitEvent", "JobEvent", "OtherEvent", "Event",
]

_LAZY = {
    **dict.fromkeys(("Author", "Change", "CommitInfo", "Diff", "Entry", "Listing", "Origin",
                     "ProvenanceRef", "ProvenanceStep", "Status"), "history_results"),
    **dict.fromkeys(("CommitEvent", "DatumCounts", "DatumLog", "DatumStats", "Event", "ExecutorInfo",
                     "JobEvent", "JobInfo", "JobInput", "JobLogs", "OtherEvent", "PipelineInfo"),
                    "pipeline_results"),
}


def __getattr__(name: str) -> Any:
    """A result class of :mod:`.history_results` or :mod:`.pipeline_results`,
    importing its module the first time one is asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
