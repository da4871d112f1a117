"""The control socket: accept connections, read requests, dispatch, reply.

Every failure of one request becomes an error reply with a code; a failure
that leaves the stream unreadable (an oversized line, a broken data frame, a
client that hung up) ends that connection only.  Nothing a client sends can
stop the daemon.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import socket

import trio

from ..store.errors import TrunkError
from . import protocol
from .connection import Connection, PeerGone, ProtocolError
from .handlers import HANDLERS, Request
from .service import Service

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 512


def bind_socket(path: str, group: str | None = None) -> socket.socket:
    """Bind the Unix socket with mode 0600 (0660 with a group) from the start."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale socket of a dead daemon
        else:
            probe.close()
            raise TrunkError(f"another daemon is already serving {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177 if group is None else 0o117)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    if group is not None:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
        os.chmod(path, 0o660)
    sock.listen(128)
    return sock


class ControlServer:
    def __init__(self, service: Service, path: str, group: str | None = None) -> None:
        self.service = service
        self.path = path
        self.group = group
        self._slots = trio.Semaphore(MAX_CONNECTIONS)

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sock = bind_socket(self.path, self.group)
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        log.info("control socket listening on %s", self.path)
        try:
            task_status.started()
            await trio.serve_listeners(self._handle, [listener])
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def _handle(self, stream: trio.SocketStream) -> None:
        if self._slots.value == 0:
            with contextlib.suppress(Exception):
                await stream.send_all(protocol.encode(protocol.error_reply(
                    "busy", f"the daemon serves {MAX_CONNECTIONS} connections already; try again")))
            await stream.aclose()
            return
        async with self._slots:
            try:
                conn = Connection(stream)
            except OSError as exc:
                log.warning("cannot read the credentials of a client: %s", exc)
                await stream.aclose()
                return
            try:
                await self.serve_connection(conn)
            except PeerGone:
                log.debug("client pid %d hung up", conn.pid)
            finally:
                await conn.aclose()

    async def serve_connection(self, conn: Connection) -> None:
        """Answer the requests of one connection until the client hangs up
        (or breaks the protocol beyond repair)."""
        while True:
            try:
                msg = await conn.read_message()
                if msg is None:
                    return
                reply = await self._dispatch(conn, msg)
            except ProtocolError as exc:
                await conn.send(protocol.error_reply(exc.code, str(exc)))
                if exc.fatal:
                    await conn.linger()
                    return
                continue
            if reply is not None:
                await conn.send(reply)

    async def _dispatch(self, conn: Connection, msg: dict) -> dict | None:
        name = msg.get("op")
        args = msg.get("args", {})
        if not isinstance(name, str):
            raise ProtocolError(protocol.BAD_REQUEST, "request needs an 'op' string")
        if not isinstance(args, dict):
            raise ProtocolError(protocol.BAD_REQUEST, "'args' must be a JSON object")
        handler = HANDLERS.get(name)
        if handler is None:
            raise ProtocolError(protocol.UNKNOWN_OP, f"unknown operation {name!r}")
        req = Request(self.service, conn, name, args)
        streaming = name in ("put",)
        try:
            result = await handler(req)
        except (PeerGone, trio.Cancelled):
            raise
        except ProtocolError as exc:
            if streaming:
                exc.fatal = True
            raise
        except TrunkError as exc:
            log.debug("%s by uid %d failed: %s", name, conn.uid, exc)
            if streaming or req.started:
                raise ProtocolError(exc.code, str(exc), fatal=True) from None
            return protocol.error_reply(exc.code, str(exc))
        except Exception as exc:
            log.exception("internal error in %s (args %r)", name, _short(args))
            raise ProtocolError(protocol.INTERNAL, f"internal error in {name}: {exc!r}",
                                fatal=True) from None
        if req.started:  # the handler replied itself and streamed
            return None
        return protocol.ok_reply(result)


def _short(args: dict) -> str:
    text = repr(args)
    return text if len(text) < 300 else text[:300] + "..."
