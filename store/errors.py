"""Exceptions of the store layer.

Each carries enough context (repo, path, object key) to be understood alone,
and a stable ``code`` that the control socket sends to clients.
"""

from __future__ import annotations


class TrunkError(Exception):
    """Base of every error trunkfs reports to a user."""

    code = "error"

    def details(self) -> dict:
        """Structured facts sent with the error (``error.details`` on the socket)."""
        return {}


class InvalidArgument(TrunkError):
    """A name, path or value given by a caller is not acceptable."""

    code = "invalid_argument"


class NotFound(TrunkError):
    """A repo, branch, commit, path or store object does not exist."""

    code = "not_found"


class AlreadyExists(TrunkError):
    code = "exists"


class Conflict(TrunkError):
    """A compare-and-swap lost: the object changed since it was read."""

    code = "conflict"


class IntegrityError(TrunkError):
    """Stored data does not match its id or its format."""

    code = "integrity"


class BackendError(TrunkError):
    """The object store failed (I/O error, network, permissions)."""

    code = "store_error"


class ObjectMissing(NotFound, BackendError):
    """A key that must exist in the backend does not."""

    code = "not_found"


class AccessDenied(BackendError):
    code = "permission_denied"


class NoSpace(BackendError):
    code = "no_space"


class NothingToCommit(TrunkError):
    """A commit would not change the branch."""

    code = "nothing_to_commit"
