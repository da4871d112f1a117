"""One connection to the daemon's control socket: the framing of
docs/protocol.md (JSON lines, data frames) and nothing else."""

from __future__ import annotations

import json
import socket

from .errors import ClientError, DisconnectedError, ProtocolError, UnavailableError, error_from_reply

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is only needed by the type checker
    from typing import Any

FRAME_SIZE = 4 * 1024 * 1024  # the size of the data frames we send (the daemon takes up to 16 MiB)


def default_socket_path() -> str:
    """``$TRUNKFS_SOCKET``, else the daemon's default for this user (the one
    definition of the default: the daemon's configuration reads it here)."""
    import os
    if os.environ.get("TRUNKFS_SOCKET"):
        return os.environ["TRUNKFS_SOCKET"]
    if os.geteuid() == 0:
        return "/run/trunkfs/trunkfs.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/trunkfs-{os.getuid()}"
    return os.path.join(runtime, "trunkfs.sock")


class Connection:
    """A blocking connection; a request and its reply (and the stream that
    may follow) run one after the other on it.  After a stream breaks off
    the connection is closed, and using it raises :class:`DisconnectedError`."""

    def __init__(self, path: str | None = None, timeout: float | None = None) -> None:
        self.path = path or default_socket_path()
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            self.sock.close()
            raise UnavailableError("unavailable", f"cannot reach the trunkfs daemon at {self.path} "
                                   f"({exc.strerror}); start it with `trunkfs daemon` or set "
                                   "TRUNKFS_SOCKET") from None
        except PermissionError:
            self.sock.close()
            raise ClientError("permission_denied",
                              f"no permission to use the trunkfs socket {self.path}") from None
        self.rfile = self.sock.makefile("rb", buffering=1 << 20)
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.rfile.close()
            self.sock.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise DisconnectedError("disconnected", "the connection to the daemon is closed")

    # -- sending ---------------------------------------------------------------

    def send(self, obj: dict) -> None:
        """One JSON line."""
        self._check_open()
        self.sock.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def send_request(self, op: str, args: dict[str, Any]) -> None:
        """A request line; arguments that are None are left out (the daemon's default)."""
        self.send({"op": op, "args": {k: v for k, v in args.items() if v is not None}})

    def send_data(self, data: bytes | memoryview) -> None:
        """One data frame: its header line, then the bytes."""
        self._check_open()
        self.sock.sendall(b'{"data":%d}\n' % len(data))
        self.sock.sendall(data)

    # -- receiving -------------------------------------------------------------

    def read_message(self) -> dict:
        """The next JSON line (a reply, a stream line or an event)."""
        self._check_open()
        line = self.rfile.readline()
        if not line:
            raise DisconnectedError("disconnected", "the daemon closed the connection")
        try:
            msg = json.loads(line)
        except ValueError:
            raise ProtocolError("bad_reply", f"the daemon sent a line that is not JSON: {line[:80]!r}") from None
        if not isinstance(msg, dict):
            raise ProtocolError("bad_reply", "the daemon sent a line that is not a JSON object")
        return msg

    def read_exact(self, n: int) -> bytes:
        """The ``n`` bytes of a data frame."""
        self._check_open()
        data = self.rfile.read(n)
        if len(data) != n:
            raise DisconnectedError("disconnected", "the daemon closed the connection in a data frame")
        return data

    def read_reply(self) -> Any:
        """The result of a reply line; an error reply raises its :class:`ClientError`."""
        msg = self.read_message()
        if not msg.get("ok"):
            raise error_from_reply(msg)
        return msg.get("result")

    def call(self, op: str, **args: Any) -> Any:
        """One request and its reply's result (the raw JSON)."""
        self.send_request(op, args)
        return self.read_reply()

    def reply_after_broken_pipe(self) -> ClientError:
        """After the daemon closed on us in the middle of an upload, the error
        it sent first (it reads what we still send for a while, so the
        reply is usually there)."""
        try:
            self.read_reply()
        except ClientError as exc:
            return exc
        except (OSError, ValueError):
            pass
        return DisconnectedError("disconnected", "the daemon closed the connection during the upload")
