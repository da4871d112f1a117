"""One client connection of the control socket, with bounded framing."""

from __future__ import annotations

import contextlib
import json
import socket
import struct

import trio

from . import protocol


class ProtocolError(Exception):
    """The peer broke the protocol; ``fatal`` when the stream cannot be resynced."""

    def __init__(self, code: str, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.fatal = fatal


class PeerGone(Exception):
    """The client hung up."""


class IdleTimeout(ProtocolError):
    """The client sent nothing for ``idle_timeout`` seconds while the daemon
    waited for its next line or bytes."""

    def __init__(self, seconds: float) -> None:
        super().__init__(protocol.TIMEOUT, f"nothing received for {seconds:g} s", fatal=True)


class Connection:
    """A client's stream with its credentials (SO_PEERCRED).  Every read of
    the client's lines and frames gives up after ``idle_timeout`` seconds
    without a byte (:class:`IdleTimeout`); ``wait_closed`` (a ``watch``) does not."""

    def __init__(self, stream: trio.SocketStream, idle_timeout: float | None = None) -> None:
        self.stream = stream
        self.idle_timeout = idle_timeout
        self._buf = bytearray()
        self._eof = False
        self.pid, self.uid, self.gid = self._peercred()

    def _peercred(self) -> tuple[int, int, int]:
        raw = self.stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                            struct.calcsize("3i"))
        return struct.unpack("3i", raw)

    async def _receive(self, max_bytes: int) -> bytes:
        """Some bytes from the client (never empty): PeerGone at its end,
        IdleTimeout when nothing comes for ``idle_timeout`` seconds."""
        if self._eof:
            raise PeerGone()
        data = None
        with trio.move_on_after(self.idle_timeout if self.idle_timeout is not None else float("inf")):
            try:
                data = await self.stream.receive_some(max_bytes)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise PeerGone() from exc
        if data is None:
            assert self.idle_timeout is not None
            raise IdleTimeout(self.idle_timeout)
        if not data:
            self._eof = True
            raise PeerGone()
        return data

    async def _fill(self) -> None:
        self._buf += await self._receive(1 << 20)

    async def read_line(self) -> bytes | None:
        """The next line without its newline; None when the peer closed cleanly."""
        start = 0
        while True:
            pos = self._buf.find(b"\n", start)
            if pos >= 0:
                line = bytes(self._buf[:pos])
                del self._buf[:pos + 1]
                return line
            if len(self._buf) > protocol.MAX_LINE:
                raise ProtocolError(protocol.TOO_LARGE,
                                    f"request line longer than {protocol.MAX_LINE} bytes", fatal=True)
            start = len(self._buf)
            try:
                await self._fill()
            except PeerGone:
                if not self._buf:
                    return None
                raise

    async def read_message(self) -> dict | None:
        line = await self.read_line()
        if line is None:
            return None
        try:
            msg = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
            raise ProtocolError(protocol.BAD_REQUEST,
                                f"malformed JSON: {exc}") from None
        if not isinstance(msg, dict):
            raise ProtocolError(protocol.BAD_REQUEST, "a message must be a JSON object")
        return msg

    async def read_exact(self, n: int) -> bytes:
        if len(self._buf) >= n:
            data = bytes(self._buf[:n])
            del self._buf[:n]
            return data
        parts = [bytes(self._buf)]
        have = len(self._buf)
        self._buf.clear()
        while have < n:
            data = await self._receive(min(n - have, 4 << 20))
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    async def read_frame_body(self, msg: dict) -> bytes:
        n = msg.get("data")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ProtocolError(protocol.BAD_REQUEST, "data frame length must be a non-negative integer", fatal=True)
        if n > protocol.MAX_FRAME:
            raise ProtocolError(protocol.TOO_LARGE, f"data frame of {n} bytes exceeds {protocol.MAX_FRAME}", fatal=True)
        return await self.read_exact(n)

    async def send(self, obj: dict) -> None:
        """Send one message; :class:`protocol.Unencodable` (nothing sent) when
        it cannot be encoded."""
        line = protocol.encode(obj)
        try:
            await self.stream.send_all(line)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise PeerGone() from exc

    async def send_data(self, data: bytes) -> None:
        head = protocol.encode({"data": len(data)})
        try:
            if len(data) < 65536:  # one write for small frames; no copy of big ones
                await self.stream.send_all(head + data)
            else:
                await self.stream.send_all(head)
                await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise PeerGone() from exc

    async def wait_closed(self) -> None:
        """Return when the client closes its end (whatever it sends is dropped)."""
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return

    async def linger(self, seconds: float = 2.0, limit: int = 256 * 1024 * 1024) -> None:
        """Before dropping a client: stop sending and discard what it still sends.

        Closing a Unix socket with unread input resets the connection and
        throws away the error reply we just sent, so read and discard the
        rest of the client's upload for a short while first.
        """
        with contextlib.suppress(Exception):
            await self.stream.send_eof()
        discarded = 0
        with trio.move_on_after(seconds):
            while discarded < limit:
                try:
                    data = await self.stream.receive_some(1 << 20)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
                discarded += len(data)

    async def aclose(self) -> None:
        with trio.move_on_after(1):
            await self.stream.aclose()
