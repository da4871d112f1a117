"""The request of a socket operation, and the registry of handlers.

Every handler gets the :class:`Request` (service, connection, caller's
credentials, arguments) and returns the JSON result of its reply; streaming
handlers also read or write entries and data frames on the connection.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import trio

from ...store.errors import InvalidArgument
from ...store.names import check_name
from ...store.objects import RepoInfo
from ...store.changes import author_of
from ..auth import Caller, require
from .. import protocol
from ..connection import Connection, ProtocolError
from ..service import Service

log = logging.getLogger(__name__)

Handler = Callable[["Request"], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}
_MISSING = object()
INT_MAX = 2 ** 63 - 1   # the largest int argument any operation takes (int64)


def op(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn
    return register


@dataclass
class Request:
    service: Service
    conn: Connection
    op: str
    args: dict
    started: bool = False  # a streaming handler has sent its reply already
    _caller: Caller | None = None

    def arg(self, name: str, kind: type | tuple = str, default: Any = _MISSING,
            low: int = 0, high: int = INT_MAX) -> Any:
        """Argument ``name``, of type ``kind`` (InvalidArgument otherwise); an
        int (never a bool) must lie in ``low..high``, by default 0..2**63-1."""
        value = self.args.get(name, _MISSING)
        if value is _MISSING or (value is None and default is not _MISSING):
            if default is _MISSING:
                raise InvalidArgument(f"{self.op}: missing argument {name!r}")
            return default
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int,))):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            raise InvalidArgument(f"{self.op}: argument {name!r} must be {' or '.join(k.__name__ for k in kinds)}")
        if isinstance(value, int) and not isinstance(value, bool) and not low <= value <= high:
            raise InvalidArgument(f"{self.op}: argument {name!r} must be between {low} and {high}")
        return value

    def repo(self) -> str:
        return check_name(self.arg("repo"), "repo")

    async def who(self) -> Caller:
        """Who sent the request: the connection's uid and gid, and that uid's
        groups (read from the group database in a worker thread, once)."""
        if self._caller is None:
            self._caller = await self.service.workers.run(Caller, self.conn.uid, self.conn.gid)
        return self._caller

    @property
    def caller(self) -> Caller:
        """The caller, once :meth:`who` or :meth:`require` has found it."""
        if self._caller is None:   # not expected: looked up here, on the event loop
            self._caller = Caller(self.conn.uid, self.conn.gid)
        return self._caller

    async def require(self, repo: str, role: str) -> RepoInfo:
        """The repo's record, when the caller has ``role`` on it (else permission_denied)."""
        caller = await self.who()
        info = await self.service.workers.run(self.service.refs.get_repo, repo)
        require(caller, info, role, self.op)
        return info

    async def branch_args(self, role: str) -> tuple[str, str]:
        """The ``repo`` and ``branch`` arguments of an operation on a branch
        (``branch`` a branch, never a commit id; default ``main``), when the
        caller has ``role`` on the repo."""
        repo = self.repo()
        await self.require(repo, role)
        return repo, await self.service.writable_branch(repo, self.arg("branch", str, "main"))

    @property
    def author(self) -> dict:
        return author_of(self.conn.uid)


def _leaves(group: BaseExceptionGroup) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The exception that matters in a nursery's (possibly nested) group:
    the first that is not a Cancelled, else a Cancelled (never a group)."""
    cancelled: BaseException | None = None
    for exc in _leaves(group):
        if not isinstance(exc, trio.Cancelled):
            return exc
        cancelled = cancelled or exc
    assert cancelled is not None  # a group is never empty
    return cancelled


def only_cancelled(group: BaseExceptionGroup) -> bool:
    """Whether every exception in the group is a Cancelled (it must propagate)."""
    return all(isinstance(exc, trio.Cancelled) for exc in _leaves(group))



# -- the entry streams of put and stage.put (docs/protocol.md) --------------------------

async def next_entry(conn: Connection, op_name: str) -> dict | None:
    """The next ``{"entry": ...}`` head of an entry stream (with a string
    ``path``), or None at its ``{"end": true}``; a hang-up or anything else
    ends the connection."""
    msg = await conn.read_message()
    if msg is None:
        raise ProtocolError(protocol.BAD_REQUEST, f"client hung up before the end of {op_name}", fatal=True)
    if msg.get("end") is True:
        return None
    head = msg.get("entry")
    if not isinstance(head, dict) or not isinstance(head.get("path"), str):
        raise ProtocolError(protocol.BAD_REQUEST, "expected an entry, a data frame or end", fatal=True)
    return head


async def file_frames(conn: Connection) -> AsyncIterator[bytes]:
    """The data frames of one file of an entry stream, up to its ``{"eof": true}``."""
    while True:
        frame = await conn.read_message()
        if frame is None:
            raise ProtocolError(protocol.BAD_REQUEST, "client hung up in the middle of a file", fatal=True)
        if frame.get("eof") is True:
            return
        yield await conn.read_frame_body(frame)


STREAM_BATCH = 1000   # items per line of a streamed reply


def _take(items: Iterator[Any], n: int) -> list[Any]:
    return list(itertools.islice(items, n))


async def stream_reply(req: Request, header: dict, items: Iterator[Any]) -> None:
    """Reply ``header`` at once, then the items as they are made (in a
    worker thread, STREAM_BATCH at a time) on ``{"items": [...]}`` lines,
    then ``{"end": true, "count": n}`` (docs/protocol.md).  A caller that
    asked with ``stream`` prints the first lines while the walk goes on, and
    neither side holds the whole result."""
    conn = req.conn
    await conn.send(protocol.ok_reply(header))
    req.started = True
    n = 0
    while batch := await req.service.workers.run(_take, items, STREAM_BATCH):
        n += len(batch)
        await conn.send({"items": batch})
    await conn.send({"end": True, "count": n})


def streamed(req: Request) -> bool:
    """Whether the caller asked for a streamed reply (``stream``: true)."""
    return bool(req.arg("stream", bool, False))
