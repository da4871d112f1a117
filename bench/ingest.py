#!/usr/bin/env python3
"""Ingest benchmark for trunkfs, against restic and cp in the same run.

It makes its own data under one temporary directory, runs every peer on the
same data in the same run, prints a table to stdout and, as the very last
line, ``RESULT key=value ...``.  Progress goes to stderr.

Keys (``--only`` takes any of them, comma separated, or the group names
``ingest``, ``dedup``, ``all``):

  ingest_mbps, restic_mbps, cp_mbps
      ``trunkfs put`` / ``restic backup`` / ``cp -r`` of the same 1 GiB of
      random (incompressible) data in files of 1-100 MiB, each into a fresh
      store / repo / directory.  The source is pre-read so that all three read
      it from the page cache; each timing ends with a ``sync``.
      MB/s = bytes / 1e6 / seconds.
  dedup_ratio, restic_dedup_ratio
      Five versions of one dataset (a ~600 MiB numeric CSV growing 5% per
      version by appended rows; 400 random files of 100 KiB of which 20 are
      rewritten per version; a 200 MiB random file with 16 bytes overwritten
      in the middle per version; all seeded, so the figures repeat run to
      run), each version put as a new commit (restic:
      a new snapshot of the same directory).  Ratio = sum of the dataset's
      size at each version / bytes of all files under the store (repo)
      directory.  trunkfs's own ``stats --json`` figure is printed too.
  files_per_s
      One ``put`` of 20,000 files of 1-4 KiB in 100 directories (incl. sync).
  small_commit_s
      Into a repo of 100,000 files of ~100 bytes (100 dirs x 1,000 files, put
      untimed), the wall time of ``trunkfs put`` of one changed file; the
      median of 3.
  put_rss_mib
      Peak RSS (VmHWM) of a freshly started daemon over one put of a 4 GiB
      random file.
  zstd
      Table only: zstd levels 1, 3 and 6 on 64 MiB of the numeric CSV in
      1 MiB pieces (MB/s of one core, ratio), the figures behind the default
      compression level.

Usage:
  python bench/ingest.py                 # the full run (~10 min, ~9 GB disk at peak)
  python bench/ingest.py --quick         # every size /16, a smoke test
  python bench/ingest.py --only ingest_mbps,restic_mbps --quick
  python bench/ingest.py --workdir /mnt/disk   # temp dir made inside it

Only the standard library and ``zstandard`` are used; restic is installed
with apt-get when it is missing.  The temporary directory is removed at the
end, also on error or Ctrl-C (``--keep`` keeps it for debugging), and every
daemon the script started is stopped by its pid.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchlib import TRUNKFS, DaemonProcess

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

INGEST_KEYS = ["ingest_mbps", "restic_mbps", "cp_mbps"]
DEDUP_KEYS = ["dedup_ratio", "restic_dedup_ratio"]
RESULT_KEYS = INGEST_KEYS + DEDUP_KEYS + ["files_per_s", "small_commit_s", "put_rss_mib"]
ALL_KEYS = RESULT_KEYS + ["zstd"]
GROUPS = {"ingest": INGEST_KEYS, "dedup": DEDUP_KEYS, "all": ALL_KEYS}
ZSTD_LEVELS = (1, 3, 6)

REPO_ROOT = Path(__file__).resolve().parent.parent
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class BenchError(Exception):
    pass


# -- sizes --------------------------------------------------------------------

class Sizes:
    """Every size of the benchmark; ``--quick`` divides them by 16."""

    def __init__(self, quick: bool) -> None:
        s = 16 if quick else 1
        self.scale = s
        self.ingest_total = GiB // s
        self.ingest_min, self.ingest_max = MiB // s, 100 * MiB // s
        self.versions = 5
        self.csv_v1 = 600 * MiB // s
        self.csv_growth = 0.05
        self.small_n, self.small_size, self.small_rewrite = 400, 100 * KiB // s, 20
        self.big_size = 200 * MiB // s
        self.many_files, self.many_dirs = 20_000 // s, 100
        self.many_min, self.many_max = 1 * KiB, 4 * KiB
        self.tree_files, self.tree_dirs = 100_000 // s, 100
        self.rss_file = 4 * GiB // s
        self.zstd_bytes = 64 * MiB // s

    def disk_needed(self, keys: set[str]) -> int:
        """Peak bytes on disk: each section removes its data when it ends."""
        need = [0]
        if keys & set(INGEST_KEYS):
            need.append(int(self.ingest_total * 2.2))
        if keys & set(DEDUP_KEYS):
            csv_last = self.csv_v1 * (1 + self.csv_growth) ** (self.versions - 1)
            ds = csv_last + self.small_n * self.small_size + self.big_size
            need.append(int(ds * 2.5))
        if "files_per_s" in keys:
            need.append(self.many_files * 8 * KiB * 2)
        if "small_commit_s" in keys:
            need.append(self.tree_files * 4 * KiB * 2)
        if "put_rss_mib" in keys:
            need.append(int(self.rss_file * 2.1))
        return max(need) + 256 * MiB


# -- data generators ----------------------------------------------------------

BLOCK = 8 * MiB  # os.urandom block size


def write_random_file(path: Path, size: int, rng: random.Random | None = None) -> None:
    """``size`` random bytes, written in 8 MiB blocks (never all in memory).

    With ``rng`` the bytes are seeded (reproducible run to run), else os.urandom.
    """
    gen = rng.randbytes if rng is not None else os.urandom
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(BLOCK, left)
            f.write(gen(n))
            left -= n


class CsvGen:
    """A seeded numeric CSV: rows of four random floats, fixed width.

    Rows are made 4 MiB at a time at C speed: seeded random bytes are mapped
    to digits with ``bytes.translate`` and the separators are dropped in with
    extended-slice assignment.  No two rows repeat, so there is no hidden
    duplication for chunk dedup or for zstd to find; every digit is random,
    so it compresses about 2.1x like real random floats.
    """

    HEADER = b"p,x,y,n\n"
    TEMPLATE = b"0.DDDDDDDDDDDDDDDD,DD.DDDDDD,DDD.DDD,DDDDDD\n"
    DIGITS = bytes(0x30 + i % 10 for i in range(256))
    ROW = len(TEMPLATE)
    BLOCK_ROWS = (4 * MiB) // len(TEMPLATE)

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fixed = [(p, bytes((c,))) for p, c in enumerate(self.TEMPLATE) if c != ord("D")]

    def rows(self, nrows: int) -> bytearray:
        buf = bytearray(self.rng.randbytes(nrows * self.ROW).translate(self.DIGITS))
        for pos, ch in self.fixed:
            buf[pos::self.ROW] = ch * nrows
        return buf

    def data(self, nbytes: int) -> bytes:
        """At least ``nbytes`` of whole rows (with the header), in memory."""
        parts = [self.HEADER]
        have = len(self.HEADER)
        while have < nbytes:
            n = min(self.BLOCK_ROWS, -(-(nbytes - have) // self.ROW))
            parts.append(self.rows(n))
            have += n * self.ROW
        return b"".join(parts)

    def grow_file(self, path: Path, target: int) -> None:
        """Append whole rows to ``path`` (made with a header) until >= target."""
        have = path.stat().st_size if path.exists() else 0
        with open(path, "ab") as f:
            if have == 0:
                f.write(self.HEADER)
                have = len(self.HEADER)
            while have < target:
                n = min(self.BLOCK_ROWS, -(-(target - have) // self.ROW))
                f.write(self.rows(n))
                have += n * self.ROW


def tree_size(path: Path) -> tuple[int, int]:
    """(bytes, files) of the regular files under ``path`` (apparent sizes)."""
    total = files = 0
    stack = [str(path)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    total += e.stat(follow_symlinks=False).st_size
                    files += 1
    return total, files


def preread(path: Path) -> None:
    """Read every file under ``path`` so that it sits in the page cache."""
    buf = bytearray(16 * MiB)
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            with open(os.path.join(dirpath, name), "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# -- subprocesses -------------------------------------------------------------

def run(cmd: list[str], *, env: dict | None = None, timeout: float = 3600,
        what: str | None = None) -> str:
    p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-8:]
        raise BenchError(f"{what or cmd[0]}: `{' '.join(cmd[:4])} ...` exited {p.returncode}: "
                         + " | ".join(tail))
    return p.stdout


def timed(fn) -> float:
    """Seconds of ``fn()`` plus a final sync; earlier dirty data is synced first."""
    os.sync()
    t = time.perf_counter()
    fn()
    os.sync()
    return time.perf_counter() - t


class Daemon(DaemonProcess):
    """The test suite's daemon harness (tests/harness.py) with a fresh store,
    state dir and socket, plus this bench's bookkeeping and errors."""

    def __init__(self, bench: "Bench", name: str) -> None:
        base = bench.work / f"tfs-{name}"
        super().__init__(base, (base / "store").as_uri(),
                         socket_path=str(bench.sockdir / f"{name}.sock"))
        self.bench = bench
        self.name = name

    def start(self, timeout: float = 60) -> "Daemon":
        try:
            super().start(timeout)
        except RuntimeError as exc:
            raise BenchError(f"daemon {self.name}: {str(exc)[-600:]}") from None
        self.bench.daemons.append(self)
        log(f"daemon {self.name}: started pid {self.pid}")
        return self

    def run_cli(self, *args: str, timeout: float = 3600) -> str:
        res = self.cli(*args, check=False, timeout=timeout)
        if res.returncode != 0:
            raise BenchError(f"trunkfs {args[0]} exited {res.returncode}: "
                             + " | ".join(res.err.strip().splitlines()[-6:]))
        return res.out

    def put_cmd(self, *args: str) -> list[str]:
        return [*TRUNKFS, "put", *args]

    def stats(self) -> dict:
        return json.loads(self.run_cli("stats", "--json"))

    def stop(self, timeout: float = 60) -> int:
        rc = super().stop(timeout)
        # -SIGTERM / -SIGINT count as clean too (a daemon without a handler)
        if rc not in (0, -signal.SIGTERM, -signal.SIGINT):
            log(f"daemon {self.name}: exited {rc}: {' | '.join(self.log().strip().splitlines()[-4:])}")
        else:
            log(f"daemon {self.name}: stopped")
        return rc


