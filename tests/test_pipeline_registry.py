"""Registering pipelines: specs in TOML and JSON, versions, and every refusal."""

from __future__ import annotations

import json
import os

import pytest


def spec_file(workdir, name: str, obj: dict | str, suffix: str = ".json"):
    path = workdir / f"{name}{suffix}"
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


def spec(name="count", repo="raw", glob="/*", output=None, **extra) -> dict:
    out = {"name": name, "input": {"repo": repo, "branch": "main", "glob": glob},
           "transform": {"cmd": ["python3", "count.py"], "env": {"MODE": "fast"}},
           "parallelism": 2, "timeout": 600, "retries": 1}
    if output is not None:
        out["output"] = output
    out.update(extra)
    return out


def test_create_list_show_update_delete(daemon, workdir):
    daemon.cli("repo", "create", "raw")
    r = daemon.cli("pipeline", "create", "-f", spec_file(workdir, "a", spec()), "--json").json()
    assert r["version"] == 1 and r["owner"]["uid"] == os.getuid()
    assert r["spec"]["output"] == "count" and r["spec"]["input"]["glob"] == "/*"
    # the output repo was created
    assert "count" in [x["name"] for x in daemon.cli("repo", "list", "--json").json()]
    toml = """
name = "upper"
output = "upper-out"
[input]
repo = "count"
glob = "/**"
[transform]
cmd = ["tr", "a-z", "A-Z"]
stdin = "data"
"""
    r = daemon.cli("pipeline", "create", "-f", spec_file(workdir, "b", toml, ".toml"), "--json").json()
    assert r["spec"]["input"] == {"repo": "count", "branch": "main", "glob": "/**"}
    assert r["spec"]["transform"]["stdin"] == "data" and r["spec"]["parallelism"] == 1
    names = [p["name"] for p in daemon.cli("pipeline", "list", "--json").json()]
    assert names == ["count", "upper"]
    assert "raw@main /* -> count" in daemon.cli("pipeline", "list").out
    changed = spec(parallelism=4)
    r = daemon.cli("pipeline", "update", "-f", spec_file(workdir, "c", changed), "--json").json()
    assert r["version"] == 2 and r["spec"]["parallelism"] == 4
    assert daemon.cli("pipeline", "show", "count", "--json").json()["version"] == 2
    daemon.cli("pipeline", "delete", "upper")
    assert [p["name"] for p in daemon.cli("pipeline", "list", "--json").json()] == ["count"]
    gone = daemon.cli("pipeline", "show", "upper", check=False)
    assert gone.returncode != 0 and "does not exist" in gone.err
    # pipelines live in the store: a restart with a fresh index keeps them
    daemon.stop()
    import shutil
    shutil.rmtree(daemon.state / "index")
    daemon.start()
    assert daemon.cli("pipeline", "show", "count", "--json").json()["spec"]["parallelism"] == 4


@pytest.mark.parametrize("bad,why", [
    (spec(colour="red"), "unknown field 'colour'"),
    (dict(spec(), input={"repo": "raw", "glob": "/*", "when": "now"}), "unknown field 'when' in 'input'"),
    (dict(spec(), transform={"cmd": ["true"], "shell": True}), "unknown field 'shell' in 'transform'"),
    (spec(repo="missing"), "repo 'missing' does not exist"),
    (spec(glob="/*.csv"), "glob '/*.csv' is not supported"),
    (spec(glob="**"), "is not supported"),
    (dict(spec(), transform={"cmd": []}), "non-empty list"),
    (dict(spec(), transform={"cmd": "python3 x.py"}), "'transform.cmd' must be list"),
    (spec(parallelism=0), "'parallelism' must be between"),
    (spec(parallelism="2"), "'parallelism' must be int"),
    (spec(retries=-1), "'retries' must be between"),
    (spec(name="bad name"), "white space"),
    (spec(output="raw"), "cycle"),
])
def test_refusals(daemon, workdir, bad, why):
    daemon.cli("repo", "create", "raw")
    res = daemon.cli("pipeline", "create", "-f", spec_file(workdir, "bad", bad), check=False)
    assert res.returncode != 0
    assert why in res.err, res.err
    assert daemon.cli("pipeline", "list", "--json").json() == []


def test_taken_names_cycles_and_shared_outputs(daemon, workdir):
    daemon.cli("repo", "create", "raw")
    daemon.cli("pipeline", "create", "-f", spec_file(workdir, "a", spec("split", output="parts")))
    daemon.cli("pipeline", "create", "-f", spec_file(workdir, "b", spec("clean", repo="parts", output="clean")))
    taken = daemon.cli("pipeline", "create", "-f", spec_file(workdir, "c", spec("split", output="other")),
                       check=False)
    assert taken.returncode != 0 and "already exists" in taken.err
    cycle = daemon.cli("pipeline", "create", "-f", spec_file(workdir, "d", spec("back", repo="clean", output="raw")),
                       check=False)
    assert cycle.returncode != 0 and "cycle" in cycle.err
    shared = daemon.cli("pipeline", "create", "-f", spec_file(workdir, "e", spec("dup", output="clean")),
                        check=False)
    assert shared.returncode != 0 and "already the output of pipeline 'clean'" in shared.err
    missing = daemon.cli("pipeline", "update", "-f", spec_file(workdir, "f", spec("nope", output="x")),
                         check=False)
    assert missing.returncode != 0 and "does not exist" in missing.err
    broken = daemon.cli("pipeline", "create", "-f", spec_file(workdir, "g", "name = [", ".toml"), check=False)
    assert broken.returncode == 2 and "not valid JSON or TOML" in broken.err
    assert [p["name"] for p in daemon.cli("pipeline", "list", "--json").json()] == ["clean", "split"]
