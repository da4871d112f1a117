"""The per-uid staging quota: in the staging layer (in-process), then
through a real mount written by a second uid (``nobody``), across a daemon
restart, freed by commit and discard."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trunkfs.staging.area import StagingArea
from trunkfs.staging.manager import StagingManager
from trunkfs.staging.nodes import FileNode
from trunkfs.staging.quota import QuotaExceeded, StagingQuota

USER = 1000          # any uid but root
OTHER = 1001
LIMIT = 10_000


def new_file(area: StagingArea, name: str, uid: int = USER) -> FileNode:
    root = area.ensure_root(None)
    node = area.new_node("file", 0o644, uid, uid)
    area.link(root, name, node)
    assert isinstance(node, FileNode)
    return node


@pytest.fixture
def manager(tmp_path: Path):
    mgr = StagingManager(str(tmp_path / "state"), quota=StagingQuota(LIMIT))
    try:
        yield mgr
    finally:
        mgr.close()


# -- in the staging layer -------------------------------------------------------------------

def test_a_write_beyond_the_quota_fails_and_what_was_staged_stays(manager: StagingManager) -> None:
    area = manager.area("r", "main")
    a = new_file(area, "a")
    assert area.write(a, 0, b"x" * 6000, uid=USER) == 6000
    assert manager.quota.used(USER) == 6000
    with pytest.raises(QuotaExceeded) as caught:
        area.write(a, 6000, b"y" * 5000, uid=USER)
    assert caught.value.errno == errno.EDQUOT
    assert a.size == 6000 and area.read_data(a, 0, 6000) == b"x" * 6000
    assert manager.quota.used(USER) == 6000
    # rewriting bytes already staged costs nothing; the rest of the quota is usable
    area.write(a, 0, b"z" * 6000, uid=USER)
    area.write(a, 6000, b"w" * 4000, uid=USER)
    assert manager.quota.used(USER) == LIMIT
    # another uid has its own quota; root has none
    b = new_file(area, "b", OTHER)
    area.write(b, 0, b"o" * 9000, uid=OTHER)
    area.write(b, 9000, b"r" * 50_000, uid=0)
    assert manager.quota.used(OTHER) == 9000 and manager.quota.used(0) == 50_000


def test_growing_by_truncate_counts_and_shrinking_gives_back(manager: StagingManager) -> None:
    area = manager.area("r", "main")
    a = new_file(area, "a")
    with pytest.raises(QuotaExceeded):
        area.truncate(a, LIMIT + 1, uid=USER)
    assert a.size == 0 and manager.quota.used(USER) == 0
    area.truncate(a, 8000, uid=USER)
    assert manager.quota.used(USER) == 8000
    area.truncate(a, 1000, uid=USER)
    assert manager.quota.used(USER) == 1000
    area.write(a, 500, b"q" * 1000, uid=USER)     # 500 bytes over the old end
    assert manager.quota.used(USER) == 1500


def test_unlink_discard_and_drop_give_the_bytes_back(manager: StagingManager) -> None:
    area = manager.area("r", "main")
    a, b = new_file(area, "a"), new_file(area, "b")
    area.write(a, 0, b"a" * 4000, uid=USER)
    area.write(b, 0, b"b" * 4000, uid=USER)
    assert area.root is not None
    assert manager.quota.files == 2
    area.unlink(area.root, "a", None)
    assert manager.quota.used(USER) == 4000 and manager.quota.files == 1
    area.drop_all()                                   # what a commit does
    assert manager.quota.used(USER) == 0 and manager.quota.files == 0


def test_a_restart_recounts_from_the_journal(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    mgr = StagingManager(state, quota=StagingQuota(LIMIT))
    area = mgr.area("r", "main")
    a = new_file(area, "a")
    area.write(a, 0, b"x" * 7000, uid=USER)
    other = mgr.area("r", "dev")
    area.save(a)
    b = new_file(other, "b", OTHER)
    other.truncate(b, 3000, uid=OTHER)
    mgr.close()
    mgr = StagingManager(state, quota=StagingQuota(LIMIT))
    try:
        assert mgr.quota.used(USER) == 7000 and mgr.quota.used(OTHER) == 3000
        assert mgr.quota.files == 2
        area = mgr.area("r", "main")
        assert area.root is not None
        a2 = area.root.delta["a"]
        assert isinstance(a2, FileNode)
        with pytest.raises(QuotaExceeded):
            area.write(a2, 7000, b"y" * 4000, uid=USER)
    finally:
        mgr.close()


def test_no_quota_means_no_limit(tmp_path: Path) -> None:
    mgr = StagingManager(str(tmp_path / "state"))
    try:
        area = mgr.area("r", "main")
        a = new_file(area, "a")
        area.truncate(a, 1 << 40, uid=USER)
        assert mgr.quota.used(USER) == 1 << 40
    finally:
        mgr.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.integers(0, 300),
       ops=st.lists(st.tuples(st.sampled_from(["write", "truncate"]), st.integers(0, 400),
                              st.integers(0, 120), st.sampled_from([USER, OTHER])), max_size=25))
def test_the_count_is_the_bytes_that_are_not_the_committed_base(tmp_path: Path, base: int,
                                                              ops: list[tuple[str, int, int, int]]) -> None:
    """Against a model that marks each byte of the file as base or staged."""
    mgr = StagingManager(str(tmp_path / f"s{len(os.listdir(tmp_path))}"), quota=StagingQuota())
    try:
        area = mgr.area("r", "main")
        root = area.ensure_root(None)
        node = area.copy_up(root, "f", {"type": "file", "mode": 0o644, "size": base,
                                        "chunks": [["00" * 32, base]] if base else []})
        assert isinstance(node, FileNode)
        model = [False] * base            # True: staged
        for op, a, b, uid in ops:
            if op == "write":
                area.write(node, a, b"w" * b, uid=uid)
                if b and a + b > len(model):
                    model += [True] * (a + b - len(model))
                model[a:a + b] = [True] * b
            else:
                area.truncate(node, a, uid=uid)
                model = model[:a] + [True] * max(0, a - len(model))
            assert node.quota_bytes() == sum(model)
            assert sum(node.charges.values()) == sum(model)
            assert mgr.quota.used(USER) + mgr.quota.used(OTHER) == sum(model)
            assert mgr.quota.files == (1 if sum(model) else 0)   # a file with staged bytes
        area.drop_all()
        assert mgr.quota.usage() == {} and mgr.quota.files == 0
    finally:
        mgr.close()


# -- through a real mount -------------------------------------------------------------------

NOBODY = 65534
QUOTA = 1 << 20


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv],
                          capture_output=True, timeout=120)


def dd(dest: Path, kib: int, seek_kib: int = 0) -> subprocess.CompletedProcess:
    return as_nobody("dd", "if=/dev/urandom", f"of={dest}", "bs=64K", f"count={kib // 64}",
                     f"seek={seek_kib // 64}", "conv=notrunc", "status=none")


@pytest.fixture(params=["writeback", "write-through"])
def quota_mount(daemon_factory, workdir: Path, request: pytest.FixtureRequest):
    """A mount with a 1 MiB staging quota.  With the writeback cache (the
    default) the kernel sends cached pages and reports a refused one at
    close or fsync, where it keeps ENOSPC (EDQUOT would become EIO); with
    ``--no-writeback-cache`` each write(2) is refused with EDQUOT."""
    if os.getuid() != 0:
        pytest.skip("needs root to switch users")
    config = workdir / "config.toml"
    config.write_text(f"staging_quota = {QUOTA}\n")
    flags = [] if request.param == "writeback" else ["--no-writeback-cache"]
    d = daemon_factory(mount=True, extra=["--allow-other", "--config", str(config), *flags])
    d.refused = b"No space left on device" if request.param == "writeback" else b"Disk quota exceeded"
    for p in (workdir, workdir / "d"):   # let nobody reach the mount point
        os.chmod(p, 0o755)
    d.cli("repo", "create", "r")
    d.cli("repo", "acl", "r", "--grant", "user:nobody=write")
    pub = d.mount / "r" / "pub"
    pub.mkdir()
    os.chmod(pub, 0o777)
    d.cli("commit", "r", "-m", "a directory for nobody")
    return d


def test_dd_beyond_the_quota_is_refused_and_commit_frees_it(quota_mount) -> None:
    d = quota_mount
    pub = d.mount / "r" / "pub"
    first = dd(pub / "a", 768)
    assert first.returncode == 0, first.stderr
    before = (pub / "a").read_bytes()
    over = dd(pub / "b", 512)
    assert over.returncode != 0
    assert d.refused in over.stderr, over.stderr
    assert (pub / "a").read_bytes() == before                 # staged data intact
    grow = as_nobody("truncate", "-s", "2M", str(pub / "a"))
    assert grow.returncode != 0 and b"Disk quota exceeded" in grow.stderr, grow.stderr
    # root is not limited
    (pub / "root.bin").write_bytes(os.urandom(2 * QUOTA))
    # the count survives a restart
    d.stop()
    d.start()
    again = dd(pub / "c", 512)
    assert d.refused in again.stderr, again.stderr
    assert (pub / "a").read_bytes() == before
    # a commit frees it, and the committed content is what was staged
    d.cli("commit", "r", "-m", "nobody's data")
    assert (d.mount / "r" / "pub" / "a").read_bytes() == before
    ok = dd(pub / "d", 768)
    assert ok.returncode == 0, ok.stderr
    # so does a discard
    d.cli("discard", "r")
    ok = dd(pub / "e", 768)
    assert ok.returncode == 0, ok.stderr


def test_patching_a_big_committed_file_counts_only_what_was_written(quota_mount, workdir: Path) -> None:
    d = quota_mount
    big = d.mount / "r" / "pub" / "big.bin"
    big.write_bytes(os.urandom(4 * QUOTA))
    os.chmod(big, 0o666)
    d.cli("commit", "r", "-m", "big")
    patch = dd(big, 256, seek_kib=1024)                       # copy-up by reference: 256 KiB staged
    assert patch.returncode == 0, patch.stderr
    assert big.stat().st_size == 4 * QUOTA
    more = dd(big, 640, seek_kib=2048)                        # 896 KiB staged in all
    assert more.returncode == 0, more.stderr
    over = dd(big, 192, seek_kib=3072)
    assert d.refused in over.stderr, over.stderr
    probe = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                            sys.executable, "-c",
                            "import os, sys\nfd = os.open(sys.argv[1], os.O_WRONLY)\n"
                            "os.pwrite(fd, b'x', 8 * 1024 * 1024)\nos.fsync(fd)\n", str(big)],
                           capture_output=True)
    assert d.refused in probe.stderr, probe.stderr   # growing by a hole counts too
