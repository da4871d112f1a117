"""The control socket: accept connections, read requests, dispatch, reply.

Every failure of one request becomes an error reply with a code, also a
reply that cannot be encoded (``unencodable``) and an exception group out of
a handler's nursery; a failure that leaves the stream unreadable (an
oversized line, a broken data frame, a client that hung up or stalled, an
error in the middle of a stream) ends that connection only.  Nothing a
client sends can stop the daemon: whatever escapes a connection is logged
and ends that connection, never the server.

Limits: at most ``MAX_CONNECTIONS`` connections in all and
``max_per_uid`` of one uid (root is not limited), each answered ``busy``
when refused; a connection that sends nothing for ``idle_timeout`` seconds
is closed.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import socket
import time

import trio

from ..store.errors import TrunkError
from . import protocol
from .connection import Connection, IdleTimeout, PeerGone, ProtocolError
from .handlers import HANDLERS, Request
from .handlers.base import first_error, only_cancelled
from .service import Service

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 512
MAX_CONNECTIONS_PER_UID = 64
IDLE_TIMEOUT = 300.0   # seconds


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
    def __init__(self, service: Service, path: str, group: str | None = None,
                 max_per_uid: int = MAX_CONNECTIONS_PER_UID,
                 idle_timeout: float | None = IDLE_TIMEOUT) -> None:
        self.service = service
        self.path = path
        self.group = group
        self.max_per_uid = max_per_uid
        self.idle_timeout = idle_timeout
        self._slots = trio.Semaphore(MAX_CONNECTIONS)
        self._per_uid: dict[int, int] = {}

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

    async def _refuse(self, stream: trio.SocketStream, message: str) -> None:
        with contextlib.suppress(Exception):
            await stream.send_all(protocol.encode(protocol.error_reply(protocol.BUSY, message)))
        with trio.move_on_after(1):
            await stream.aclose()

    async def _handle(self, stream: trio.SocketStream) -> None:
        if self._slots.value == 0:
            await self._refuse(stream, f"the daemon serves {MAX_CONNECTIONS} connections already; try again")
            return
        async with self._slots:
            try:
                conn = Connection(stream, self.idle_timeout)
            except OSError as exc:
                log.warning("cannot read the credentials of a client: %s", exc)
                await stream.aclose()
                return
            uid = conn.uid
            if uid != 0 and self._per_uid.get(uid, 0) >= self.max_per_uid:
                log.info("refused a connection of uid %d (pid %d): it has %d already",
                         uid, conn.pid, self.max_per_uid)
                await self._refuse(stream, f"uid {uid} has {self.max_per_uid} connections to the daemon "
                                           "already (max_connections_per_uid); try again")
                return
            self._per_uid[uid] = self._per_uid.get(uid, 0) + 1
            metrics = getattr(self.service, "metrics", None)
            if metrics is not None:
                metrics.connections.inc()
            try:
                await self.serve_connection(conn)
            except PeerGone:
                log.debug("client pid %d hung up", conn.pid)
            except BaseExceptionGroup as group:
                if only_cancelled(group):
                    raise
                log.error("connection of uid %d (pid %d) ended by an error", uid, conn.pid,
                          exc_info=group)
            except Exception:
                log.exception("connection of uid %d (pid %d) ended by an error", uid, conn.pid)
            finally:
                self._per_uid[uid] -= 1
                if not self._per_uid[uid]:
                    del self._per_uid[uid]
                await conn.aclose()

    async def serve_connection(self, conn: Connection) -> None:
        """Answer the requests of one connection until the client hangs up
        (or breaks the protocol beyond repair, or stays idle too long)."""
        while True:
            try:
                msg = await conn.read_message()
            except IdleTimeout as exc:  # between requests: nobody is waiting for a reply
                log.debug("closing the idle connection of pid %d: %s", conn.pid, exc)
                return
            except ProtocolError as exc:
                if await self._reply_error(conn, exc):
                    return
                continue
            if msg is None:
                return
            start = time.perf_counter()
            name = msg.get("op")
            op = name if isinstance(name, str) and name in HANDLERS else "unknown"
            try:
                reply = await self._dispatch(conn, msg)
            except ProtocolError as exc:
                self._count(op, exc.code, start)
                if await self._reply_error(conn, exc):
                    return
                continue
            self._count(op, "ok" if reply is None or reply.get("ok") else str(reply.get("error", {}).get("code")),
                        start)
            if reply is not None:
                await self._send_reply(conn, msg.get("op"), reply)

    def _count(self, op: str, code: str, start: float) -> None:
        """Count a request by op and reply code (``/metrics``), when the daemon serves metrics."""
        metrics = getattr(self.service, "metrics", None)   # no service: a test serving a bare handler
        if metrics is not None:
            metrics.request(op, code, time.perf_counter() - start)

    async def _reply_error(self, conn: Connection, exc: ProtocolError) -> bool:
        """Send the error reply of ``exc``; True when the connection must end."""
        await conn.send(protocol.error_reply(exc.code, str(exc)))
        if exc.fatal:
            await conn.linger()
        return exc.fatal

    async def _send_reply(self, conn: Connection, name: object, reply: dict) -> None:
        try:
            await conn.send(reply)
        except protocol.Unencodable as exc:  # nothing was sent: the stream is still in step
            log.error("the reply to %s by uid %d cannot be encoded: %s", name, conn.uid, exc)
            await conn.send(protocol.error_reply(
                protocol.UNENCODABLE, f"the reply to {name} cannot be encoded: {exc}"))

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
        try:
            result = await handler(req)
        except BaseExceptionGroup as group:  # out of a handler's nursery
            if only_cancelled(group):
                raise
            return self._failed(req, first_error(group))
        except (PeerGone, trio.Cancelled):
            raise
        except Exception as exc:
            return self._failed(req, exc)
        if req.started:  # the handler replied itself and streamed
            return None
        return protocol.ok_reply(result)

    def _failed(self, req: Request, exc: BaseException) -> dict:
        """The error reply of a failed request; raises ProtocolError (fatal)
        instead when the connection cannot go on (a stream was cut short)."""
        name, uid = req.op, req.conn.uid
        streaming = name == "put" or req.started
        if isinstance(exc, (PeerGone, trio.Cancelled)):  # one of a group: the others were its echo
            raise exc
        if isinstance(exc, ProtocolError):
            if streaming:
                exc.fatal = True
            raise exc
        if isinstance(exc, TrunkError):
            log.debug("%s by uid %d failed: %s", name, uid, exc)
            code, message, details = exc.code, str(exc), exc.details()
        elif isinstance(exc, (protocol.Unencodable, UnicodeEncodeError)):
            # a value that is not JSON data, or a string a strict encoder met (names are
            # PEP 383 strings everywhere, docs/names.md; this is the net for a bug)
            log.error("%s by uid %d: a name or message cannot be encoded: %s", name, uid, exc)
            code, message = protocol.UNENCODABLE, f"{name}: a name or message cannot be encoded: {exc}"
            details = {}
        else:
            log.error("internal error in %s (args %s)", name, _short(req.args), exc_info=exc)
            raise ProtocolError(protocol.INTERNAL, f"internal error in {name}: {exc!r}", fatal=True)
        if streaming:
            raise ProtocolError(code, message, fatal=True)
        return protocol.error_reply(code, message, details)


def _short(args: dict) -> str:
    text = repr(args)
    return text if len(text) < 300 else text[:300] + "..."
