#!/usr/bin/env python3
"""S3 read benchmark: one random file (1 GiB by default) on a moto S3 server
on 127.0.0.1, read cold and warm by trunkfs and by the tools a user would
try instead, all in one run against the same server:

  raw          boto3 downloading the same bytes as fast as it can: the
               trunkfs pack objects whole (one thread, and 8 threads), and
               in 8 MiB ranged GETs on 8 threads; the best of these is "the
               endpoint's speed".  (Ranged GETs of the file stored as one
               1 GiB object are left out: moto reads the whole object for
               each range, 160 s for the file.)
  mount cold   ``cat`` through the daemon's FUSE mount, after a restart with
               an empty chunk cache and the page cache dropped
  mount warm   the same again, the chunk cache full, the page cache dropped
  get cold     ``trunkfs get`` of the file into a local directory, cold as above
  get warm     the same with the chunk cache full
  rclone       ``rclone mount`` (Debian's rclone) of the file stored as one
               object, cold
  s3fs         s3fs-fuse (Debian's s3fs) of that object, cold

RESULT keys (ratios of speeds; above 1 means trunkfs is faster):

  cold_ratio_raw        the mount's cold read against the best raw download (target >= 0.8)
  get_warm_ratio_mount  ``trunkfs get`` warm against the mount's warm read (target >= 0.8)
  cold_ratio_rclone     the mount's cold read against rclone mount's (target >= 1)
  cold_ratio_s3fs       the mount's cold read against s3fs-fuse's (target >= 1)

and the daemon's peak memory (VmHWM over its last start, which spans every
trunkfs read here) and the store requests the cold mount read made.

Needs root (mounts, drop_caches).  Installs rclone and s3fs with apt-get
when missing.

Usage: python bench/s3read.py [--mib N] [--only trunkfs] [--keep]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import DaemonProcess, cleanup, drop_caches, log, make_random, mounts_under, peak_rss_mib, unmount
from fleet import s3_daemon_with, start_moto

from tests import s3server

MiB = 1 << 20
BUCKET = "s3read"
RANGE = 8 * MiB
THREADS = 8


def ensure_tools() -> None:
    missing = [pkg for pkg, exe in (("rclone", "rclone"), ("s3fs", "s3fs")) if shutil.which(exe) is None]
    if missing:
        log(f"installing {' '.join(missing)} (apt-get)")
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True,
                       stdout=subprocess.DEVNULL, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def timed_cat(path: Path) -> float:
    drop_caches()
    t = time.perf_counter()
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def wait_mounted(mnt: Path, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if str(mnt) in mounts_under(mnt.parent):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode} before mounting")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not mount {mnt} in {timeout} s")


def stop_mount(mnt: Path, proc: subprocess.Popen) -> None:
    if str(mnt) in mounts_under(mnt.parent):
        unmount(mnt)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def raw_reads(s3, size: int) -> dict[str, float]:
    """Seconds for the raw boto3 downloads (see the module's doc)."""
    packs = [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="trunkfs/")
             for o in page.get("Contents", []) if o["Key"].startswith("trunkfs/packs/")]
    pack_keys = [o["Key"] for o in packs]

    def whole(key: str) -> int:
        return len(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    sizes = {o["Key"]: o["Size"] for o in packs}

    def ranged(where: tuple[str, int]) -> int:
        key, start = where
        end = min(sizes[key], start + RANGE) - 1
        return len(s3.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={start}-{end}")["Body"].read())
    out = {}
    t = time.perf_counter()
    got = sum(whole(k) for k in pack_keys)
    out["packs_1thread"] = time.perf_counter() - t
    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        got = sum(pool.map(whole, pack_keys))
    out[f"packs_{THREADS}threads"] = time.perf_counter() - t
    if got < size:
        raise RuntimeError(f"the packs hold {got} bytes, fewer than the file's {size}")
    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        got = sum(pool.map(ranged, [(k, start) for k in pack_keys for start in range(0, sizes[k], RANGE)]))
    out[f"packs_ranged_{RANGE // MiB}MiB_{THREADS}threads"] = time.perf_counter() - t
    assert got == sum(sizes.values()), got
    # the packs hold a little more than the file (headers, an index): time per file byte
    return out


def rclone_read(tmp: Path, endpoint: str) -> float:
    mnt = tmp / "rclone-mnt"
    mnt.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(RCLONE_CONFIG_B_TYPE="s3", RCLONE_CONFIG_B_PROVIDER="Other", RCLONE_CONFIG_B_ENDPOINT=endpoint,
               RCLONE_CONFIG_B_ACCESS_KEY_ID="bench", RCLONE_CONFIG_B_SECRET_ACCESS_KEY="bench",
               RCLONE_CONFIG_B_REGION="us-east-1", RCLONE_CONFIG="/dev/null")
    proc = subprocess.Popen(["rclone", "mount", "--read-only", f"b:{BUCKET}/plain", str(mnt)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "rclone.log", "wb"))
    try:
        wait_mounted(mnt, proc, "rclone mount")
        return timed_cat(mnt / "data.bin")
    finally:
        stop_mount(mnt, proc)


def s3fs_read(tmp: Path, endpoint: str) -> float:
    mnt = tmp / "s3fs-mnt"
    mnt.mkdir()
    passwd = tmp / "s3fs.passwd"
    passwd.write_text("bench:bench\n")
    passwd.chmod(0o600)
    proc = subprocess.Popen(["s3fs", BUCKET, str(mnt), "-f", "-o", f"url={endpoint}", "-o", "use_path_request_style",
                             "-o", f"passwd_file={passwd}", "-o", "ro"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "s3fs.log", "wb"))
    try:
        wait_mounted(mnt, proc, "s3fs")
        return timed_cat(mnt / "plain" / "data.bin")
    finally:
        stop_mount(mnt, proc)


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far by thread name (threads of one name summed)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        name = name.rstrip("0123456789_")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def store_requests(d: DaemonProcess) -> dict:
    stats = json.loads(d.cli("stats", "--json").out)
    return {"requests": stats.get("requests", {}).get("get"), "cache": {k: stats.get("cache", {}).get(k) for k in
                                                             ("fetched_bytes", "delivered_bytes", "fetches", "prefetched", "prefetch_batches", "write_skipped", "entries", "memory_bytes")}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=1024, help="size of the file")
    ap.add_argument("--only", choices=["trunkfs"], help="skip the raw downloads, rclone and s3fs")
    ap.add_argument("--daemon-arg", action="append", default=[], help="one more flag for the daemon")
    ap.add_argument("--profile", metavar="FILE", help="perf record the daemon's cold mount read into FILE")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/s3read.py needs root (mounts, drop_caches)", file=sys.stderr)
        return 2
    if not args.only:
        ensure_tools()
    tmp = Path(tempfile.mkdtemp(prefix="trunkfs-bench-s3read-"))
    moto, endpoint = start_moto(tmp)
    d: DaemonProcess | None = None
    times: dict[str, float] = {}
    try:
        import boto3
        s3 = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench",
                                   region_name="us-east-1").client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket=BUCKET)
        src = tmp / "data.bin"
        size = args.mib * MiB
        log(f"writing a {args.mib} MiB random file")
        make_random(src, size)
        if not args.only:
            log("uploading it as one object (for rclone, s3fs and ranged GETs)")
            s3.upload_file(str(src), BUCKET, "plain/data.bin")
        d = s3_daemon_with(tmp / "d", f"s3://{BUCKET}/trunkfs", endpoint, src, args.daemon_arg)
        assert d.mount is not None
        on_mount = d.mount / "raw" / "data.bin"

        def cold_daemon() -> None:
            assert d is not None
            d.stop()
            shutil.rmtree(d.state / "cache", ignore_errors=True)
            d.start()

        out = tmp / "got"
        out.mkdir()

        def get() -> float:
            assert d is not None
            target = out / "data.bin"
            target.unlink(missing_ok=True)
            drop_caches()
            d.cli("--help")   # the CLI's own start from a cold page cache is not the read
            t = time.perf_counter()
            d.cli("get", "raw:/data.bin", str(target))
            took = time.perf_counter() - t
            if target.stat().st_size != size:
                raise RuntimeError(f"get wrote {target.stat().st_size} bytes, not {size}")
            target.unlink()
            return took

        log("trunkfs get, cold")
        cold_daemon()
        times["get_cold"] = get()
        log("trunkfs get, warm")
        times["get_warm"] = get()
        log("mount read, cold")
        cold_daemon()
        spy = None
        if args.profile:   # perf: where the daemon's CPU goes, kernel included
            spy = subprocess.Popen(["perf", "record", "-F", "499", "-g", "-o", args.profile, "-p", str(d.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        cpu, by_thread, moto_cpu = cpu_seconds(d.pid), thread_cpu(d.pid), cpu_seconds(moto.pid)
        times["mount_cold"] = timed_cat(on_mount)
        cold_cpu = cpu_seconds(d.pid) - cpu
        moto_cpu = cpu_seconds(moto.pid) - moto_cpu
        after = thread_cpu(d.pid)
        log("daemon CPU by thread in the cold mount read: " + ", ".join(
            f"{k} {v - by_thread.get(k, 0):.2f}" for k, v in sorted(after.items()) if v - by_thread.get(k, 0) >= 0.01))
        if spy is not None:
            spy.send_signal(2)
            spy.wait()
        requests = store_requests(d)
        log("mount read, warm")
        times["mount_warm"] = timed_cat(on_mount)
        rss = peak_rss_mib(d)
        d.stop()
        d = None
        if not args.only:
            log("raw boto3 downloads")
            raws = raw_reads(s3, size)
            times.update({f"raw_{k}": v for k, v in raws.items()})
            log("rclone mount, cold")
            times["rclone_cold"] = rclone_read(tmp, endpoint)
            log("s3fs-fuse, cold")
            times["s3fs_cold"] = s3fs_read(tmp, endpoint)
    finally:
        if d is not None:
            d.stop()
        s3server._stop(moto)
        cleanup(tmp, args.keep)
    print(f"{'read':<28} {'s':>7} {'MiB/s':>8}")
    for name, t in times.items():
        print(f"{name:<28} {t:>7.2f} {args.mib / t:>8.0f}")
    print(f"daemon peak RSS (VmHWM over its last start: cold and warm mount reads) {rss:.0f} MiB")
    print(f"store traffic of the cold mount read: {json.dumps(requests)}; daemon CPU {cold_cpu:.2f} s, "
          f"moto's {moto_cpu:.2f} s, in {times['mount_cold']:.2f} s")
    result = {"get_warm_ratio_mount": times["mount_warm"] / times["get_warm"],
              "daemon_peak_rss_mib": rss}
    if not args.only:
        best = min(v for k, v in times.items() if k.startswith("raw_"))
        result.update(cold_ratio_raw=best / times["mount_cold"],
                      cold_ratio_rclone=times["rclone_cold"] / times["mount_cold"],
                      cold_ratio_s3fs=times["s3fs_cold"] / times["mount_cold"])
    else:
        result["mount_cold_mib_s"] = args.mib / times["mount_cold"]
    print("RESULT " + " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
