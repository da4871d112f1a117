"""Differential tests of the writable branch view: the same random sequences
of file operations on the mount and on a plain directory, compared after
every step, after ``trunkfs commit``, and after a daemon restart."""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import stat
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

# names are bytes: a few fixed ones (so paths meet again) and any 1-255 bytes
# without NUL or '/', as os.fsdecode makes them
BYTE_NAMES = st.binary(min_size=1, max_size=255).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")).map(os.fsdecode)
NAMES = st.sampled_from(["a", "b", "c", os.fsdecode(b"caf\xe9"), os.fsdecode(b"\xff" * 255)]) | BYTE_NAMES
PATHS = st.lists(NAMES, min_size=1, max_size=3).map("/".join)
DATA = st.binary(max_size=3000) | st.integers(1, 300_000).map(lambda n: os.urandom(16) * (n // 16))
OFFSETS = st.integers(0, 400_000)


def snapshot(root: Path) -> dict:
    """Everything the comparison looks at, by relative path."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st_ = p.lstat()
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st_.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st_.st_mode))
            else:
                out[rel] = ("file", stat.S_IMODE(st_.st_mode), st_.st_size, p.read_bytes())
    return out


def outcome(fn, *args):
    try:
        fn(*args)
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, exc.errno)


def test_branch_view_behaves_like_a_directory(daemon_factory, workdir):
    # with at most 2 staged entries in memory: every change also meets
    # directories paged out to the journal and read back (docs/staging.md)
    d = daemon_factory(mount=True, extra=["--staging-entries", "2"])
    d.cli("repo", "create", "r")
    plain_base = workdir / "plain"
    plain_base.mkdir()
    counter = itertools.count()

    class Machine(RuleBasedStateMachine):
        @initialize()
        def fresh(self):
            n = next(counter)
            self.steps = []
            self.mnt = d.mount / "r" / f"ex{n}"
            self.ref = plain_base / f"ex{n}"
            try:
                os.mkdir(self.mnt)
            except OSError as exc:
                raise AssertionError(f"{os.listdir(d.mount)} {d.log()[-4000:]}") from exc
            os.mkdir(self.ref)

        def both(self, fn, *paths, extra=()):
            self.steps.append((fn.__name__, paths, [len(x) if isinstance(x, bytes) else x for x in extra]))
            got = outcome(fn, *[self.mnt / p for p in paths], *extra)
            want = outcome(fn, *[self.ref / p for p in paths], *extra)
            assert got == want, f"{self.steps}: mount {got}, plain dir {want}"

        @rule(path=PATHS, data=DATA)
        def create(self, path, data):
            def create(p, data):
                with open(p, "wb") as f:
                    f.write(data)
            self.both(create, path, extra=(data,))

        @rule(path=PATHS, off=OFFSETS, data=DATA)
        def pwrite(self, path, off, data):
            def pwrite(p, off, data):
                fd = os.open(p, os.O_WRONLY)
                try:
                    os.pwrite(fd, data, off)
                finally:
                    os.close(fd)
            self.both(pwrite, path, extra=(off, data))

        @rule(path=PATHS, data=DATA)
        def append(self, path, data):
            def append(p, data):
                with open(p, "ab") as f:
                    f.write(data)
            self.both(append, path, extra=(data,))

        @rule(path=PATHS, size=OFFSETS)
        def truncate(self, path, size):
            self.both(os.truncate, path, extra=(size,))

        @rule(src=PATHS, dst=PATHS)
        def rename(self, src, dst):
            self.both(os.rename, src, dst)

        @rule(path=PATHS)
        def unlink(self, path):
            self.both(os.unlink, path)

        @rule(path=PATHS)
        def mkdir(self, path):
            self.both(os.mkdir, path)

        @rule(path=PATHS)
        def rmdir(self, path):
            self.both(os.rmdir, path)

        @rule(path=PATHS, link_to=st.sampled_from(["a", "../b", "x/y", os.fsdecode(b"../\xfe\xff")]) | BYTE_NAMES)
        def symlink(self, path, link_to):
            self.both(lambda p, t: os.symlink(t, p), path, extra=(link_to,))

        @rule(path=PATHS, mode=st.sampled_from([0o600, 0o644, 0o755, 0o700]))
        def chmod(self, path, mode):
            self.both(lambda p, m: os.chmod(p, m, follow_symlinks=False)
                      if not os.path.islink(p) else None, path, extra=(mode,))

        @rule()
        def commit(self):
            self.steps.append("commit")
            res = d.cli("commit", "r", "-m", "step", "--json", check=False)
            assert res.returncode == 0 or "nothing to commit" in res.err, res.err
            if res.returncode == 0:
                cid = res.json()["commit"]
                view = d.mount / f"r@{cid}" / self.mnt.name
                assert snapshot(view) == snapshot(self.ref)
            assert d.cli("status", "r").out == ""

        @rule()
        def restart(self):
            self.steps.append("restart")
            d.stop()
            d.start(timeout=60)

        @invariant()
        def same_tree(self):
            if hasattr(self, "mnt"):
                assert snapshot(self.mnt) == snapshot(self.ref), f"after {self.steps}"

    run_state_machine_as_test(Machine, settings=settings(
        max_examples=20, stateful_step_count=25, deadline=None,
        suppress_health_check=list(HealthCheck)))
    shutil.rmtree(plain_base)
    assert d.cli("fsck", "--json").json()["problems"] == []
    assert d.cli("stats", "--json").json()["staging"]["limit"] == 2
