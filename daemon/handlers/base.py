"""The request of a socket operation, and the registry of handlers.

Every handler gets the :class:`Request` (service, connection, caller's
credentials, arguments) and returns the JSON result of its reply; streaming
handlers also read or write entries and data frames on the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from ...store.errors import InvalidArgument
from ...store.names import check_name
from ..commits import author_of
from ..connection import Connection
from ..service import Service

log = logging.getLogger(__name__)

Handler = Callable[["Request"], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}
_MISSING = object()


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

    def arg(self, name: str, kind: type | tuple = str, default: Any = _MISSING) -> Any:
        value = self.args.get(name, _MISSING)
        if value is _MISSING or (value is None and default is not _MISSING):
            if default is _MISSING:
                raise InvalidArgument(f"{self.op}: missing argument {name!r}")
            return default
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int,))):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            raise InvalidArgument(f"{self.op}: argument {name!r} must be {' or '.join(k.__name__ for k in kinds)}")
        return value

    def repo(self) -> str:
        return check_name(self.arg("repo"), "repo")

    @property
    def author(self) -> dict:
        return author_of(self.conn.uid)


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The exception that matters in a nursery's group (not a Cancelled)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            exc = first_error(exc)
        if not isinstance(exc, trio.Cancelled):
            return exc
    return group.exceptions[0]

