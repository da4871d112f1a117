"""The CLI whose reader went away (``| head``) ends quietly, as git does:
no message, status 141 (SIGPIPE), for a command that prints text and for
one that streams file bytes."""

from __future__ import annotations

import shlex
import subprocess

from tests.harness import TRUNKFS


def piped(d, args: list[str], reader: str) -> tuple[int, str]:
    """(the CLI's exit status, its stderr) of ``trunkfs ARGS | READER``."""
    cmd = f"{shlex.join(TRUNKFS + args)} 2>{d.base}/cli.err | {reader}; echo ${{PIPESTATUS[0]}}"
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, env=d.env, timeout=120)
    status = int(out.stdout.decode().strip().splitlines()[-1])
    return status, (d.base / "cli.err").read_text()


def test_a_closed_pipe_ends_the_cli_quietly(daemon, workdir):
    d = daemon
    d.cli("repo", "create", "r")
    src = workdir / "many"
    src.mkdir()
    for i in range(6000):       # every output is larger than a pipe's buffer: the writer meets EPIPE
        (src / f"file-with-a-longish-name-{i:05d}").write_text("x")
    first = d.cli("put", "r:/", str(src)).out.strip()
    (workdir / "big").write_bytes(b"y" * (64 << 20))
    d.cli("put", "r:/", str(workdir / "big"))
    for args, reader in ((["ls", "r:/many"], "head -1"), (["diff", f"r@{first}"], "head -1"),
                         (["cat", "r:/big"], "head -c 10"), (["ls", "r:/many", "--json"], "head -c 5")):
        status, err = piped(d, args, f"{reader} >/dev/null")
        assert err == "", (args, err)
        assert status == 141, (args, status)
    assert d.cli("ls", "r").returncode == 0         # the daemon is fine
