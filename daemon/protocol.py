"""The control-socket protocol, shared by the daemon and its clients.

Newline-delimited JSON over a Unix stream socket.  A request is one line::

    {"op": "repo.create", "args": {"name": "raw"}}

and gets one reply line::

    {"ok": true, "result": {...}}
    {"ok": false, "error": {"code": "not_found", "message": "repo 'x' does not exist"}}

Operations that move file bytes (``put``, ``get``) exchange extra lines
after the request (``put``) or after the reply (``get``): ``{"entry": {...}}``
announces a directory, file, symlink, FIFO, socket or device, or a later
name of a hard link (``link_to``); a file's bytes follow as data frames,
each a line ``{"data": N}`` followed by exactly N raw bytes, then a line
``{"eof": true}``; ``{"end": true}`` closes the stream.  See docs/protocol.md.
"""

from __future__ import annotations

import json

MAX_LINE = 1024 * 1024          # longest JSON line accepted
MAX_FRAME = 16 * 1024 * 1024    # largest data frame accepted
FRAME_SIZE = 4 * 1024 * 1024    # what our peers send

# error codes sent on the socket (besides the TrunkError codes of the store)
BAD_REQUEST = "bad_request"
TOO_LARGE = "too_large"
UNKNOWN_OP = "unknown_op"
INTERNAL = "internal"
PERMISSION_DENIED = "permission_denied"
UNENCODABLE = "unencodable"     # a reply held something that is not JSON data
BUSY = "busy"                   # too many connections (in all, or of one uid)
TIMEOUT = "timeout"             # a client stalled in the middle of a request


class Unencodable(ValueError):
    """A message cannot be sent: it holds something that is not JSON data
    (or nests too deep).  Nothing was written when this is raised."""


def encode(obj: dict) -> bytes:
    """One message as a line of UTF-8 JSON; :class:`Unencodable` when it cannot be.

    Names are bytes (docs/names.md): a name byte that is not part of valid
    UTF-8 is, in a Python string, the lone surrogate U+DC80+byte (PEP 383),
    and travels as the JSON escape ``\\udcXX``.  A line that holds one is
    written in ASCII JSON; every other line as plain UTF-8."""
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise Unencodable(f"{type(exc).__name__}: {exc}") from None
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def printable(text: str) -> str:
    """``text`` with what UTF-8 cannot carry (lone surrogates) escaped as ``\\udcXX``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_reply(code: str, message: str, details: dict | None = None) -> dict:
    """An error reply; always encodable (its message is made printable;
    ``details`` hold names as everywhere else, docs/names.md)."""
    err: dict = {"code": printable(str(code)), "message": printable(str(message))}
    if details:
        err["details"] = details
    return {"ok": False, "error": err}


def ok_reply(result: object = None) -> dict:
    return {"ok": True, "result": result if result is not None else {}}
