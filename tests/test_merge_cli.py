"""``trunkfs merge`` and ``trunkfs revert`` end to end against a daemon:
fast-forward, three-way merges (with the pipelines they trigger), ``log``
and ``diff`` across a merge, conflicts and strategies, reverts, and staged
changes of the target branch through a merge."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .test_byte_names import cli_bytes
from .test_pipelines import register, sh, wait_all

BAD = os.fsdecode(b"caf\xe9.txt")   # a name that is not UTF-8


def put(d, workdir: Path, spec: str, files: dict[str, bytes]) -> str:
    """Put files (names at the top of the branch) in one commit; its id."""
    src = workdir / "put-src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    return cli_bytes(d, "put", spec, *[str(src / n) for n in files]).stdout.decode().strip()


def cat(d, spec: str) -> bytes:
    return cli_bytes(d, "cat", spec).stdout


def head(d, spec: str = "r") -> str:
    return d.cli("show", spec, "--json").json()["id"]


def test_fast_forward_then_a_three_way_merge_with_log_diff_and_pipelines(daemon, workdir):
    d = daemon
    d.cli("repo", "create", "r")
    base = put(d, workdir, "r", {"a": b"0", "b": b"0"})
    d.cli("branch", "create", "r@f")
    register(d, workdir, {"name": "copy", "input": {"repo": "r", "glob": "/*"},
                          "transform": sh('cp "$TRUNKFS_INPUT"/* "$TRUNKFS_OUTPUT"/')})
    f1 = put(d, workdir, "r@f", {"a": b"f1"})

    ff = d.cli("merge", "r@f", "--json").json()
    assert (ff["kind"], ff["commit"]) == ("fast-forward", f1)
    assert head(d) == f1 and len(ff["jobs"]) == 1       # a new head: the pipeline runs for it
    assert [j["input"]["commit"] for j in wait_all(d)] == [f1]
    assert d.cli("merge", "r@f").out.strip() == f"r@main already contains r@{f1[:12]}"

    m1 = put(d, workdir, "r", {"b": b"main"})
    f2 = put(d, workdir, "r@f", {"c": b"f2"})
    text = d.cli("merge", "r@f", "-m", "bring f in").out.strip()
    merged = head(d)
    assert text == f"merged r@{f2[:12]} into r@main: {merged}"
    assert cat(d, "r:/a") == b"f1" and cat(d, "r:/b") == b"main" and cat(d, "r:/c") == b"f2"
    jobs = wait_all(d)
    assert jobs[-1]["input"]["commit"] == merged and jobs[-1]["state"] == "succeeded"
    assert cat(d, "copy:/c") == b"f2"

    log = d.cli("log", "r", "--json").json()
    assert log[0]["id"] == merged and log[0]["parents"] == [m1, f2] and log[0]["message"] == "bring f in"
    assert [c["id"] for c in log] == [merged, m1, f1, base]      # first parents
    lines = d.cli("log", "r", "-n", "2").out.splitlines()
    assert f"Merge:  {m1[:12]} {f2[:12]}" in lines
    assert f"Parent: {f1}" in lines                              # an ordinary commit keeps its line
    assert d.cli("diff", f"r@{m1}", f"r@{merged}").out.splitlines() == ["A /c"]
    assert d.cli("diff", f"r@{f2}", "r@main").out.splitlines() == ["M /b"]
    assert d.cli("diff", f"r@{base}", "r@main").out.splitlines() == ["M /a", "M /b", "A /c"]
    assert d.cli("diff", "r@main").out.splitlines() == ["A /c"]  # what the merge brought: against its first parent
    assert d.cli("fsck").returncode == 0


def test_a_conflict_lists_every_path_and_a_strategy_settles_them(daemon, workdir):
    d = daemon
    d.cli("repo", "create", "r")
    put(d, workdir, "r", {"a": b"0", "ok": b"0", BAD: b"0"})
    d.cli("branch", "create", "r@f")
    mine = put(d, workdir, "r", {"a": b"main", BAD: b"main", "ok": b"main"})
    put(d, workdir, "r@f", {"a": b"f", BAD: b"f"})

    failed = cli_bytes(d, "merge", "r@f", "--json", check=False)
    assert failed.returncode == 1
    error = json.loads(failed.stdout)["error"]
    assert error["code"] == "conflict"
    assert error["details"] == {"paths": sorted(["/a", "/" + BAD])}
    assert b"/a" in failed.stderr and b"caf" in failed.stderr and b"/ok" not in failed.stderr
    assert head(d) == mine

    ours = d.cli("merge", "r@f", "--strategy", "ours", "--json").json()
    assert ours["kind"] == "merge" and ours["resolved"] == sorted(["/a", "/" + BAD])
    assert cat(d, "r:/a") == b"main" and cat(d, "r:/" + BAD) == b"main"
    assert d.cli("log", "r", "--json").json()[0]["parents"][0] == mine

    d.cli("branch", "create", "r@g", "--from", mine)
    theirs = cli_bytes(d, "merge", "r@f", "--into", "g", "--strategy", "theirs").stdout.splitlines()
    assert theirs[0].startswith(b"merged r@") and b"into r@g" in theirs[0]
    assert theirs[1:] == [b"conflict settled: /a", b"conflict settled: /caf\xe9.txt"]   # a name as its bytes
    assert cat(d, "r@g:/a") == b"f" and cat(d, "r@g:/" + BAD) == b"f" and cat(d, "r@g:/ok") == b"main"
    bad = d.cli("merge", "r@f", "--strategy", "mine", check=False)
    assert bad.returncode == 2 and "invalid choice" in bad.err


def test_revert_undoes_a_commit_or_conflicts_with_a_later_one(daemon, workdir):
    d = daemon
    d.cli("repo", "create", "r")
    put(d, workdir, "r", {"a": b"0", "b": b"0"})
    bad = put(d, workdir, "r", {"a": b"bad"})
    put(d, workdir, "r", {"c": b"later"})
    out = d.cli("revert", f"r@{bad}").out.strip()
    reverted = head(d)
    assert out == f"reverted r@{bad[:12]} on r@main: {reverted}"
    assert cat(d, "r:/a") == b"0" and cat(d, "r:/c") == b"later"
    shown = d.cli("show", "r", "--json").json()
    assert shown["message"].startswith("Revert ") and bad[:12] in shown["message"]
    assert d.cli("diff", "r@main").out.splitlines() == ["M /a"]

    touched = put(d, workdir, "r", {"b": b"1"})
    put(d, workdir, "r", {"b": b"2"})
    failed = d.cli("revert", f"r@{touched}", "--json", check=False)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["error"]["details"] == {"paths": ["/b"]}
    assert cat(d, "r:/b") == b"2"

    d.cli("branch", "create", "r@f")
    elsewhere = put(d, workdir, "r@f", {"x": b"1"})
    res = d.cli("revert", f"r@{elsewhere}", check=False)
    assert res.returncode == 1 and "not in the history of r@main" in res.err
    d.cli("revert", f"r@{elsewhere}", "--branch", "f")
    assert d.cli("ls", "r@f", "--json").json()["entries"] == d.cli("ls", "r", "--json").json()["entries"]


def test_staged_changes_of_the_target_stay_staged_through_a_merge(mounted, workdir):
    d = mounted
    d.cli("repo", "create", "r")
    put(d, workdir, "r", {"a": b"0", "b": b"0"})
    d.cli("branch", "create", "r@f")
    put(d, workdir, "r@f", {"a": b"f"})
    view = d.mount / "r"
    (view / "b").write_bytes(b"staged")
    (view / "new").write_bytes(b"new")
    staged = d.cli("status", "r").out.splitlines()
    assert staged == ["M /b", "A /new"]

    assert d.cli("merge", "r@f", "--json").json()["kind"] == "fast-forward"
    assert d.cli("status", "r").out.splitlines() == staged
    assert (view / "a").read_bytes() == b"f" and (view / "b").read_bytes() == b"staged"

    put(d, workdir, "r@f", {"c": b"f"})
    put(d, workdir, "r", {"d": b"main"})
    assert d.cli("merge", "r@f", "--json").json()["kind"] == "merge"
    assert d.cli("status", "r").out.splitlines() == staged
    assert (view / "c").read_bytes() == b"f"
    d.cli("commit", "r", "-m", "staged")
    assert d.cli("status", "r").out == ""
    assert {e["name"]: e["size"] for e in d.cli("ls", "r", "--json").json()["entries"]} == {
        "a": 1, "b": 6, "c": 1, "d": 4, "new": 3}
    assert cat(d, "r:/b") == b"staged"
