#!/usr/bin/env python3
"""Write benchmark for the writable trunkfs branch views, against the native
filesystem, bindfs (a C FUSE passthrough, `-o big_writes`: the floor of FUSE
overhead) and restic, all in the same run and on the same disk.

It makes its own data once in one temporary directory (on the disk of the
checkout: /var/tmp when that is the same file system), outside any mount,
and writes the same bytes every way. Each ``*_ratio_*`` is trunkfs's speed
divided by the other's on the same work (higher is better). Progress goes to
stderr; the table and, as the last line, ``RESULT key=value ...`` to stdout.

  cp_ratio_bindfs     `cp` of one 1 GiB random file into `<mount>/<repo>/`,
                      timed with an fsync of the destination file and a
                      sync, against the same into bindfs (target >= 1.0);
                      cp_ratio_native for information
  untar_nosync_ratio_bindfs  `tar x` of 20,000 files of 1-4 KiB in 100
                      directories, until tar exits (what a user waits for),
                      against bindfs (target >= 1.0); checked with `tar d`
  untar_ratio_bindfs  the same plus a sync (for information: the sync writes
                      what the kernel holds dirty); untar_ratio_native too
  commit_mbps         `trunkfs commit` of the staged 1 GiB file alone (plus a
                      sync): MiB / s; checked with cmp through <repo>@<commit>
  restic_mbps         `restic backup` of the same file into a fresh local
                      repo (plus a sync); target commit_mbps >= 2 x this
  put_mbps            `trunkfs put` of the same file into another repo (plus a
                      sync), after the commit: commit_ratio_put is
                      commit_mbps / put_mbps (a commit as fast as a put: >= 1)
  append_commit_s     1 MiB appended to the committed file through the mount,
                      then `trunkfs commit` (target < 1 s); the append itself
                      is append_write_s
  append_store_growth_mib  store size (`du -sb`) after minus before the
                      append and its commit (target < 8)
  patch_commit_s      4 KiB overwritten in the middle (pwrite), then commit
                      (target < 1 s); patch_store_growth_mib for information
  daemon_rss_mib      the daemon's peak RSS (VmHWM) up to the end of the `tar x`
  daemon_peak_rss_mib the daemon's peak RSS (VmHWM) over the whole benchmark,
                      read before it stops (target <= 250)

After the append and the patch the sha256 of the file, read back through the
branch view and through <repo>@<new commit>, must equal that of a local copy
that got the same writes. A check that fails marks its figures FAILED.

Each cp and tar x runs --repeat times (default 2) and the fastest counts:
the machine may be busy with other work. Needs root (FUSE mounts). bindfs and restic come with `./setup.sh test`.
The temp dir is removed at the end, also on error or Ctrl-C (unless --keep);
bindfs and the daemon's mount are unmounted, the daemon stopped by its pid.

Usage: python bench/write.py [--quick] [--size-mib N] [--files N] [--repeat N]
                            [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchlib import BenchError, Bindfs, bench_daemon, cleanup, log, make_random, peak_rss_mib, run, timed, unmount

KiB = 1 << 10
MiB = 1 << 20
REPO_ROOT = Path(__file__).resolve().parent.parent
BIG = "big.bin"


def preread(path: Path) -> None:
    buf = bytearray(8 * MiB)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def du_bytes(path: Path) -> int:
    return int(run(["du", "-sb", path], what="du").split()[0])


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_big(src: Path, dest_dir: Path) -> None:
    """`cp` into dest_dir, then fsync of the copy (the sync comes from timed())."""
    run(["cp", src, f"{dest_dir}/"], what="cp")
    fsync_path(dest_dir / src.name)


def untar(tarball: Path, dest: Path) -> None:
    run(["tar", "xf", tarball, "-C", dest], what="tar x")


def tar_check(tarball: Path, dest: Path, notes: list[str]) -> None:
    """`tar d` of the tarball against dest. Missing files or other contents
    raise; metadata-only differences (mtime, mode, owner) become a note
    (bindfs 1.14 drops the mtime of tar's futimens with UTIME_OMIT, for one)."""
    p = subprocess.run(["tar", "df", str(tarball), "-C", str(dest)], capture_output=True, text=True)
    diff = [x for x in (p.stdout + p.stderr).splitlines() if x.strip()]
    if p.returncode != 0 and not diff:
        diff = [f"tar d exited {p.returncode}"]
    meta = re.compile(r"(Mod time|Mode|Uid|Gid) differs$|^tar: Exiting with failure status")
    bad = [x for x in diff if not meta.search(x)]
    if bad:
        raise BenchError(f"tar d against {dest}: {len(bad)} differences: " + " | ".join(bad[:5]))
    if diff:
        notes.append(f"WARNING: {dest} matches the tarball in content but not in metadata "
                     f"({len(diff)} lines): " + " | ".join(diff[:3]))


def make_tarball(top: Path, tarball: Path, n_files: int, n_dirs: int) -> int:
    """``n_files`` files of 1-4 KiB (random sizes, seeded) in ``n_dirs``
    directories under top/tree, packed into ``tarball``; returns the bytes."""
    pool = os.urandom(8 * MiB)
    rng = random.Random(7)
    per_dir = -(-n_files // n_dirs)
    n = total = 0
    for di in range(n_dirs):
        sub = top / "tree" / f"d{di:03d}"
        sub.mkdir(parents=True)
        for fi in range(per_dir):
            if n == n_files:
                break
            size = rng.randint(1 * KiB, 4 * KiB)
            off = rng.randrange(len(pool) - size)
            (sub / f"f{fi:04d}.bin").write_bytes(pool[off:off + size])
            n += 1
            total += size
    run(["tar", "cf", tarball, "-C", top, "tree"], what="tar c")
    shutil.rmtree(top / "tree")
    return total


def default_workdir_parent() -> Path:
    """A temp dir on the same file system as the checkout (never a tmpfs elsewhere)."""
    dev = REPO_ROOT.stat().st_dev
    for cand in (os.environ.get("TMPDIR"), "/var/tmp", "/tmp"):
        if cand and os.path.isdir(cand) and os.access(cand, os.W_OK) and os.stat(cand).st_dev == dev:
            return Path(cand)
    return REPO_ROOT.parent


# -- the benchmark ------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.size = args.size_mib * MiB
        self.n_files = args.files
        self.n_dirs = 100 if args.files >= 1000 else max(1, args.files // 10)
        self.src = tmp / "src" / BIG
        self.tarball = tmp / "src" / "files.tar"
        self.d = bench_daemon(tmp, mount=True)
        self.t: dict[str, dict[str, float]] = {}  # work -> {native|bindfs|trunkfs: seconds}
        self.r: dict[str, float] = {}              # result figures
        self.notes: list[str] = []
        self.errors: dict[str, str] = {}            # section -> error
        self.load_start = os.getloadavg()[0]

    def section(self, name: str, fn) -> bool:
        log(f"--- {name}")
        try:
            fn()
            return True
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one failed section must not hide the others
            msg = str(e) if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
            self.errors[name] = msg
            log(f"{name} FAILED: {msg}")
            if not isinstance(e, BenchError):
                traceback.print_exc(file=sys.stderr)
            return False

    def time(self, work: str, who: str, secs: float) -> None:
        """Record a timing; of repeated runs the fastest counts."""
        w = self.t.setdefault(work, {})
        w[who] = min(secs, w.get(who, secs))
        log(f"{work}, {who}: {secs:.3f} s")

    def cp_runs(self, who: str, dest: Path) -> None:
        """`cp` of the big file into dest, --repeat times (the copy removed
        in between, untimed); the last copy stays and is compared."""
        for i in range(self.args.repeat):
            if i:
                (dest / BIG).unlink()
            self.time("cp", who, timed(lambda: copy_big(self.src, dest)))
        if not filecmp(self.src, dest / BIG):
            raise BenchError(f"{dest / BIG} differs from the source after cp")

    def untar_runs(self, who: str, dest: Path) -> None:
        """`tar x` into dest/run<i>, --repeat times; each checked with `tar d`."""
        for i in range(self.args.repeat):
            run_dir = dest / f"run{i}"
            run_dir.mkdir(parents=True)
            split: list[float] = []

            def tar_then_sync() -> None:
                t = time.perf_counter()
                untar(self.tarball, run_dir)
                split.append(time.perf_counter() - t)
            secs = timed(tar_then_sync)
            self.time("untar", who, secs)
            self.time("untar_nosync", who, split[0])
            log(f"  of which tar x {split[0]:.3f} s, the sync {secs - split[0]:.3f} s")
            if who == "trunkfs":  # right after the tar x, before the check reads it all
                self.r["daemon_rss_mib"] = peak_rss_mib(self.d)
            tar_check(self.tarball, run_dir, self.notes if i == 0 else [])  # one note is enough

    # data --------------------------------------------------------------------

    def prepare(self) -> None:
        (self.tmp / "src").mkdir()
        log(f"making a {self.size // MiB} MiB random file and a tarball of {self.n_files} files")
        make_random(self.src, self.size)
        self.tar_bytes = make_tarball(self.tmp / "src", self.tarball, self.n_files, self.n_dirs)
        preread(self.src)
        preread(self.tarball)
        os.sync()

    # peers -------------------------------------------------------------------

    def native(self) -> None:
        dest = self.tmp / "native"
        dest.mkdir()
        self.cp_runs("native", dest)
        self.untar_runs("native", dest / "untar")
        shutil.rmtree(dest / "untar")
        # dest/big.bin stays: the local model that gets the same append and patch

    def bindfs(self) -> None:
        with Bindfs(self.tmp / "bindfs-src", self.tmp / "bindfs-mnt", ["-o", "big_writes"]) as mnt:
            self.cp_runs("bindfs", mnt)
            self.untar_runs("bindfs", mnt / "untar")
        shutil.rmtree(self.tmp / "bindfs-src")

    def restic(self) -> None:
        env = dict(os.environ, RESTIC_PASSWORD="trunkfs-bench")
        for k in ("RESTIC_REPOSITORY", "RESTIC_PASSWORD_FILE", "RESTIC_COMPRESSION"):
            env.pop(k, None)
        base = ["restic", "--repo", self.tmp / "restic", "--cache-dir", self.tmp / "restic-cache"]
        run([*base, "init", "-q"], env=env, what="restic init")
        secs = timed(lambda: run([*base, "backup", "-q", self.src], env=env, what="restic backup"))
        self.time("store the big file", "restic", secs)
        self.r["restic_mbps"] = self.size / MiB / secs
        self.version_restic = run(["restic", "version"]).split(" compiled")[0]
        shutil.rmtree(self.tmp / "restic", ignore_errors=True)

    # trunkfs -----------------------------------------------------------------

    def cli(self, *args: str) -> str:
        p = self.d.cli(*args, check=False)
        if p.returncode != 0:
            raise BenchError(f"trunkfs {' '.join(args[:2])} exited {p.returncode}: "
                             + " | ".join((p.err or p.out).strip().splitlines()[-6:]))
        return p.out

    def commit(self, repo: str, msg: str) -> str:
        out = self.cli("commit", repo, "-m", msg).strip()
        m = re.search(r"\b[0-9a-f]{64}\b", out)
        if not m:
            raise BenchError(f"trunkfs commit {repo} printed no commit id: {out[:200]!r}")
        return m.group(0)

    def status(self, repo: str) -> list[tuple[str, str]]:
        st = json.loads(self.cli("status", repo, "--json"))
        return sorted((c["status"], c["path"].lstrip("/")) for c in st["changes"])  # paths relative

    def store_bytes(self) -> int:
        return du_bytes(self.d.store_dir)

    def trunkfs_start(self) -> None:
        self.d.start()
        self.cli("repo", "create", "files")
        self.cli("repo", "create", "big")
        self.cli("repo", "create", "put")

    def trunkfs_untar(self) -> None:
        view = self.d.mount / "files"
        self.untar_runs("trunkfs", view)  # the RSS is read right after the last tar x

    def trunkfs_untar_commit(self) -> None:
        """Commit the untarred files (after the big-file work: a failure here
        must not spoil those figures); timed for information, then checked."""
        n = len(self.status("files"))
        t = time.perf_counter()
        cid = self.commit("files", "untar")
        self.r["untar_commit_s"] = time.perf_counter() - t
        log(f"commit of the untar: {self.r['untar_commit_s']:.2f} s ({n} status lines)")
        # the committed content, read back through the read-only commit view
        for i in range(self.args.repeat):
            tar_check(self.tarball, self.d.mount / f"files@{cid}" / f"run{i}", self.notes)

    def verify_big(self, cid: str, expect: str, what: str) -> None:
        """sha256 of the file through the branch view and through big@cid."""
        for path in (self.d.mount / "big" / BIG, self.d.mount / f"big@{cid}" / BIG):
            got = sha256(path)
            if got != expect:
                raise BenchError(f"after the {what}: sha256 of {path} is {got[:16]}..., "
                                 f"expected {expect[:16]}... (a local copy with the same writes)")

    def trunkfs_big(self) -> None:
        view = self.d.mount / "big"
        model = self.tmp / "native" / BIG  # the native copy: gets the same writes
        self.cp_runs("trunkfs", view)
        st = self.status("big")
        if st != [("A", BIG)]:
            raise BenchError(f"status after the cp: {st[:5]}, expected [('A', '{BIG}')]")

        # commit of the 1 GiB file alone
        cid = ""

        def commit_big() -> None:
            nonlocal cid
            cid = self.commit("big", "1 GiB file")
        secs = timed(commit_big)
        self.time("store the big file", "trunkfs", secs)
        self.r["commit_mbps"] = self.size / MiB / secs
        if self.status("big"):
            raise BenchError(f"status not empty after the commit: {self.status('big')[:5]}")
        if not filecmp(self.src, self.d.mount / f"big@{cid}" / BIG):
            raise BenchError(f"big@{cid}/{BIG} differs from the source (cmp)")
        # the same bytes sent by `trunkfs put`: what a commit should match
        secs = timed(lambda: self.cli("put", "put", str(self.src)))
        self.r["put_mbps"] = self.size / MiB / secs
        log(f"put of the same file: {self.r['put_mbps']:.1f} MiB/s")

        # append 1 MiB through the mount, commit
        extra = os.urandom(MiB)
        before = self.store_bytes()
        t = time.perf_counter()
        with open(view / BIG, "ab") as f:
            f.write(extra)
        self.r["append_write_s"] = time.perf_counter() - t
        with open(model, "ab") as f:
            f.write(extra)
        st = self.status("big")
        if st != [("M", BIG)]:
            raise BenchError(f"status after the append: {st[:5]}, expected [('M', '{BIG}')]")
        t = time.perf_counter()
        cid = self.commit("big", "append 1 MiB")
        self.r["append_commit_s"] = time.perf_counter() - t
        self.r["append_store_growth_mib"] = (self.store_bytes() - before) / MiB
        log(f"append: write {self.r['append_write_s']:.3f} s, commit {self.r['append_commit_s']:.3f} s, "
            f"store +{self.r['append_store_growth_mib']:.2f} MiB")
        self.verify_big(cid, sha256(model), "append")

        # overwrite 4 KiB in the middle, commit
        patch = os.urandom(4 * KiB)
        off = self.size // 2
        before = self.store_bytes()
        fd = os.open(view / BIG, os.O_WRONLY)
        try:
            if os.pwrite(fd, patch, off) != len(patch):
                raise BenchError("short pwrite through the mount")
        finally:
            os.close(fd)
        fd = os.open(model, os.O_WRONLY)
        try:
            os.pwrite(fd, patch, off)
        finally:
            os.close(fd)
        t = time.perf_counter()
        cid = self.commit("big", "patch 4 KiB")
        self.r["patch_commit_s"] = time.perf_counter() - t
        self.r["patch_store_growth_mib"] = (self.store_bytes() - before) / MiB
        log(f"patch: commit {self.r['patch_commit_s']:.3f} s, "
            f"store +{self.r['patch_store_growth_mib']:.2f} MiB")
        self.verify_big(cid, sha256(model), "patch")

    # run and report ----------------------------------------------------------

    def run_all(self) -> None:
        if not self.section("prepare", self.prepare):
            return
        self.section("native", self.native)
        self.section("bindfs", self.bindfs)
        self.section("restic", self.restic)
        if self.section("trunkfs start", self.trunkfs_start):
            self.section("trunkfs untar", self.trunkfs_untar)
            if "native" in self.errors:
                self.errors["trunkfs big"] = "skipped: the native copy (the local model) failed"
            else:
                self.section("trunkfs big", self.trunkfs_big)
            if "trunkfs untar" not in self.errors:
                self.section("trunkfs untar commit", self.trunkfs_untar_commit)
            self.r["daemon_peak_rss_mib"] = peak_rss_mib(self.d)   # the whole run's peak

    def results(self) -> dict[str, str]:
        t, r = self.t, self.r

        def ratio(work: str, other: str) -> str:
            w = t.get(work, {})
            return f"{w[other] / w['trunkfs']:.2f}" if other in w and "trunkfs" in w else "nan"

        def fig(key: str, fmt: str) -> str:
            return format(r[key], fmt) if key in r else "nan"

        return {
            "cp_ratio_bindfs": ratio("cp", "bindfs"),
            "cp_ratio_native": ratio("cp", "native"),
            "untar_nosync_ratio_bindfs": ratio("untar_nosync", "bindfs"),
            "untar_ratio_bindfs": ratio("untar", "bindfs"),
            "untar_ratio_native": ratio("untar", "native"),
            "commit_mbps": fig("commit_mbps", ".1f"),
            "restic_mbps": fig("restic_mbps", ".1f"),
            "put_mbps": fig("put_mbps", ".1f"),
            "commit_ratio_put": (f"{r['commit_mbps'] / r['put_mbps']:.2f}"
                                 if "commit_mbps" in r and r.get("put_mbps") else "nan"),
            "append_write_s": fig("append_write_s", ".3f"),
            "append_commit_s": fig("append_commit_s", ".3f"),
            "append_store_growth_mib": fig("append_store_growth_mib", ".2f"),
            "patch_commit_s": fig("patch_commit_s", ".3f"),
            "patch_store_growth_mib": fig("patch_store_growth_mib", ".2f"),
            "daemon_rss_mib": fig("daemon_rss_mib", ".0f"),
            "daemon_peak_rss_mib": fig("daemon_peak_rss_mib", ".0f"),
        }

    def report(self) -> bool:
        res = self.results()
        size_mib = self.size // MiB
        mode = "QUICK (targets are for the full run)" if self.args.quick else "full"
        load_end = os.getloadavg()[0]
        print(f"trunkfs write benchmark - {mode}; {os.cpu_count()} CPUs, load average "
              f"{self.load_start:.2f} at start, {load_end:.2f} at end; temp dir {self.tmp}; "
              f"{getattr(self, 'version_restic', 'restic not run')}; repeat {self.args.repeat}")
        if max(self.load_start, load_end) > 0.5 * (os.cpu_count() or 1):
            print("WARNING: the machine was busy with other work; the speed figures are skewed")
        print(f"{'work':<40} {'native':>10} {'bindfs':>10} {'restic':>10} {'trunkfs':>10}   (MB/s unless noted)")

        def cell(v: float | None) -> str:
            if v is None:
                return f"{'-':>10}"
            return f"{v:10.2f}" if v < 100 else f"{v:10.0f}"

        def mbps(work: str, who: str, nbytes: int) -> float | None:
            s = self.t.get(work, {}).get(who)
            return nbytes / s / 1e6 if s else None

        def secs(work: str, who: str) -> float | None:
            return self.t.get(work, {}).get(who)

        whos = ("native", "bindfs", "restic", "trunkfs")
        rows = [
            (f"cp {size_mib} MiB + fsync + sync", [mbps("cp", w, self.size) for w in whos]),
            ("  (s)", [secs("cp", w) for w in whos]),
            (f"tar x {self.n_files} files (files/s)",
             [self.n_files / s if (s := secs("untar_nosync", w)) else None for w in whos]),
            ("  (s)", [secs("untar_nosync", w) for w in whos]),
            (f"tar x {self.n_files} files + sync (files/s)",
             [self.n_files / s if (s := secs("untar", w)) else None for w in whos]),
            ("  (s)", [secs("untar", w) for w in whos]),
            (f"store the {size_mib} MiB file + sync",
             [mbps("store the big file", w, self.size) for w in whos]),
            ("  (s)", [secs("store the big file", w) for w in whos]),
        ]
        for name, vals in rows:
            print(f"{name:<40} " + " ".join(cell(v) for v in vals))
        extra = [("untar commit (s)", "untar_commit_s", ".2f"),
                 ("append 1 MiB: the write (s)", "append_write_s", ".3f"),
                 ("append 1 MiB: commit (s)", "append_commit_s", ".3f"),
                 ("append 1 MiB: store growth (MiB)", "append_store_growth_mib", ".2f"),
                 ("patch 4 KiB: commit (s)", "patch_commit_s", ".3f"),
                 ("patch 4 KiB: store growth (MiB)", "patch_store_growth_mib", ".2f"),
                 ("daemon VmHWM after tar x (MiB)", "daemon_rss_mib", ".0f"),
                 ("daemon VmHWM, whole run (MiB)", "daemon_peak_rss_mib", ".0f")]
        for name, key, fmt in extra:
            v = format(self.r[key], fmt) if key in self.r else "-"
            print(f"{name:<40} {'':>10} {'':>10} {'':>10} {v:>10}")

        ok = not self.errors

        def check(key: str, met: bool | None, target: str) -> None:
            nonlocal ok
            if met is False:
                ok = False
            status = {True: "ok", False: "MISSED", None: "-"}[met]
            print(f"{key:<26} {res[key]:>8}   target {target:<22} {status}")

        def num(key: str) -> float | None:
            v = float(res[key])
            return None if v != v else v

        def ge(key: str, x: float | None) -> bool | None:
            v = num(key)
            return None if v is None or x is None else v >= x

        def lt(key: str, x: float) -> bool | None:
            v = num(key)
            return None if v is None else v < x

        check("cp_ratio_bindfs", ge("cp_ratio_bindfs", 1.0), ">= 1.0")
        check("untar_nosync_ratio_bindfs", ge("untar_nosync_ratio_bindfs", 1.0), ">= 1.0")
        rm = num("restic_mbps")
        check("commit_mbps", ge("commit_mbps", 2 * rm if rm else None),
              f">= 2 x restic = {2 * rm:.1f}" if rm else ">= 2 x restic_mbps")
        check("append_commit_s", lt("append_commit_s", 1), "< 1")
        check("append_store_growth_mib", lt("append_store_growth_mib", 8), "< 8")
        check("patch_commit_s", lt("patch_commit_s", 1), "< 1")
        v = num("daemon_peak_rss_mib")
        check("daemon_peak_rss_mib", None if v is None else v <= 250, "<= 250")
        for n in self.notes:
            print(f"note: {n}")
        for sec, err in self.errors.items():
            print(f"FAILED {sec}: {err}")
        print("note: cp is timed with an fsync of the copy and a sync; tar x, restic and the "
              "1 GiB commit with a sync; append/patch commits are the command's wall time.")
        print("RESULT " + " ".join(f"{k}={v}" for k, v in res.items()))
        sys.stdout.flush()
        return ok


def filecmp(a: Path, b: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(a), str(b)]).returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 64 MiB and 2,000 files unless given")
    ap.add_argument("--size-mib", type=int, default=None, help="size of the big file (default 1024)")
    ap.add_argument("--files", type=int, default=None, help="files in the tarball (default 20000)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="make the temp dir inside this directory (default: on the checkout's disk)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="runs of each cp and tar x, the fastest counts (default 2, --quick 1)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (debugging)")
    args = ap.parse_args()
    if args.size_mib is None:
        args.size_mib = 64 if args.quick else 1024
    if args.repeat is None:
        args.repeat = 1 if args.quick else 2
    if args.files is None:
        args.files = 2000 if args.quick else 20000
    if os.geteuid() != 0:
        raise SystemExit("bench/write.py needs root (FUSE mounts)")
    for tool in ("bindfs", "restic", "fusermount3"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: run ./setup.sh test once (it installs it)")
    parent = args.workdir or default_workdir_parent()
    need = args.size_mib * MiB * 5 + args.files * 8 * KiB * 4 + 256 * MiB
    if shutil.disk_usage(parent).free < need:
        raise SystemExit(f"not enough free disk under {parent}: ~{need >> 20} MiB needed")

    def on_term(signum, frame):  # the same way out as Ctrl-C, so the finally runs
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    tmp = Path(tempfile.mkdtemp(prefix="trunkfs-bench-write-", dir=parent))
    log(f"temp dir {tmp}; {args.size_mib} MiB file, {args.files} files")
    bench = Bench(args, tmp)
    ok = False
    try:
        bench.run_all()
        ok = bench.report()
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if os.path.ismount(tmp / "bindfs-mnt"):
            unmount(tmp / "bindfs-mnt")
        bench.d.stop()
        cleanup(tmp, args.keep)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
