"""The daemon on an S3 store (moto's server on 127.0.0.1): put, get, the mount,
and an index rebuilt from the bucket alone."""

from __future__ import annotations

import hashlib
import random
import shutil


def test_daemon_and_mount_on_s3(daemon_factory, s3_bucket, workdir):
    endpoint, bucket = s3_bucket
    d = daemon_factory(store_url=f"s3://{bucket}/trunkfs", extra=["--s3-endpoint", endpoint],
                       mount=True)
    d.cli("repo", "create", "r")
    src = workdir / "src"
    (src / "sub").mkdir(parents=True)
    big = random.Random(3).randbytes(6 * 1024 * 1024 + 5)
    (src / "sub" / "big.bin").write_bytes(big)
    (src / "small.txt").write_bytes(b"hello s3\n")
    c1 = d.cli("put", "r", str(src / "sub"), str(src / "small.txt"), "-m", "to s3").out.strip()
    assert d.cli("cat", "r:/small.txt").stdout == b"hello s3\n"
    assert hashlib.sha256(d.cli("cat", f"r@{c1[:8]}:/sub/big.bin").stdout).digest() == \
        hashlib.sha256(big).digest()
    # through the mount, served from the bucket via the chunk cache
    assert (d.mount / "r" / "sub" / "big.bin").read_bytes() == big
    assert (d.mount / f"r@{c1}" / "small.txt").read_bytes() == b"hello s3\n"
    stats = d.cli("stats", "--json").json()
    assert stats["store"] == f"s3://{bucket}/trunkfs"
    assert stats["cache"]["fetched_bytes"] >= len(big)
    assert d.cli("fsck", "--read-data", "--json").json()["ok"]
    # the bucket alone is the source of truth: drop the local state entirely
    d.stop()
    shutil.rmtree(d.state)
    d.start()
    assert d.cli("log", "r", "--json").json()[0]["id"] == c1
    assert (d.mount / "r" / "sub" / "big.bin").read_bytes() == big
    (src / "small.txt").write_bytes(b"second version\n")
    c2 = d.cli("put", "r", str(src / "small.txt")).out.strip()
    assert d.cli("diff", f"r@{c1}", f"r@{c2}", "--json").json()["changes"] == \
        [{"status": "M", "path": "/small.txt"}]
    assert d.cli("fsck", "--read-data", "--json").json()["ok"]
