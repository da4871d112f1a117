"""A socket handler's view of one console request.

The console answers by running the control socket's own handlers
(:data:`trunkfs.daemon.handlers.HANDLERS`), so a page sees exactly what
the same uid would see through ``trunkfs``: the same permission checks,
the same errors.  A handler talks to a :class:`Connection`; an
:class:`HttpPeer` is one with the credentials of the token's holder and
no socket: what a handler sends (the reply, data frames) is collected, or
handed to ``on_data`` as it comes for a download."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from ..connection import Connection, PeerGone

DataSink = Callable[[bytes], Awaitable[None]]


class HttpPeer(Connection):
    def __init__(self, uid: int, gid: int, on_data: DataSink | None = None) -> None:
        # no stream: nothing is read from a console request but its arguments
        self.stream = None  # type: ignore[assignment]
        self.idle_timeout = None
        self._buf = bytearray()
        self._eof = True
        self.pid, self.uid, self.gid = 0, uid, gid
        self.messages: list[dict] = []
        self.data: list[bytes] = []
        self.on_data = on_data
        self.closed = trio.Event()    # set when the browser goes away (a live event stream)

    async def _receive(self, max_bytes: int) -> bytes:
        raise PeerGone()

    async def send(self, obj: dict) -> None:
        self.messages.append(obj)

    async def send_data(self, data: bytes) -> None:
        if self.on_data is not None:
            await self.on_data(data)
        else:
            self.data.append(bytes(data))

    async def wait_closed(self) -> None:
        await self.closed.wait()

    async def linger(self, seconds: float = 2.0, limit: int = 0) -> None:
        return None

    async def aclose(self) -> None:
        self.closed.set()
