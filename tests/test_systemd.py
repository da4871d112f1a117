"""The systemd units pass `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_verify(workdir):
    unit = (SYSTEMD / "trunkfs.service").read_text()
    # verify checks that ExecStart exists: point it at this checkout's trunkfs
    trunkfs = Path(sys.executable).parent / "trunkfs"
    assert trunkfs.exists()
    (workdir / "trunkfs.service").write_text(unit.replace("/usr/local/bin/trunkfs", str(trunkfs)))
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
