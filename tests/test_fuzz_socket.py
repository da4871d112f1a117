"""Fuzzing the control socket of one real daemon with hypothesis: random
requests of every operation (and unknown ones) with arguments of any type
and size, random byte lines, put streams with random entries and broken
data frames.  After each example the daemon answers ``ping``; at the end
``fsck`` is clean and the daemon's log holds no error that escaped.

No ERROR or WARNING line is allowed: names are bytes (a lone surrogate of
U+DC80..U+DCFF in a path is a byte, any other is ``invalid_argument``), so
every reply can be encoded.
"""

from __future__ import annotations

import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trunkfs.daemon.handlers import HANDLERS

REPO = "fz"
OPS = sorted(set(HANDLERS) - {"daemon.stop"})   # a stop would end the run, as it should
UNKNOWN_OPS = ["", "no.such.op", "PING", "ping ", "repo.", "put\x00", "\udce9"]
ARG_NAMES = ["repo", "branch", "path", "ref", "ref1", "ref2", "limit", "name", "id", "datum", "paths",
             "message", "allow_empty", "progress", "rebuild_index", "read_data", "spec", "dest",
             "from", "file_only", "reprocess", "pipeline"]
HUGE = [2 ** 31, 2 ** 63 - 1, 2 ** 63, 2 ** 64, -(2 ** 63) - 1, 2 ** 200, 10 ** 1000, -1]

FUZZ = settings(max_examples=150, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])

# any character, lone surrogates and control characters included
any_text = st.text(st.characters(blacklist_categories=()), max_size=40)
odd_text = st.sampled_from(["", ".", "..", "/", "//", "../x", "a/../b", "\x00", "caf\udce9", "\udcff" * 3,
                            "\n", "\r\n", "\x7f", "a" * 256, "é" * 200, "x" * 200_000, "main", REPO,
                            "@", "a:b", " ", "\u202e", "\ufeff"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(HUGE),
                    st.floats(allow_nan=True, allow_infinity=True), any_text, odd_text)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(any_text | st.sampled_from(ARG_NAMES), inner, max_size=4)),
    max_leaves=12)
arg_values = st.one_of(st.sampled_from([REPO, "main", "/", "f", 0, 1, True, [], {}]), values)
args = st.dictionaries(st.sampled_from(ARG_NAMES) | any_text, arg_values, max_size=6)
requests = st.fixed_dictionaries(
    {"op": st.sampled_from(OPS) | st.sampled_from(UNKNOWN_OPS) | values},
    optional={"args": args | values, "extra": values})


def to_line(obj: object, ascii_only: bool) -> bytes:
    # ensure_ascii: surrogates travel as \udcXX escapes; else as bytes that are not UTF-8
    return json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass") + b"\n"


request_lines = st.builds(to_line, requests, st.booleans())
byte_lines = st.binary(max_size=300).map(lambda b: b + b"\n")

# -- put streams ----------------------------------------------------------------------

entry_heads = st.fixed_dictionaries(
    {"type": st.sampled_from(["file", "dir", "symlink"]) | values,
     "path": st.sampled_from(["a", "d/b", "d", "/", "", "caf\udce9", "../x", "d/../e", "x" * 300]) | any_text},
    optional={"mode": st.sampled_from([0o644, 0o755, 0o100644, 0o7777, 0o177777]) | values,
              "mtime": st.sampled_from([0, 1, 1_700_000_000_000_000_000, 2 ** 63 - 1]) | values,
              "target": st.sampled_from(["a", "", "\x00", "../../etc/passwd"]) | values,
              "size": values})


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    body = draw(st.binary(max_size=2000))
    declared = draw(st.sampled_from([len(body), len(body) + 1, max(0, len(body) - 1)]) |
                    st.sampled_from([-1, 2 ** 64, 17 * 1024 * 1024, "3", None, 1.5]))
    return to_line({"data": declared}, True) + body


put_items = st.one_of(
    st.builds(lambda e: to_line({"entry": e}, True), entry_heads),
    frames(),
    st.just(b'{"eof":true}\n'),
    st.just(b'{"end":true}\n'),
    request_lines,
    byte_lines)


names = st.sampled_from(["a", "b", "caf\udce9", "\udcff\udcfe", "é", "\x01", "x" * 255, "sp ace", "new\nline"]) \
    | st.text(st.characters(blacklist_categories=(), blacklist_characters="/\x00"), min_size=1, max_size=12)


