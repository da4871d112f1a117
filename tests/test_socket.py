"""The control socket under bad input: every client gets an answer or is
dropped, and the daemon keeps serving everyone else."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading

import pytest



def raw_request(path: str, payload: bytes, read: bool = True) -> list[dict]:
    return [json.loads(line) for line in raw_lines(path, payload, read)]


def raw_lines(path: str, payload: bytes, read: bool = True) -> list[bytes]:
    """The reply lines, as bytes, to ``payload`` sent on a fresh connection."""
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
        return [line for line in data.splitlines() if line.strip()]
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


# -- nothing a client sends can stop the daemon ------------------------------------

def request(daemon, op: str, **args) -> dict:
    """One request on a fresh connection; its one reply."""
    (reply,) = raw_request(daemon.socket, json.dumps({"op": op, "args": args}).encode() + b"\n")
    return reply


def test_a_latin1_name_through_the_mount_then_status_gets_a_reply(mounted):
    """Names are bytes: the issue's Latin-1 name is a change like any other;
    on the wire its byte is the escape \\udce9 (docs/names.md)."""
    mounted.cli("repo", "create", "r")
    with open(os.fsencode(mounted.mount / "r") + b"/caf\xe9.txt", "wb"):
        pass
    (line,) = raw_lines(mounted.socket, b'{"op":"status","args":{"repo":"r"}}\n')
    assert b'"/caf\\udce9.txt"' in line
    assert json.loads(line)["result"]["changes"] == [{"status": "A", "path": "/caf\udce9.txt"}]
    assert_alive(mounted)
    assert mounted.cli("status", "r").stdout == b"A /caf\xe9.txt\n"
    assert_alive(mounted)


def test_repo_names_that_are_not_text_are_invalid_and_the_connection_goes_on(daemon):
    # repo and branch names are identifiers: text without surrogates; a path
    # may hold U+DC80..U+DCFF (bytes), never another lone surrogate
    replies = raw_request(daemon.socket, b'{"op":"repo.delete","args":{"name":"x\\udce9"}}\n'
                          b'{"op":"ls","args":{"repo":"\\udce9"}}\n'
                          b'{"op":"repo.create","args":{"name":"w\\udce9"}}\n'
                          b'{"op":"repo.create","args":{"name":"r"}}\n'
                          b'{"op":"ls","args":{"repo":"r","path":"/a\\ud800"}}\n'
                          b'{"op":"repo.list"}\n{"op":"ping"}\n')
    assert [r.get("error", {}).get("code") for r in replies] == \
        ["invalid_argument", "invalid_argument", "invalid_argument", None, "invalid_argument", None, None]
    assert "x\\udce9" in replies[0]["error"]["message"] and "UTF-8" in replies[0]["error"]["message"]
    assert "U+DC80" in replies[4]["error"]["message"]
    assert [r["name"] for r in replies[5]["result"]] == ["r"]
    assert_alive(daemon)


def test_deeply_nested_json_is_a_bad_request(daemon):
    replies = raw_request(daemon.socket, b"[" * 200_000 + b"\n" + b'{"op":"ping"}\n')
    assert [r.get("error", {}).get("code") for r in replies] == ["bad_request", None]
    assert_alive(daemon)


@pytest.mark.parametrize("args, what", [
    ({"limit": -1}, "limit"), ({"limit": True}, "limit"), ({"limit": 2 ** 80}, "limit"),
    ({"limit": 1.5}, "limit")])
def test_int_arguments_are_range_checked(daemon, args, what):
    daemon.cli("repo", "create", "r")
    reply = request(daemon, "log", repo="r", **args)
    assert reply["error"]["code"] == "invalid_argument", reply
    assert what in reply["error"]["message"]
    assert request(daemon, "log", repo="r", limit=5) == {"ok": True, "result": []}
    assert_alive(daemon)


@pytest.mark.parametrize("entry", [
    {"type": "file", "path": "f", "mode": 2 ** 70},
    {"type": "file", "path": "f", "mode": -1},
    {"type": "file", "path": "f", "mode": "644"},
    {"type": "dir", "path": "d", "mode": 2 ** 64},
    {"type": "file", "path": "f", "mtime": -1},
    {"type": "file", "path": "f", "mtime": 2 ** 63},
    {"type": "dir", "path": "d", "mtime": 10 ** 30},
    {"type": "symlink", "path": "s", "target": "f", "mtime": 1.5},
    {"type": "file", "path": "f", "mtime": False},
])
def test_put_entries_with_out_of_range_numbers_are_invalid(daemon, entry):
    daemon.cli("repo", "create", "r")
    stream = [{"op": "put", "args": {"repo": "r"}}, {"entry": entry}]
    body = b"".join(json.dumps(m).encode() + b"\n" for m in stream)
    if entry["type"] == "file":
        body += b'{"data":3}\nabc{"eof":true}\n'
    body += b'{"end":true}\n'
    replies = raw_request(daemon.socket, body)
    assert replies[-1]["error"]["code"] == "invalid_argument", replies
    assert daemon.cli("log", "r", "--json").json() == []
    assert_alive(daemon)


def test_put_accepts_the_extremes_of_the_ranges(daemon):
    daemon.cli("repo", "create", "r")
    stream = [{"op": "put", "args": {"repo": "r"}},
              {"entry": {"type": "dir", "path": "d", "mode": 0o170777, "mtime": 0}},
              {"entry": {"type": "symlink", "path": "d/s", "target": "x", "mtime": 2 ** 63 - 1}},
              {"end": True}]
    replies = raw_request(daemon.socket, b"".join(json.dumps(m).encode() + b"\n" for m in stream))
    assert replies[-1]["ok"], replies
    listing = request(daemon, "ls", repo="r", path="d")["result"]["entries"]
    assert [(e["name"], e["mtime"]) for e in listing] == [("s", 2 ** 63 - 1)]
    assert_alive(daemon)


# -- exception groups out of a handler's nursery (in-process, on a socket pair) -----------

async def serve_one(requests: bytes, handler) -> list[dict]:
    """Serve ``requests`` with ``handler`` registered as op ``test.boom``;
    the replies (the server must return normally)."""
    import trio

    from trunkfs.daemon.connection import Connection
    from trunkfs.daemon.handlers import HANDLERS
    from trunkfs.daemon.server import ControlServer
    ours, theirs = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    server = ControlServer(None, "/nonexistent")  # type: ignore[arg-type]
    HANDLERS["test.boom"] = handler
    try:
        async with trio.SocketStream(ours) as client:
            await client.send_all(requests)
            await client.send_eof()
            conn = Connection(trio.SocketStream(theirs))
            await server.serve_connection(conn)
            await conn.aclose()
            data = b""
            while chunk := await client.receive_some(65536):
                data += chunk
    finally:
        del HANDLERS["test.boom"]
    return [json.loads(line) for line in data.splitlines()]


async def test_an_exception_group_of_store_errors_is_their_error_reply():
    import trio

    from trunkfs.store.errors import NotFound

    async def boom(req):
        async def fail() -> None:
            raise NotFound("no such thing")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail)
            nursery.start_soon(fail)
    replies = await serve_one(b'{"op":"test.boom"}\n{"op":"test.boom"}\n', boom)
    assert [r["error"]["code"] for r in replies] == ["not_found", "not_found"]


@pytest.mark.allow_warnings  # the internal error is logged
async def test_a_group_of_a_bug_and_a_cancellation_is_an_internal_error_not_a_dead_server():
    import trio

    async def boom(req):
        raise BaseExceptionGroup("nursery", [trio.Cancelled._create(), ValueError("a bug")])
    replies = await serve_one(b'{"op":"test.boom"}\n{"op":"ping"}\n', boom)
    assert [r["error"]["code"] for r in replies] == ["internal"]   # then the connection closed
    assert "a bug" in replies[0]["error"]["message"]
