"""The systemd units pass `systemd-analyze verify`, run an installed copy with
hardening that keeps the mount visible, and score better than before."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
INSTALLED = "/opt/trunkfs/bin/trunkfs"
# `systemd-analyze security --offline=yes` of the unit before the hardening
# (ExecStart at /usr/local/bin/trunkfs -> the checkout's .venv, UMask=0077)
OLD_EXPOSURE = 7.4
# options for which systemd gives the service its own mount namespace, which
# would hide the FUSE mount and the datum bind mounts from the machine
MOUNT_NAMESPACE_OPTIONS = (
    "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
    "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "BindPaths", "BindReadOnlyPaths",
    "TemporaryFileSystem", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
    "ProtectControlGroups", "ProtectProc", "ProcSubset", "MountFlags", "PrivateNetwork",
    "PrivateIPC", "RootDirectory", "RootImage",
)

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed")


def service_settings() -> dict[str, list[str]]:
    """Each key of the [Service] section with its values in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in (SYSTEMD / "trunkfs.service").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@needs_analyze
def test_units_verify(workdir):
    unit = (SYSTEMD / "trunkfs.service").read_text()
    # verify checks that ExecStart exists: point it at this checkout's trunkfs
    trunkfs = Path(sys.executable).parent / "trunkfs"
    assert trunkfs.exists()
    (workdir / "trunkfs.service").write_text(unit.replace(INSTALLED, str(trunkfs)))
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(workdir / "trunkfs.service")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "trunkfs.service" not in res.stderr, res.stderr


def test_tmpfiles_config_creates_the_directories(workdir):
    if shutil.which("systemd-tmpfiles") is None:
        pytest.skip("systemd-tmpfiles is not installed")
    res = subprocess.run(["systemd-tmpfiles", "--create", f"--root={workdir}",
                          str(SYSTEMD / "trunkfs.tmpfiles.conf")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (workdir / "run" / "trunkfs").is_dir()
    assert (workdir / "var" / "lib" / "trunkfs").stat().st_mode & 0o777 == 0o700


def test_service_runs_the_installed_copy_not_a_checkout():
    (exec_start,) = service_settings()["ExecStart"]
    assert exec_start.split()[0] == INSTALLED
    install = (SYSTEMD / "install.sh").read_text()
    assert "-m venv" in install and "/opt/trunkfs" in install
    assert not re.search(r"pip\b.*install\b.*(-e\b|--editable)", install)
    assert ".venv/bin/trunkfs" not in install


def test_hardening_keeps_fuse_and_pipeline_inputs_working():
    s = service_settings()
    assert s["DevicePolicy"] == ["closed"]
    assert any(v.split()[0] == "/dev/fuse" and "r" in v.split()[1] and "w" in v.split()[1]
               for v in s["DeviceAllow"])
    # a umask of 0077 would make datum input directories unreadable to the pipeline's uid
    assert s["UMask"] == ["0022"]
    families = " ".join(s["RestrictAddressFamilies"]).split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)
    filters = " ".join(s["SystemCallFilter"]).split()
    assert "@mount" in filters and "@system-service" in filters
    caps = " ".join(s["CapabilityBoundingSet"]).split()
    assert {"CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_KILL"} <= set(caps)
    for key in ("TasksMax", "MemoryMax", "RestrictNamespaces"):
        assert key in s, key


def test_no_option_gives_the_service_a_private_mount_namespace():
    s = service_settings()
    assert [k for k in MOUNT_NAMESPACE_OPTIONS if k in s and s[k][-1] not in ("", "no", "false")] == []


@needs_analyze
def test_security_exposure_is_below_the_old_one():
    res = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                          str(SYSTEMD / "trunkfs.service")], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout + res.stderr)
    assert m, res.stdout + res.stderr
    assert float(m.group(1)) < OLD_EXPOSURE


def test_the_daemon_may_make_cgroups_for_datums():
    """Delegate=yes hands the service's cgroup subtree to the daemon: it moves
    itself into <own>/daemon and runs each datum attempt in a cgroup below
    <own>/trunkfs-jobs, killed as a whole when the attempt ends. Nothing may
    make /sys/fs/cgroup read-only to it."""
    s = service_settings()
    assert s["Delegate"] == ["yes"]
    assert s.get("ProtectControlGroups", ["no"])[-1] in ("no", "false")
    # the service's own stop kills what is left in all of its cgroups
    assert s.get("KillMode", ["control-group"])[-1] == "control-group"