@st.composite
def well_formed_puts(draw: st.DrawFn) -> bytes:
    """Entries a client could send (any name, the extremes of mode and mtime),
    so that commits with them land and the readers meet them afterwards."""
    out = b""
    for _ in range(draw(st.integers(1, 5))):
        path = "/".join(draw(st.lists(names, min_size=1, max_size=3)))
        kind = draw(st.sampled_from(["file", "dir", "symlink"]))
        head = {"type": kind, "path": path, "mode": draw(st.sampled_from([0, 0o644, 0o7777, 0o177777])),
                "mtime": draw(st.sampled_from([0, 1, 1_700_000_000_000_000_000, 2 ** 63 - 1]))}
        if kind == "symlink":
            head["target"] = draw(names)
        out += to_line({"entry": head}, True)
        if kind == "file":
            for chunk in draw(st.lists(st.binary(max_size=3000), max_size=3)):
                out += to_line({"data": len(chunk)}, True) + chunk
            out += b'{"eof":true}\n'
    return out + b'{"end":true}\n'


@st.composite
def put_streams(draw: st.DrawFn) -> bytes:
    put_args = draw(st.fixed_dictionaries({"repo": st.just(REPO)},
                                          optional={"dest": st.sampled_from(["/", "d", "caf\udce9"]) | any_text,
                                                    "branch": st.sampled_from(["main", "b"]),
                                                    "message": any_text}))
    out = to_line({"op": "put", "args": put_args}, True)
    if draw(st.booleans()):
        return out + draw(well_formed_puts())
    for item in draw(st.lists(put_items, max_size=12)):
        out += item
    if draw(st.booleans()):
        out += b'{"end":true}\n'
    cut = draw(st.integers(0, len(out)))   # sometimes the client hangs up early
    return out if draw(st.booleans()) else out[:cut]


# -- the daemon --------------------------------------------------------------------------

def exchange(path: str, payload: bytes) -> bytes:
    """Send ``payload``, close our side, return all the daemon sends until it closes."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(60)
        s.connect(path)
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass   # dropped by the daemon: what it sent before is still readable
        data = b""
        try:
            while chunk := s.recv(1 << 20):
                data += chunk
        except ConnectionResetError:
            pass
        return data


def call(path: str, op: str, **args: object) -> dict:
    reply = exchange(path, json.dumps({"op": op, "args": args}).encode() + b"\n")
    return json.loads(reply.splitlines()[0])


def check_alive(daemon) -> None:
    assert daemon.proc.poll() is None, daemon.log()[-3000:]
    assert call(daemon.socket, "ping")["result"]["pid"] == daemon.pid
    assert call(daemon.socket, "repo.list")["ok"]
    call(daemon.socket, "repo.create", name=REPO)   # again, if a fuzzed repo.delete took it


def check_replies(data: bytes) -> None:
    """Whatever came back is JSON lines and data frames; never an internal error."""
    assert b'"code":"internal"' not in data, data[:2000]


def check_log(daemon) -> None:
    log = daemon.log()
    assert "Traceback" not in log, log[-5000:]
    bad = [line for line in log.splitlines()
           if " ERROR " in line or " WARNING " in line or " CRITICAL " in line]
    assert not bad, "\n".join(bad[:20])


@pytest.fixture
def fuzzed(daemon):
    daemon.cli("repo", "create", REPO)
    yield daemon
    assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log()[-3000:]
    report = call(daemon.socket, "fsck", read_data=True)
    assert report["ok"] and report["result"]["ok"], report
    check_log(daemon)


@pytest.mark.allow_warnings  # check_log decides what the log may hold
@FUZZ
@given(payload=st.lists(request_lines | byte_lines, min_size=1, max_size=4).map(b"".join))
def test_random_requests_never_stop_the_daemon(fuzzed, payload: bytes) -> None:
    check_replies(exchange(fuzzed.socket, payload))
    check_alive(fuzzed)


@pytest.mark.allow_warnings
@settings(FUZZ, max_examples=150)
@given(payload=put_streams())
def test_random_put_streams_never_stop_the_daemon(fuzzed, payload: bytes) -> None:
    check_replies(exchange(fuzzed.socket, payload))
    check_alive(fuzzed)
