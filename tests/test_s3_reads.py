"""Reads from an S3 store (moto's server on 127.0.0.1), counted by the
store's own request meter (``trunkfs stats``: requests by operation and
area): a sequential reader makes few large requests, a random reader
fetches little more than it reads, two readers of one file fetch it once,
and ``trunkfs get`` with a full cache fetches nothing."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import threading

MiB = 1 << 20
SIZE = 48 * MiB   # two packs of the default 32 MiB


def pack_gets(d) -> tuple[int, int]:
    """Requests and bytes the daemon read from packs since it started."""
    packs = d.cli("stats", "--json").json().get("requests", {}).get("get", {}).get("areas", {}).get("packs", {})
    return packs.get("requests", 0), packs.get("bytes_in", 0)


def cache(d) -> dict:
    return d.cli("stats", "--json").json()["cache"]


def restart_cold(d) -> None:
    """A restart with an empty chunk cache (and nothing in the page cache of the mount)."""
    d.stop()
    shutil.rmtree(d.state / "cache", ignore_errors=True)
    d.start()


def read_all(path, block: int = MiB) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while data := f.read(block):
            h.update(data)
    return h.digest()


def test_s3_reads_fetch_what_readers_need_in_few_requests(daemon_factory, s3_bucket, workdir):
    endpoint, bucket = s3_bucket
    d = daemon_factory(store_url=f"s3://{bucket}/trunkfs", extra=["--s3-endpoint", endpoint], mount=True)
    d.cli("repo", "create", "r")
    data = random.Random(18).randbytes(SIZE)
    digest = hashlib.sha256(data).digest()
    (workdir / "f.bin").write_bytes(data)
    d.cli("put", "r", str(workdir / "f.bin"))
    (workdir / "f.bin").unlink()
    on_mount = d.mount / "r" / "f.bin"

    # a sequential reader: a few requests of many chunks each, nothing fetched twice
    restart_cold(d)
    assert read_all(on_mount) == digest
    requests, got = pack_gets(d)
    st = cache(d)
    assert st["fetched_bytes"] == SIZE and st["delivered_bytes"] == SIZE
    assert st["prefetched"] > 0.8 * st["fetches"]   # read ahead, not waited for
    assert requests <= 8 and got / requests >= 6 * MiB, (requests, got)

    # a random reader (4 MiB reads, none next to another): no readahead,
    # under twice the bytes it reads fetched
    restart_cold(d)
    rng = random.Random(7)
    slots = rng.sample(range(0, SIZE // (6 * MiB), 2), 4)
    fd = os.open(on_mount, os.O_RDONLY)
    try:
        for slot in slots:
            off = slot * 6 * MiB + rng.randrange(0, 2 * MiB)
            assert os.pread(fd, 4 * MiB, off) == data[off:off + 4 * MiB]
    finally:
        os.close(fd)
    st = cache(d)
    assert st["prefetch_batches"] == 0 and st["prefetched"] == 0
    assert st["fetched_bytes"] < 2 * 4 * 4 * MiB, st

    # two readers of one file at once: each chunk fetched once (single-flight)
    restart_cold(d)
    digests: list[bytes] = []
    readers = [threading.Thread(target=lambda: digests.append(read_all(on_mount, 256 * 1024))) for _ in range(2)]
    for t in readers:
        t.start()
    for t in readers:
        t.join(120)
    assert digests == [digest, digest]
    requests, got = pack_gets(d)
    assert cache(d)["fetched_bytes"] == SIZE and requests <= 10, requests

    # trunkfs get with the chunk cache full: nothing fetched
    before = pack_gets(d)
    d.cli("get", "r:/f.bin", str(workdir / "got.bin"))
    assert hashlib.sha256((workdir / "got.bin").read_bytes()).digest() == digest
    assert pack_gets(d) == before
    assert cache(d)["fetched_bytes"] == SIZE

    # a cold get reads ahead as the mount does: few large requests
    restart_cold(d)
    assert d.cli("cat", "r:/f.bin").stdout == data
    requests, got = pack_gets(d)
    assert got >= SIZE and requests <= 8, requests
    text = d.cli("stats").out
    assert "fetched from the store for" in text and "store get:" in text