class Restic:
    def __init__(self, bench: "Bench", name: str) -> None:
        self.bench = bench
        self.repo = bench.work / f"restic-{name}"
        self.env = dict(os.environ, RESTIC_PASSWORD="trunkfs-bench")
        self.env.pop("RESTIC_REPOSITORY", None)
        self.env.pop("RESTIC_PASSWORD_FILE", None)
        self.env.pop("RESTIC_COMPRESSION", None)  # restic's default: auto

    def _cmd(self, *args: str) -> list[str]:
        return [self.bench.restic, *args, "--repo", str(self.repo),
                "--cache-dir", str(self.bench.work / "restic-cache")]

    def init(self) -> "Restic":
        run(self._cmd("init", "-q"), env=self.env, what="restic init")
        return self

    def backup_cmd(self, path: Path) -> list[str]:
        extra = ["--no-scan"] if self.bench.restic_no_scan else []
        return self._cmd("backup", "-q", *extra, str(path))

    def backup(self, path: Path) -> None:
        run(self.backup_cmd(path), env=self.env, what="restic backup")


# -- the benchmark ------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace, keys: set[str], work: Path, sockdir: Path) -> None:
        self.args = args
        self.keys = keys
        self.sz = Sizes(args.quick)
        self.work = work
        self.sockdir = sockdir
        self.daemons: list[Daemon] = []
        self.results: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.notes: dict[str, str] = {}
        self.extra_rows: list[tuple[str, str, str, str, str]] = []
        self.zstd_rows: list[tuple[int, float, float]] = []
        self.load_start = os.getloadavg()[0]
        self.restic: str | None = None
        self.restic_version = ""
        self.restic_no_scan = False

    def want(self, *keys: str) -> bool:
        return any(k in self.keys for k in keys)

    # restic ------------------------------------------------------------------

    def ensure_restic(self) -> None:
        if self.restic:
            return
        path = shutil.which("restic")
        if path is None:
            log("restic not found: apt-get install -y restic")
            subprocess.run(["apt-get", "install", "-y", "restic"], check=True,
                           stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            path = shutil.which("restic")
            if path is None:
                raise BenchError("restic is not installed and apt-get did not install it")
        self.restic = path
        self.restic_version = run([path, "version"]).split(" compiled")[0].strip()
        helptext = run([path, "backup", "--help"])
        self.restic_no_scan = "--no-scan" in helptext
        if not self.restic_no_scan:
            log(f"{self.restic_version} has no `backup --no-scan` (added in 0.15); running without it")

    # sections ----------------------------------------------------------------

    def section(self, keys: list[str], fn) -> None:
        keys = [k for k in keys if k in self.keys]
        if not keys:
            return
        try:
            fn(keys)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one failed section does not stop the others
            msg = str(e) if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
            log(f"FAILED {','.join(keys)}: {msg}")
            if not isinstance(e, BenchError):
                traceback.print_exc(file=sys.stderr)
            for k in keys:
                if k not in self.results:
                    self.errors[k] = msg
        finally:
            for d in list(self.daemons):
                d.stop()
                self.daemons.remove(d)

    def ingest(self, keys: list[str]) -> None:
        sz = self.sz
        src = self.work / "ingest" / "src"
        src.mkdir(parents=True)
        rng = random.Random(1)
        sizes: list[int] = []
        left = sz.ingest_total
        while left > 0:
            n = rng.randint(sz.ingest_min, sz.ingest_max)
            if left - n < sz.ingest_min:
                n = left
            sizes.append(n)
            left -= n
        log(f"ingest: writing {human(sz.ingest_total)} of random data in {len(sizes)} files")
        for i, n in enumerate(sizes):
            write_random_file(src / f"part{i:03d}.bin", n)
        total = sum(sizes)
        desc = f"{human(total)} in {len(sizes)} files"
        os.sync()

        if "cp_mbps" in keys:
            preread(src)
            dst = self.work / "ingest" / "cp-dst"
            log("ingest: cp -r")
            t = timed(lambda: run(["cp", "-r", str(src), str(dst)], what="cp"))
            got = tree_size(dst)[0]
            if got != total:
                raise BenchError(f"cp copied {got} bytes, expected {total}")
            self.results["cp_mbps"] = total / 1e6 / t
            self.notes["cp_mbps"] = f"{desc}, {t:.2f} s (cp -r + sync)"
            rmtree(dst)

        if "restic_mbps" in keys:
            self.ensure_restic()
            r = Restic(self, "ingest").init()
            preread(src)
            log("ingest: restic backup")
            t = timed(lambda: r.backup(src))
            stored = tree_size(r.repo)[0]
            self.results["restic_mbps"] = total / 1e6 / t
            self.notes["restic_mbps"] = (f"{t:.2f} s (backup + sync), repo {human(stored)}, "
                                         f"{self.restic_version}")
            rmtree(r.repo)

        if "ingest_mbps" in keys:
            d = Daemon(self, "ingest").start()
            d.run_cli("repo", "create", "ingest")
            preread(src)
            log("ingest: trunkfs put")
            t = timed(lambda: d.run_cli("put", "ingest", str(src), "-m", "ingest"))
            st = d.stats()
            d.stop()
            stored = tree_size(d.store_dir)[0]
            self.results["ingest_mbps"] = total / 1e6 / t
            self.notes["ingest_mbps"] = f"{desc}, {t:.2f} s (put + sync), store {human(stored)}"
            if st.get("logical_bytes") != total:
                self.notes["ingest_mbps"] += f"; WARNING stats logical_bytes={st.get('logical_bytes')}"
            rmtree(d.base)
        rmtree(self.work / "ingest")

    def dedup(self, keys: list[str]) -> None:
        sz = self.sz
        root = self.work / "dedup"
        ds = root / "dataset"
        ds.mkdir(parents=True)
        rng = random.Random(2)
        csv = CsvGen(3)
        csv_path = ds / "table.csv"
        big = ds / "big.bin"
        small_dir = ds / "small"
        small_dir.mkdir()
        d = r = None
        if "dedup_ratio" in keys:
            d = Daemon(self, "dedup").start()
            d.run_cli("repo", "create", "dedup")
        if "restic_dedup_ratio" in keys:
            self.ensure_restic()
            r = Restic(self, "dedup").init()

        logical = 0
        t_put = t_restic = 0.0
        csv_target = sz.csv_v1
        for v in range(1, sz.versions + 1):
            log(f"dedup: making version {v}")
            if v == 1:
                csv.grow_file(csv_path, csv_target)
                for i in range(sz.small_n):
                    (small_dir / f"s{i:03d}.bin").write_bytes(rng.randbytes(sz.small_size))
                write_random_file(big, sz.big_size, rng)
            else:
                csv_target = int(csv_path.stat().st_size * (1 + sz.csv_growth))
                csv.grow_file(csv_path, csv_target)
                for i in rng.sample(range(sz.small_n), sz.small_rewrite):
                    (small_dir / f"s{i:03d}.bin").write_bytes(rng.randbytes(sz.small_size))
                with open(big, "r+b") as f:
                    f.seek(sz.big_size // 2)
                    f.write(rng.randbytes(16))
            size = tree_size(ds)[0]
            logical += size
            if d is not None:
                log(f"dedup: trunkfs put version {v} ({human(size)})")
                t_put += timed(lambda: d.run_cli("put", "dedup", str(ds), "-m", f"version {v}"))
            if r is not None:
                log(f"dedup: restic backup version {v}")
                t_restic += timed(lambda: r.backup(ds))

        vdesc = f"{sz.versions} versions, {human(logical)} logical"
        if d is not None:
            st = d.stats()
            d.stop()
            stored = tree_size(d.store_dir)[0]
            self.results["dedup_ratio"] = logical / stored
            self.notes["dedup_ratio"] = (f"{vdesc} / {human(stored)} store dir; "
                                         f"puts {t_put:.1f} s")
            sratio = st.get("dedup_ratio")
            self.extra_rows.append((
                "  trunkfs stats --json",
                f"{sratio:.3f}" if isinstance(sratio, (int, float)) else str(sratio), "", "",
                f"its dedup_ratio; logical_bytes {human(st.get('logical_bytes', 0))}, "
                f"stored_bytes {human(st.get('stored_bytes', 0))}, chunks {st.get('chunks')}, "
                f"packs {st.get('packs')}"))
            rmtree(d.base)
        if r is not None:
            stored = tree_size(r.repo)[0]
            self.results["restic_dedup_ratio"] = logical / stored
            self.notes["restic_dedup_ratio"] = (f"{vdesc} / {human(stored)} repo dir; "
                                                f"backups {t_restic:.1f} s")
            rmtree(r.repo)
        rmtree(root)

    def files(self, keys: list[str]) -> None:
        sz = self.sz
        top = self.work / "files" / "many"
        pool = os.urandom(16 * MiB)
        rng = random.Random(4)
        per_dir = -(-sz.many_files // sz.many_dirs)
        n = total = 0
        log(f"files: writing {sz.many_files} files of 1-4 KiB")
        for di in range(sz.many_dirs):
            sub = top / f"d{di:03d}"
            sub.mkdir(parents=True)
            for fi in range(per_dir):
                if n == sz.many_files:
                    break
                size = rng.randint(sz.many_min, sz.many_max)
                off = rng.randrange(len(pool) - size)
                (sub / f"f{fi:04d}.bin").write_bytes(pool[off:off + size])
                n += 1
                total += size
        d = Daemon(self, "files").start()
        d.run_cli("repo", "create", "files")
        preread(top)
        log("files: trunkfs put")
        t = timed(lambda: d.run_cli("put", "files", str(top), "-m", "many files"))
        self.results["files_per_s"] = n / t
        self.notes["files_per_s"] = (f"{n} files ({human(total)}) in {sz.many_dirs} dirs, "
                                     f"{t:.2f} s (put + sync)")
        d.stop()
        rmtree(d.base)
        rmtree(self.work / "files")

    def small_commit(self, keys: list[str]) -> None:
        sz = self.sz
        top = self.work / "small" / "tree"
        rng = random.Random(5)
        per_dir = sz.tree_files // sz.tree_dirs
        log(f"small_commit: writing {sz.tree_dirs} x {per_dir} files of ~100 bytes")
        for di in range(sz.tree_dirs):
            sub = top / f"d{di:03d}"
            sub.mkdir(parents=True)
            for fi in range(per_dir):
                body = f"{di},{fi},{rng.random():.17f},{rng.getrandbits(200):x}\n"
                (sub / f"f{fi:04d}.txt").write_text(body.ljust(100, "."))
        d = Daemon(self, "small").start()
        d.run_cli("repo", "create", "small")
        log(f"small_commit: setup put of {sz.tree_dirs * per_dir} files (untimed)")
        t0 = time.perf_counter()
        d.run_cli("put", "small", str(top), "-m", "setup")
        t_setup = time.perf_counter() - t0
        times = []
        for k in range(3):
            di, fi = rng.randrange(sz.tree_dirs), rng.randrange(per_dir)
            path = top / f"d{di:03d}" / f"f{fi:04d}.txt"
            path.write_text(f"changed {k} {rng.random()}\n".ljust(100, "#"))
            cmd = d.put_cmd(f"small:/tree/d{di:03d}", str(path), "-m", f"change {k}")
            t = time.perf_counter()
            run(cmd, env=d.env, what="trunkfs put")
            times.append(time.perf_counter() - t)
            log(f"small_commit: put of one changed file {times[-1]:.3f} s")
        # the change must have landed in place, not next to the tree
        got = d.run_cli("cat", f"small:/tree/d{di:03d}/{path.name}")
        if got != path.read_text():
            raise BenchError(f"small:/tree/d{di:03d}/{path.name} does not hold the changed "
                             "content after the put")
        self.results["small_commit_s"] = statistics.median(times)
        self.notes["small_commit_s"] = (f"into {sz.tree_dirs * per_dir} files; runs "
                                        + ", ".join(f"{x:.3f}" for x in times)
                                        + f" s; setup put {t_setup:.1f} s")
        d.stop()
        rmtree(d.base)
        rmtree(self.work / "small")

    def rss(self, keys: list[str]) -> None:
        sz = self.sz
        top = self.work / "rss"
        top.mkdir()
        big = top / "big.bin"
        log(f"put_rss: writing a {human(sz.rss_file)} random file")
        write_random_file(big, sz.rss_file)
        os.sync()
        d = Daemon(self, "rss").start()
        d.run_cli("repo", "create", "rss")
        base_hwm = d.vm_kib("VmHWM")
        log("put_rss: trunkfs put")
        t = time.perf_counter()
        d.run_cli("put", "rss", str(big), "-m", "one big file")
        t = time.perf_counter() - t
        hwm = d.vm_kib("VmHWM")
        rss_after = d.vm_kib("VmRSS")
        self.results["put_rss_mib"] = hwm / 1024
        self.notes["put_rss_mib"] = (f"{human(sz.rss_file)} file in {t:.1f} s "
                                     f"({sz.rss_file / 1e6 / t:.0f} MB/s); "
                                     f"VmHWM {base_hwm / 1024:.0f} MiB before the put, "
                                     f"VmRSS {rss_after / 1024:.0f} MiB after")
        d.stop()
        rmtree(d.base)
        rmtree(top)

    def zstd(self, keys: list[str]) -> None:
        try:
            import zstandard
        except ImportError as e:
            raise BenchError("python `zstandard` is not installed") from e
        data = CsvGen(6).data(self.sz.zstd_bytes)[: self.sz.zstd_bytes]
        pieces = [data[i:i + MiB] for i in range(0, len(data), MiB)]
        log(f"zstd: levels {ZSTD_LEVELS} on {human(len(data))} of CSV in 1 MiB pieces")
        for level in ZSTD_LEVELS:
            c = zstandard.ZstdCompressor(level=level)
            t = time.perf_counter()
            out = sum(len(c.compress(p)) for p in pieces)
            t = time.perf_counter() - t
            self.zstd_rows.append((level, len(data) / 1e6 / t, len(data) / out))
        self.results["zstd"] = 1.0

    def run_all(self) -> None:
        self.section(["zstd"], self.zstd)
        self.section(INGEST_KEYS, self.ingest)
        self.section(DEDUP_KEYS, self.dedup)
        self.section(["files_per_s"], self.files)
        self.section(["small_commit_s"], self.small_commit)
        self.section(["put_rss_mib"], self.rss)

    # report ------------------------------------------------------------------

    def report(self) -> bool:
        R = self.results
        ok_all = True

        def fmt(key: str) -> str:
            if key in self.errors or key not in R:
                return "nan"
            v = R[key]
            if key == "small_commit_s":
                return f"{v:.3f}"
            if key in ("dedup_ratio", "restic_dedup_ratio"):
                return f"{v:.3f}"
            if key == "files_per_s":
                return f"{v:.0f}"
            return f"{v:.1f}"

        units = {"ingest_mbps": "MB/s", "restic_mbps": "MB/s", "cp_mbps": "MB/s",
                 "dedup_ratio": "x", "restic_dedup_ratio": "x", "files_per_s": "files/s",
                 "small_commit_s": "s", "put_rss_mib": "MiB"}

        def target(key: str) -> tuple[str, bool | None]:
            v = R.get(key)
            if key == "ingest_mbps":
                ref = R.get("restic_mbps")
                if ref is None:
                    return ">= 1.5 x restic_mbps", None
                return f">= 1.5 x restic = {1.5 * ref:.1f}", None if v is None else v >= 1.5 * ref
            if key == "dedup_ratio":
                ref = R.get("restic_dedup_ratio")
                if ref is None:
                    return ">= 0.9 x restic_dedup_ratio", None
                return f">= 0.9 x restic = {0.9 * ref:.3f}", None if v is None else v >= 0.9 * ref
            if key == "files_per_s":
                return ">= 2000", None if v is None else v >= 2000
            if key == "small_commit_s":
                return "< 1", None if v is None else v < 1
            if key == "put_rss_mib":
                return "< 300", None if v is None else v < 300
            return "", None

        rows = [("key", "value", "target", "met", "notes")]
        for key in RESULT_KEYS:
            if key not in self.keys:
                continue
            tgt, met = target(key)
            if key in self.errors:
                rows.append((key, "FAILED", tgt, "-", self.errors[key][:300]))
                ok_all = False
                continue
            if met is False:
                ok_all = False
            rows.append((key, f"{fmt(key)} {units[key]}", tgt,
                         {True: "yes", False: "NO", None: "-"}[met], self.notes.get(key, "")))
            if key == "dedup_ratio":
                rows.extend(r for r in self.extra_rows if r[0].startswith("  trunkfs stats"))
        if "zstd" in self.keys:
            if "zstd" in self.errors:
                rows.append(("zstd", "FAILED", "", "-", self.errors["zstd"]))
            for level, mbps, ratio in self.zstd_rows:
                rows.append((f"zstd level {level}", f"{mbps:.0f} MB/s", "", "",
                             f"ratio {ratio:.3f} on {human(self.sz.zstd_bytes)} numeric CSV, "
                             f"1 MiB pieces, one core"))

        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        mode = "QUICK (every size /16; targets are for the full run)" if self.args.quick else "full"
        print(f"trunkfs ingest benchmark - {mode}")
        print(f"workdir {self.work} ({os.cpu_count()} CPUs, load average {self.load_start:.2f} "
              f"at start, {os.getloadavg()[0]:.2f} at end); trunkfs: {' '.join(TRUNKFS)}; "
              f"restic: {self.restic_version or 'not run'}")
        if max(self.load_start, os.getloadavg()[0]) > 0.5 * (os.cpu_count() or 1):
            print("WARNING: the machine was busy with other work; the speed figures are skewed")
        for i, r in enumerate(rows):
            print("  ".join(c.ljust(widths[j]) for j, c in enumerate(r[:4])) + "  " + r[4])
            if i == 0:
                print("  ".join("-" * w for w in widths) + "  " + "-" * 5)
        if self.want(*INGEST_KEYS):
            print("note: ingest sources were pre-read, so cp, restic and trunkfs all read them "
                  "from the page cache; each timing ends with a sync (and starts after one).")
        if self.want(*DEDUP_KEYS):
            print("note: dedup ratio = logical bytes of all versions / apparent size of all files "
                  "under the store (restic: repo) directory; restic compression: auto (default).")
            print("note: the dedup dataset is seeded, but restic draws a random chunker "
                  "polynomial per repo, so restic_dedup_ratio varies run to run (most in --quick).")
        if self.restic and not self.restic_no_scan:
            print(f"note: {self.restic_version} has no `backup --no-scan`; ran without it.")
        print("RESULT " + " ".join(f"{k}={fmt(k)}" for k in RESULT_KEYS if k in self.keys))
        sys.stdout.flush()
        return ok_all and not self.errors


def default_workdir_parent() -> Path:
    """A temp dir on the same file system as the checkout (never a tmpfs elsewhere)."""
    dev = REPO_ROOT.stat().st_dev
    for cand in (os.environ.get("TMPDIR"), "/var/tmp", "/tmp"):
        if cand and os.path.isdir(cand) and os.access(cand, os.W_OK) and os.stat(cand).st_dev == dev:
            return Path(cand)
    return REPO_ROOT.parent


def parse_keys(spec: str | None) -> set[str]:
    if not spec:
        return set(ALL_KEYS)
    keys: set[str] = set()
    for k in (x.strip() for x in spec.split(",")):
        if not k:
            continue
        if k in GROUPS:
            keys.update(GROUPS[k])
        elif k in ALL_KEYS:
            keys.add(k)
        else:
            raise SystemExit(f"--only: unknown key {k!r}; keys: {', '.join(ALL_KEYS)}; "
                             f"groups: {', '.join(GROUPS)}")
    return keys


def main() -> int:
    ap = argparse.ArgumentParser(
        description="trunkfs ingest benchmark (against restic and cp, in the same run)",
        epilog="keys: " + ", ".join(ALL_KEYS) + "; groups: " + ", ".join(GROUPS))
    ap.add_argument("--quick", action="store_true",
                    help="divide every size by 16 (a smoke test, well under a minute)")
    ap.add_argument("--only", metavar="KEY[,KEY]", help="run only these keys or groups")
    ap.add_argument("--workdir", metavar="DIR", type=Path,
                    help="make the temporary directory inside DIR (default: a temp dir on the "
                         "same file system as the checkout)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (debugging)")
    args = ap.parse_args()
    keys = parse_keys(args.only)

    parent = args.workdir or default_workdir_parent()
    parent.mkdir(parents=True, exist_ok=True)
    sizes = Sizes(args.quick)
    need = sizes.disk_needed(keys)
    free = shutil.disk_usage(parent).free
    if free < need * 1.1:
        print(f"not enough disk under {parent}: {human(free)} free, ~{human(need)} needed",
              file=sys.stderr)
        return 2

    # SIGTERM takes the same way out as Ctrl-C, so the finally below runs
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    work = Path(tempfile.mkdtemp(prefix="trunkfs-bench-", dir=parent))
    sockdir = work / "sock"
    if len(str(sockdir / "xxxxxxxxxx.sock")) > 100:  # AF_UNIX path limit
        sockdir = Path(tempfile.mkdtemp(prefix="tfsb-", dir="/tmp"))
    else:
        sockdir.mkdir()
    bench = Bench(args, keys, work, sockdir)
    if bench.load_start > 0.5 * (os.cpu_count() or 1):
        log(f"WARNING: load average {bench.load_start:.2f} on {os.cpu_count()} CPUs: "
            "other work will skew the speed figures")
    log(f"workdir {work}; keys {','.join(k for k in ALL_KEYS if k in keys)}; "
        f"~{human(need)} disk at peak")
    ok = False
    try:
        bench.run_all()
        ok = bench.report()
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let clean-up finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for d in bench.daemons:
            d.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            rmtree(work)
            if sockdir.exists():
                rmtree(sockdir)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    log("done")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
