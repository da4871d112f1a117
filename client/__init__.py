"""A blocking client of the control socket (standard library only, so the
CLI starts fast)."""

from __future__ import annotations

import json
import os
import socket

FRAME_SIZE = 4 * 1024 * 1024


class ClientError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def socket_path() -> str:
    from ..daemon.config import default_socket
    return default_socket()


class Client:
    def __init__(self, path: str | None = None, timeout: float | None = None) -> None:
        self.path = path or socket_path()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            self.sock.close()
            raise ClientError("unavailable", f"cannot reach the trunkfs daemon at {self.path} "
                              f"({exc.strerror}); start it with `trunkfs daemon` or set TRUNKFS_SOCKET") from None
        except PermissionError:
            self.sock.close()
            raise ClientError("permission_denied", f"no permission to use the trunkfs socket {self.path}") from None
        self.rfile = self.sock.makefile("rb", buffering=1 << 20)

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- framing ---------------------------------------------------------------

    def send(self, obj: dict) -> None:
        self.sock.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def send_data(self, data: bytes | memoryview) -> None:
        self.sock.sendall(b'{"data":%d}\n' % len(data))
        self.sock.sendall(data)

    def read_message(self) -> dict:
        line = self.rfile.readline()
        if not line:
            raise ClientError("disconnected", "the daemon closed the connection")
        return json.loads(line)

    def read_exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) != n:
            raise ClientError("disconnected", "the daemon closed the connection in a data frame")
        return data

    def read_reply(self) -> object:
        msg = self.read_message()
        if not msg.get("ok"):
            err = msg.get("error") or {}
            raise ClientError(err.get("code", "error"), err.get("message", "unknown error"))
        return msg.get("result")

    # -- requests --------------------------------------------------------------

    def call(self, op: str, **args: object) -> object:
        self.send({"op": op, "args": {k: v for k, v in args.items() if v is not None}})
        return self.read_reply()

    def reply_after_broken_pipe(self) -> ClientError:
        """After the daemon closed on us mid-upload, fetch the error it sent."""
        try:
            self.read_reply()
        except ClientError as exc:
            return exc
        except (OSError, ValueError):
            pass
        return ClientError("disconnected", "the daemon closed the connection during the upload")


def file_frames(path: str) -> "tuple[int, object]":
    """Open ``path`` and return (fd, iterator of byte frames)."""
    fd = os.open(path, os.O_RDONLY)

    def frames():
        try:
            while True:
                data = os.read(fd, FRAME_SIZE)
                if not data:
                    return
                yield data
        finally:
            os.close(fd)
    return fd, frames()
