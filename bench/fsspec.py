#!/usr/bin/env python3
"""fsspec benchmark: a 1 GiB Parquet file (many row groups) on a moto S3
server, read by the Python data stack three ways, each cold, each in a
fresh process:

  trunkfs    trunkfs://raw/data.parquet straight from the store (no daemon;
             storage_options store + s3_endpoint), an empty chunk cache
  mount      the same file through the daemon's FUSE mount (its chunk cache
             emptied and the page cache dropped first)
  s3fs       s3fs (fsspec's S3 filesystem) on the same moto server, the same
             bytes as one object (in a venv of its own: s3fs pins a botocore
             that trunkfs's boto3 does not take)

Two reads each: one column of the file (pyarrow.parquet.read_table with
columns=[...]: the footer, then that column's chunks of every row group),
and the whole file sequentially (8 MiB reads).

  column_read_ratio_s3fs  s3fs's column read time / trunkfs's (target >= 1.0)
  full_read_ratio_s3fs    s3fs's full read time / trunkfs's (target >= 1.0)
  full_read_ratio_mount   the mount's full read time / trunkfs's: trunkfs's
                          speed as a share of the mount's (target >= 0.7)

Needs root (the mount, drop_caches).  Prints a table and, last,
`RESULT key=value ...`.

Usage: python bench/fsspec.py [--mib N] [--columns N] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from benchlib import DaemonProcess, cleanup, drop_caches, log, peak_rss_mib
from fleet import AWS_ENV, s3_daemon_with, start_moto

from tests import s3server

MiB = 1 << 20
S3FS_VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trunkfs-bench" / "s3fs-venv"

COLUMN = """
import sys, time, pyarrow.parquet as pq
{setup}
t = time.perf_counter()
table = pq.read_table({path!r}, columns=["c3"], filesystem=fs)
assert table.num_rows == {rows}
print(time.perf_counter() - t)
"""
FULL = """
import sys, time
{setup}
t = time.perf_counter()
n = 0
with (open({path!r}, "rb", buffering=0) if fs is None else fs.open({path!r}, "rb", block_size=8 << 20)) as f:
    while True:
        data = f.read(8 << 20)
        if not data:
            break
        n += len(data)
assert n == {size}, n
print(time.perf_counter() - t)
"""


def s3fs_python() -> str:
    """A venv with s3fs and pyarrow (made once, kept under ~/.cache)."""
    py = S3FS_VENV / "bin" / "python"
    if not py.exists():
        log(f"making a venv with s3fs and pyarrow at {S3FS_VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(S3FS_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "s3fs", "pyarrow"], check=True,
                       stdout=subprocess.DEVNULL)
    return str(py)


def timed_script(python: str, script: str, env: dict) -> float:
    out = subprocess.run([python, "-c", script], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"reader failed:\n{out.stderr[-3000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def make_parquet(path: Path, mib: int, columns: int) -> int:
    """Random float64 columns, about ``mib`` MiB, 64 row groups; returns the rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = mib * MiB // (8 * columns)
    group = max(1, rows // 64)
    rng = np.random.default_rng(7)
    with pq.ParquetWriter(str(path), pa.schema([(f"c{i}", pa.float64()) for i in range(columns)]),
                          compression="none") as w:
        for start in range(0, rows, group):
            n = min(group, rows - start)
            w.write_table(pa.table({f"c{i}": rng.random(n) for i in range(columns)}), row_group_size=n)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=1024, help="size of the Parquet file")
    ap.add_argument("--columns", type=int, default=16)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/fsspec.py needs root (the mount, drop_caches)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="trunkfs-bench-fsspec-"))
    moto, endpoint = start_moto(tmp)
    d: DaemonProcess | None = None
    env = dict(os.environ, **AWS_ENV)
    try:
        import boto3
        s3 = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench",
                                   region_name="us-east-1").client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="fsspec")
        src = tmp / "data.parquet"
        log(f"writing a {args.mib} MiB Parquet file")
        rows = make_parquet(src, args.mib, args.columns)
        size = src.stat().st_size
        log("uploading it as one object (for s3fs)")
        s3.upload_file(str(src), "fsspec", "plain/data.parquet")
        store = "s3://fsspec/trunkfs"
        d = s3_daemon_with(tmp / "d", store, endpoint, src)
        python = s3fs_python()

        def cold_daemon() -> None:
            assert d is not None
            d.stop()
            shutil.rmtree(d.state / "cache", ignore_errors=True)
            d.start()
            drop_caches()

        direct_setup = textwrap.dedent(f"""
            from trunkfs.datafs.filesystem import TrunkFileSystem
            fs = TrunkFileSystem(store={store!r}, s3_endpoint={endpoint!r})""")
        s3fs_setup = textwrap.dedent(f"""
            import s3fs
            fs = s3fs.S3FileSystem(key="bench", secret="bench", endpoint_url={endpoint!r})""")
        times: dict[str, dict[str, float]] = {"trunkfs": {}, "mount": {}, "s3fs": {}}
        for what, template in (("column", COLUMN), ("full", FULL)):
            client_dir = tmp / f"client-{what}"
            log(f"{what} read: trunkfs:// straight from the store")
            drop_caches()
            times["trunkfs"][what] = timed_script(sys.executable, template.format(
                setup=direct_setup, path="raw/data.parquet", rows=rows, size=size),
                dict(env, TRUNKFS_CLIENT_DIR=str(client_dir)))
            log(f"{what} read: the mount")
            cold_daemon()
            assert d.mount is not None
            times["mount"][what] = timed_script(sys.executable, template.format(
                setup="fs = None", path=str(d.mount / "raw" / "data.parquet"), rows=rows, size=size), env)
            log(f"{what} read: s3fs")
            drop_caches()
            times["s3fs"][what] = timed_script(python, template.format(
                setup=s3fs_setup, path="fsspec/plain/data.parquet", rows=rows, size=size), env)
        rss = peak_rss_mib(d)
    finally:
        if d is not None:
            d.stop()
        s3server._stop(moto)
        cleanup(tmp, args.keep)
    col = times["s3fs"]["column"] / times["trunkfs"]["column"]
    full = times["s3fs"]["full"] / times["trunkfs"]["full"]
    mount = times["mount"]["full"] / times["trunkfs"]["full"]
    print(f"{'reader':<10} {'column s':>9} {'full s':>8} {'full MiB/s':>11}")
    for name, t in times.items():
        print(f"{name:<10} {t['column']:>9.2f} {t['full']:>8.2f} {size / MiB / t['full']:>11.0f}")
    print(f"file {size / MiB:.0f} MiB, {rows} rows, {args.columns} columns, 64 row groups; "
          f"daemon peak RSS (VmHWM, last start) {rss:.0f} MiB")
    print(json.dumps(times))
    print(f"RESULT column_read_ratio_s3fs={col:.2f} full_read_ratio_s3fs={full:.2f} "
          f"full_read_ratio_mount={mount:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
