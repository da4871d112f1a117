"""The operations of the control socket, one coroutine each, by domain:

``admin`` (ping, stop, stats, fsck), ``repos`` (repos and branches),
``reads`` (ls, get, log, show, diff, provenance), ``writes`` (put, rm),
``merge`` (merge, revert), ``staging`` (status, commit, discard),
``pipelines`` (pipelines, jobs, watch).  Importing this package registers every handler in ``HANDLERS``.
"""

from . import admin, merge, pipelines, reads, repos, staging, writes  # noqa: F401  (registration)
from .base import HANDLERS, Request

__all__ = ["HANDLERS", "Request"]
