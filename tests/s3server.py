"""Pytest fixtures: a real S3 endpoint (moto's server in a subprocess) and a
fresh bucket per test.

The server is moto's WSGI application behind werkzeug, started by running
this file as a script.  One thing is added: requests are handled one at a
time.  moto checks ``If-Match`` / ``If-None-Match`` and then writes, without
a lock, so on its threaded server two concurrent conditional PUTs can both
succeed (a lost update: a counter incremented 160 times by 8 threads ends at
159 in about a quarter of runs).  Real S3 makes each conditional write
atomic; serializing requests gives moto that property, so that the contract
tests check our compare-and-swap and not moto's race.

Use with ``pytest_plugins = ["tests.s3server"]``.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

HOST = "127.0.0.1"

#: environment for boto3 in the tests: dummy credentials, no user profile
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
AWS_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL",
              "AWS_ENDPOINT_URL_S3", "AWS_REGION")


def _serialized(app: Any) -> Any:
    """Wrap a WSGI app so that only one request runs at a time (see module doc)."""
    lock = threading.Lock()

    def serve_one(environ: dict, start_response: Any) -> list[bytes]:
        with lock:
            result = app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

    return serve_one


def _serve(host: str) -> None:
    """Run moto's S3 on a free port of ``host``; write the port to stdout."""
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = make_server(host, 0, _serialized(DomainDispatcherApplication(create_backend_app)),
                         threaded=True)
    os.environ.setdefault("MOTO_PORT", str(server.server_port))  # as moto.server does
    sys.stdout.write(f"{server.server_port}\n")
    sys.stdout.flush()
    server.serve_forever()  # until SIGTERM


def _wait_for_port(proc: subprocess.Popen, log_path: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            if line.strip().isdigit():
                return int(line)
        if proc.poll() is not None:
            break
    with open(log_path, errors="replace") as f:
        raise RuntimeError(f"moto server did not start (exit code {proc.poll()}):\n{f.read()}")


def _wait_until_answering(endpoint: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(endpoint + "/", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # an HTTP answer, even an error, means it is serving
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    raise RuntimeError(f"moto server at {endpoint} does not answer")


def _stop(proc: subprocess.Popen) -> None:
    """Stop exactly the process we started."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


#: loggers that at DEBUG (the tests' log level) write several lines per
#: request, which slows the S3 tests by a third and buries our own lines
_CHATTY_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """The endpoint URL of a moto S3 server that lives for the test session."""
    with pytest.MonkeyPatch.context() as env, \
            tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log") as log:
        for name, value in AWS_ENV.items():
            env.setenv(name, value)
        for name in AWS_UNSET:
            env.delenv(name, raising=False)
        levels = {name: logging.getLogger(name).level for name in _CHATTY_LOGGERS}
        for name, level in levels.items():
            logging.getLogger(name).setLevel(max(level, logging.INFO))
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), HOST],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=log, text=True)
        try:
            port = _wait_for_port(proc, log.name, timeout=30)
            endpoint = f"http://{HOST}:{port}"
            _wait_until_answering(endpoint, proc, timeout=30)
            yield endpoint
        finally:
            _stop(proc)
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="session")
def _s3_admin(s3_server: str) -> Iterator[Any]:
    """One boto3 client for creating buckets (making a client takes ~0.1 s)."""
    import boto3

    client = boto3.session.Session().client("s3", endpoint_url=s3_server, region_name="us-east-1")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def s3_bucket(s3_server: str, _s3_admin: Any) -> tuple[str, str]:
    """``(endpoint_url, bucket)``: a new, empty bucket on the session's server
    (it goes away with the server)."""
    bucket = f"trunkfs-test-{uuid.uuid4().hex[:16]}"
    _s3_admin.create_bucket(Bucket=bucket)
    return s3_server, bucket


if __name__ == "__main__":
    _serve(sys.argv[1] if len(sys.argv) > 1 else HOST)
