"""Prometheus metrics at ``--http``'s ``/metrics``, scraped from a real
daemon before and after writes, reads, commits and a job: the counters move
by the right amounts.  The listener binds to loopback only."""

from __future__ import annotations

import json
import random
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from trunkfs.daemon.http import parse_listen
from trunkfs.pipelines.jobs import DATUM_BUCKETS
from trunkfs.store.errors import InvalidArgument

from tests.faultproxy import running


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics by (name, sorted labels)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for_jobs(d, n: int) -> list[dict]:
    """Wait until ``n`` jobs exist and none is queued or running."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = d.cli("job", "list", "--json").json()
        if len(jobs) >= n and all(j["state"] not in ("queued", "running") for j in jobs):
            return jobs
        time.sleep(0.2)
    raise AssertionError("the jobs did not finish")


def test_metrics_move_with_reads_writes_commits_and_jobs(daemon_factory, workdir):
    port = free_port()
    d = daemon_factory(extra=["--http", f"127.0.0.1:{port}"], mount=True)
    d.cli("repo", "create", "raw")
    spec = {"name": "count", "input": {"repo": "raw", "glob": "/*"},
            "transform": {"cmd": ["/bin/sh", "-c", 'for f in "$TRUNKFS_INPUT"/*; do '
                                           'wc -c < "$f" > "$TRUNKFS_OUTPUT/$(basename "$f").n"; done']}}
    (workdir / "p.json").write_text(json.dumps(spec))
    d.cli("pipeline", "create", "-f", str(workdir / "p.json"))
    before = scrape(port)
    data = random.Random(17).randbytes(1_000_000)   # does not compress
    (workdir / "f.bin").write_bytes(data)
    d.cli("put", "raw", str(workdir / "f.bin"))
    assert (d.mount / "raw" / "f.bin").read_bytes() == data
    (d.mount / "raw" / "new.txt").write_bytes(b"through the mount\n")
    d.cli("commit", "raw", "-m", "one file")
    jobs = wait_for_jobs(d, 2)   # one for the put's commit, one for the mount's
    assert [j["state"] for j in jobs] == ["succeeded", "succeeded"]
    after = scrape(port)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("trunkfs_socket_requests_total", op="put", code="ok") == 1
    assert moved("trunkfs_socket_requests_total", op="commit", code="ok") == 1
    assert moved("trunkfs_socket_request_seconds_count", op="put") == 1
    assert moved("trunkfs_fuse_operation_seconds_count", op="read") >= 1
    assert moved("trunkfs_fuse_operation_seconds_count", op="write") >= 1
    assert moved("trunkfs_cache_delivered_bytes_total") >= len(data)
    assert moved("trunkfs_store_requests_total", op="put", area="packs") >= 2   # the put and the commit
    assert moved("trunkfs_store_bytes_total", op="put", area="packs", direction="out") >= len(data)
    assert moved("trunkfs_commits_total", repo="raw") == 2
    assert moved("trunkfs_commit_new_bytes_total", repo="raw") >= len(data)
    assert moved("trunkfs_socket_connections_total") >= 3   # put, commit, job list: one each at least
    assert value(after, "trunkfs_jobs", state="succeeded") == 2
    assert moved("trunkfs_datums_total", outcome="processed") == 2   # f.bin, then new.txt
    assert moved("trunkfs_datums_total", outcome="reused") == 1      # f.bin the second time
    # every series the Grafana dashboard draws is one /metrics serves
    dashboard = json.loads((Path(__file__).parent.parent / "docs" / "grafana-dashboard.json").read_text())
    drawn = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"trunkfs_[a-z_]+", target["expr"])}
    served = {name for name, _ in after}
    assert len(drawn) >= 10 and drawn <= served, drawn - served
    # a failed request is counted by its code
    d.cli("ls", "nosuchrepo", check=False)
    assert value(scrape(port), "trunkfs_socket_requests_total", op="ls", code="not_found") == 1
    # the console needs a token (tests/test_console_api.py); nothing else is served
    for path, code in (("/", 401), ("/api/repos", 401), ("/metrics/../etc/passwd", 404), ("/console", 404)):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10)
        assert info.value.code == code, path


def test_ingested_and_stored_bytes_dedup_ratio_and_staged_files(daemon_factory, workdir):
    """The same bytes put into one repo and written through the mount into
    another: ingested twice, stored once; while staged, one staged file."""
    port = free_port()
    d = daemon_factory(extra=["--http", f"127.0.0.1:{port}"], mount=True)
    d.cli("repo", "create", "a")
    d.cli("repo", "create", "b")
    data = random.Random(5).randbytes(3_000_000)   # does not compress: stored about as big
    (workdir / "f.bin").write_bytes(data)
    before = scrape(port)
    assert value(before, "trunkfs_staging_files") == 0
    d.cli("put", "a", str(workdir / "f.bin"))
    (d.mount / "b" / "copy.bin").write_bytes(data)
    (d.mount / "b" / "empty").touch()               # staged, but no bytes to store
    staged = scrape(port)
    d.cli("commit", "b", "-m", "the same bytes again")
    after = scrape(port)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert value(staged, "trunkfs_staging_files") == 1
    assert value(staged, "trunkfs_staging_bytes") == len(data)
    assert value(after, "trunkfs_staging_files") == 0 and value(after, "trunkfs_staging_bytes") == 0
    assert moved("trunkfs_ingest_logical_bytes_total") == 2 * len(data)
    stored = moved("trunkfs_ingest_stored_bytes_total")
    assert len(data) <= stored < len(data) + 64 * 1024, stored     # the chunks once, and small trees
    # every byte stored went through one of the two commits
    assert stored == moved("trunkfs_commit_new_bytes_total", repo="a") + \
        moved("trunkfs_commit_new_bytes_total", repo="b")
    assert moved("trunkfs_commit_new_bytes_total", repo="b") < 64 * 1024   # deduplicated
    ratio = value(after, "trunkfs_ingest_dedup_ratio")
    assert ratio == pytest.approx(value(after, "trunkfs_ingest_logical_bytes_total")
                                  / value(after, "trunkfs_ingest_stored_bytes_total"))
    assert 1.9 < ratio <= 2


def test_datum_duration_histogram_counts_each_datum_that_ran(daemon_factory, workdir):
    port = free_port()
    d = daemon_factory(extra=["--http", f"127.0.0.1:{port}"])
    d.cli("repo", "create", "raw")
    spec = {"name": "slow", "input": {"repo": "raw", "glob": "/*"},
            "transform": {"cmd": ["/bin/sh", "-c", 'sleep 0.2; for f in "$TRUNKFS_INPUT"/*; do '
                                                   'cp "$f" "$TRUNKFS_OUTPUT/"; done']}}
    (workdir / "p.json").write_text(json.dumps(spec))
    d.cli("pipeline", "create", "-f", str(workdir / "p.json"))
    src = workdir / "src"
    src.mkdir()
    n = 4
    for i in range(n):
        (src / f"f{i}").write_bytes(b"datum %d\n" % i)
    before = scrape(port)
    d.cli("put", "raw", *[str(p) for p in sorted(src.iterdir())])
    wait_for_jobs(d, 1)
    first = scrape(port)
    (src / "g").write_bytes(b"one more\n")
    d.cli("put", "raw", str(src / "g"))            # a job of n + 1 datums: n reused, one runs
    jobs = wait_for_jobs(d, 2)
    assert [j["state"] for j in jobs] == ["succeeded", "succeeded"]
    after = scrape(port)

    def moved(a: dict, b: dict, name: str, **labels: str) -> float:
        return value(b, name, **labels) - value(a, name, **labels)

    assert moved(before, first, "trunkfs_datum_duration_seconds_count", pipeline="slow") == n
    assert moved(before, first, "trunkfs_datum_duration_seconds_sum", pipeline="slow") >= n * 0.2
    # the buckets hold them by duration: none took 0.1 s or less, all took less than forever
    assert moved(before, first, "trunkfs_datum_duration_seconds_bucket", pipeline="slow", le="0.1") == 0
    assert moved(before, first, "trunkfs_datum_duration_seconds_bucket", pipeline="slow", le="+Inf") == n
    assert str(DATUM_BUCKETS[-1]) in {dict(labels).get("le") for name, labels in after
                                      if name == "trunkfs_datum_duration_seconds_bucket"}
    assert moved(before, first, "trunkfs_datums_total", outcome="processed") == n
    # a reused datum did not run: only the new one is timed
    assert moved(first, after, "trunkfs_datum_duration_seconds_count", pipeline="slow") == 1
    assert moved(first, after, "trunkfs_datums_total", outcome="reused") == n
    assert moved(first, after, "trunkfs_datums_total", outcome="processed") == 1


def test_store_retries_are_counted(daemon_factory, s3_server, s3_bucket, workdir):
    """A pack upload whose reply the network lost is tried again, and counted."""
    _, bucket = s3_bucket
    port = free_port()
    with running(s3_server) as proxy:
        d = daemon_factory(store_url=f"s3://{bucket}/trunkfs",
                           extra=["--s3-endpoint", proxy.url, "--http", f"127.0.0.1:{port}"])
        d.cli("repo", "create", "r")
        (workdir / "f.bin").write_bytes(random.Random(3).randbytes(100_000))
        before = scrape(port)
        proxy.drop_reply("PUT", "trunkfs/packs/")
        d.cli("put", "r", str(workdir / "f.bin"))
        after = scrape(port)
        assert proxy.dropped == 1
        assert d.cli("cat", "r:/f.bin").stdout == (workdir / "f.bin").read_bytes()
        d.stop()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("trunkfs_store_retries_total", op="put", area="packs") == 1
    # a data pack and a tree pack, one of them twice; its lost reply is an error
    assert moved("trunkfs_store_requests_total", op="put", area="packs") == 3
    assert moved("trunkfs_store_errors_total", op="put", area="packs") == 1
    assert moved("trunkfs_store_retries_total", op="get", area="refs") == 0


def test_http_address_is_checked_at_start(daemon_factory):
    for good in ("127.0.0.1:8300", "[::1]:8300", "localhost:1", "0.0.0.0:8300", "10.1.2.3:80"):
        assert parse_listen(good)[1] in (8300, 1, 80)
    for bad in ("127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999", "x:y", "", "example.org:80"):
        with pytest.raises(InvalidArgument):
            parse_listen(bad)
    d = daemon_factory(start=False, extra=["--http", "127.0.0.1:99999"])
    with pytest.raises(RuntimeError) as info:   # the daemon refuses to start, saying why
        d.start(timeout=30)
    assert "HOST:PORT" in str(info.value)