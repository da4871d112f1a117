"""Errors of the client: every one carries the daemon's error code.

The daemon answers a failed request with ``{"code": ..., "message": ...}``
(docs/protocol.md); :func:`error_for` turns that into the subclass of
:class:`ClientError` for the code, so a program can catch ``NotFoundError``
or test ``exc.code``.  The client adds a few codes of its own:
``unavailable`` (no daemon at the socket), ``disconnected`` (the daemon
closed the connection), ``bad_reply`` (the daemon sent something the
client refuses, such as an unsafe path) and ``io_error`` (a local file
could not be read or written).
"""

from __future__ import annotations


class ClientError(Exception):
    """A request failed; ``code`` is the protocol's error code."""

    code: str = "error"

    def __init__(self, code: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details or {}   # e.g. ``paths`` of a commit conflict

    @property
    def message(self) -> str:
        return str(self)


class InvalidArgumentError(ClientError):
    """``invalid_argument``: a wrong type, a bad name or path."""


class NotFoundError(ClientError):
    """``not_found``: no such repo, branch, commit, path, pipeline or job."""


class AlreadyExistsError(ClientError):
    """``exists``: the name is taken."""


class ConflictError(ClientError):
    """``conflict``: a branch kept moving, or the operation clashes with another."""


class PermissionDeniedError(ClientError):
    """``permission_denied``: the caller may not do this."""


class NothingToCommitError(ClientError):
    """``nothing_to_commit``: the branch has no staged changes."""


class ProtocolError(ClientError):
    """``bad_request``, ``too_large``, ``unknown_op`` or ``bad_reply``: the two
    sides did not understand each other."""


class UnavailableError(ClientError):
    """``unavailable``: no daemon answers at the socket."""


class DisconnectedError(ClientError):
    """``disconnected``: the daemon closed the connection."""


_BY_CODE: dict[str, type[ClientError]] = {
    "invalid_argument": InvalidArgumentError,
    "not_found": NotFoundError,
    "exists": AlreadyExistsError,
    "conflict": ConflictError,
    "permission_denied": PermissionDeniedError,
    "nothing_to_commit": NothingToCommitError,
    "bad_request": ProtocolError,
    "too_large": ProtocolError,
    "unknown_op": ProtocolError,
    "bad_reply": ProtocolError,
    "unavailable": UnavailableError,
    "disconnected": DisconnectedError,
}


def error_for(code: str, message: str, details: dict | None = None) -> ClientError:
    """The exception for an error code (a plain :class:`ClientError` for a
    code without a class of its own)."""
    return _BY_CODE.get(code, ClientError)(code, message, details)


def error_from_reply(reply: dict) -> ClientError:
    """The exception for an ``{"ok": false, "error": {...}}`` line."""
    err = reply.get("error")
    if not isinstance(err, dict):
        err = {}
    details = err.get("details")
    return error_for(str(err.get("code", "error")), str(err.get("message", "unknown error")),
                     details if isinstance(details, dict) else None)
