"""The control socket under bad input: every client gets an answer or is
dropped, and the daemon keeps serving everyone else."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading



def raw_request(path: str, payload: bytes, read: bool = True) -> list[dict]:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(path)
    try:
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon dropped us; its error reply is still readable
        if not read:
            return []
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return [json.loads(line) for line in data.splitlines() if line.strip()]
    finally:
        s.close()


def assert_alive(daemon) -> None:
    with daemon.client() as c:
        assert c.call("ping")["pid"] == daemon.proc.pid


def test_socket_is_private(daemon):
    mode = stat.S_IMODE(os.stat(daemon.socket).st_mode)
    assert mode == 0o600


def test_malformed_requests_get_error_codes(daemon):
    replies = raw_request(daemon.socket, b"{not json\n" b"[1,2]\n" b'{"op": 5}\n'
                          b'{"op": "no.such.op"}\n' b'{"op": "repo.create", "args": []}\n'
                          b'{"op": "repo.create", "args": {"name": 7}}\n'
                          b'{"op": "repo.create"}\n' b'{"op": "ping"}\n')
    codes = [r.get("error", {}).get("code") for r in replies]
    assert codes == ["bad_request", "bad_request", "bad_request", "unknown_op", "bad_request",
                     "invalid_argument", "invalid_argument", None]
    assert replies[-1]["ok"] is True
    assert "must be str" in replies[5]["error"]["message"]
    assert_alive(daemon)


def test_oversized_line_is_refused_and_connection_dropped(daemon):
    replies = raw_request(daemon.socket, b'{"op": "ping", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}\n')
    assert replies[0]["error"]["code"] == "too_large"
    assert len(replies) == 1
    assert_alive(daemon)


def test_client_hanging_up_mid_put_commits_nothing(daemon, workdir):
    daemon.cli("repo", "create", "r")
    s = socket.socket(socket.AF_UNIX)
    s.connect(daemon.socket)
    s.sendall(b'{"op":"put","args":{"repo":"r"}}\n{"entry":{"type":"file","path":"f"}}\n'
              b'{"data":1000000}\n' + b"x" * 1000)
    s.close()
    # a broken data frame header too
    replies = raw_request(daemon.socket, b'{"op":"put","args":{"repo":"r"}}\n'
                          b'{"entry":{"type":"file","path":"g"}}\n{"data":-5}\n')
    assert replies[-1]["error"]["code"] == "bad_request"
    replies = raw_request(daemon.socket, b'{"op":"put","args":{"repo":"r"}}\n'
                          b'{"entry":{"type":"file","path":"../../etc/x"}}\n')
    assert replies[-1]["error"]["code"] == "invalid_argument"
    assert daemon.cli("log", "r", "--json").json() == []
    assert_alive(daemon)


def test_hundred_clients_at_once(daemon):
    daemon.cli("repo", "create", "busy")
    errors: list[BaseException] = []
    results: list[dict] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        try:
            with daemon.client() as c:
                if i % 10 == 0:
                    c.sock.sendall(b"garbage\n")
                    assert c.read_message()["error"]["code"] == "bad_request"
                r = c.call("ls", repo="busy")
                with lock:
                    results.append(r)
        except BaseException as exc:  # noqa: BLE001 - reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert len(results) == 100
    assert_alive(daemon)


def test_unreachable_daemon_is_a_clear_error(daemon_factory, workdir):
    d = daemon_factory(start=False)
    res = d.cli("repo", "list", check=False)
    assert res.returncode != 0
    assert "cannot reach the trunkfs daemon" in res.err
