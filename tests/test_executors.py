"""Executors in process: the configuration that lists them, the spec that
names one, batch sizes, and a batch run on a "worker" (this process)
against a real store: its manifest, its outputs in the store, and run
claims that count a rerun (a worker that died) against the retries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from tests.inprocess import CommitParts, PutFiles
from trunkfs.daemon.config import Config, load_config
from trunkfs.pipelines.dask_executor import MAX_AUTO_BATCH, batch_size
from trunkfs.pipelines.datums import cut_datums
from trunkfs.pipelines.executorconfig import DASK, check_executor, parse_executors
from trunkfs.pipelines.remote import PROTOCOL, RUNS_PREFIX, StoreOptions, close_worker_stores, run_batch
from trunkfs.pipelines.spec import validate_spec
from trunkfs.store.changes import CommitMeta, author_of
from trunkfs.store.errors import InvalidArgument
from trunkfs.store.store import Store

BASE = {"name": "p", "input": {"repo": "raw"}, "transform": {"cmd": ["true"]}}


def test_a_spec_names_its_executor_and_old_specs_read_as_before() -> None:
    plain = validate_spec(dict(BASE))
    assert plain.executor == "local" and plain.datums_per_task == 0
    assert "executor" not in plain.to_json() and "datums_per_task" not in plain.to_json()
    named = validate_spec(dict(BASE, executor="gpu-cluster", datums_per_task=8))
    assert named.to_json()["executor"] == "gpu-cluster" and named.to_json()["datums_per_task"] == 8
    assert validate_spec(named.to_json()) == named
    for bad in ({"executor": ""}, {"executor": "a b"}, {"executor": 3}, {"datums_per_task": -1},
                {"datums_per_task": 10_001}, {"datums_per_task": True}, {"datums_per_task": 1.5}):
        with pytest.raises(InvalidArgument):
            validate_spec(dict(BASE, **bad))


def test_executors_come_from_tables_and_flags_and_bad_ones_are_refused() -> None:
    found = parse_executors({"big": {"type": "dask", "scheduler": "tcp://10.0.0.5:8786", "wait_seconds": 60,
                                     "datums_per_task": 4}}, ["small=tcp://127.0.0.1:8786"])
    assert sorted(found) == ["big", "local", "small"]
    assert found["big"].type == DASK and found["big"].wait_seconds == 60 and found["big"].datums_per_task == 4
    assert found["small"].scheduler == "tcp://127.0.0.1:8786"
    for raw, flags in (({"local": {"scheduler": "tcp://h:1"}}, []),       # the daemon's own name
                       ({"x": {"scheduler": "http://h:1"}}, []),           # not a Dask address
                       ({"x": {"scheduler": "tcp://h:1", "colour": 1}}, []),
                       ({"x": {"type": "slurm", "scheduler": "tcp://h:1"}}, []),
                       ({"x": {"scheduler": "tcp://h:1", "wait_seconds": 0}}, []),
                       ({"x": {"scheduler": "tcp://h:1", "datums_per_task": -2}}, []),
                       ({"x": "tcp://h:1"}, []), ([], []), ({}, ["noequals"]), ({}, ["bad name=tcp://h:1"])):
        with pytest.raises(InvalidArgument):
            parse_executors(raw, flags)
    with pytest.raises(InvalidArgument, match="'nope'.*big, local, small"):
        check_executor("nope", found)
    check_executor("big", found)


def test_the_config_file_lists_executors_and_a_bad_table_stops_the_start(workdir: Path) -> None:
    good = workdir / "good.toml"
    good.write_text('[executors.cluster]\ntype = "dask"\nscheduler = "tcp://127.0.0.1:8786"\n')
    config = load_config(str(good), {"state": str(workdir / "state")})
    assert sorted(config.executor_configs()) == ["cluster", "local"]
    bad = workdir / "bad.toml"
    bad.write_text('[executors.cluster]\nscheduler = "localhost:8786"\n')
    with pytest.raises(InvalidArgument, match="cluster"):
        load_config(str(bad), {"state": str(workdir / "state")})
    assert Config(state=str(workdir / "s")).executor_configs().keys() == {"local"}


def test_batch_sizes_balance_the_workers_and_stay_small() -> None:
    assert batch_size(32, 4) == 2            # 16 tasks for 4 threads: a free worker takes the next
    assert batch_size(32, 1) == 8
    assert batch_size(1000, 2) == MAX_AUTO_BATCH
    assert batch_size(3, 8) == 1
    assert batch_size(5, 0) == 2             # no worker yet: as if one thread
    assert batch_size(1000, 2, configured=7) == 7


async def _commit_files(store: Store, files: dict[str, bytes]) -> str:
    parts = CommitParts(store)
    await trio.to_thread.run_sync(parts.refs.create_repo, "raw")
    return (await parts.commits.commit("raw", "main", PutFiles(store, files), CommitMeta(message="in", author=author_of(0)))).id


def _request(store_url: str, job: str, commit: str, datums: list, cmd: list[str], retries: int = 0) -> dict:
    return {"protocol": PROTOCOL, "store": StoreOptions(store_url).to_json(), "job": job, "pipeline": "p",
            "batch": "0.1", "input_repo": "raw", "input_commit": commit,
            "command": {"argv": cmd, "env": {"GREETING": "hi"}, "stdin": None, "timeout": 30},
            "retries": retries, "log_limit": 4096, "output_limit": 0, "datums": datums}


async def test_a_batch_reads_its_inputs_from_the_store_and_writes_its_outputs_there(
        store: Store, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUNKFS_WORKER_DIR", str(workdir / "worker"))
    commit = await _commit_files(store, {"a.txt": b"alpha\n", "b.txt": b"beta" * 5000})
    datums = cut_datums(store, store.read_commit(commit).tree, "/*")
    url = store.backend.url
    cmd = ["sh", "-c", 'for f in *; do wc -c < "$f" > "$TRUNKFS_OUTPUT/$f.n"; done; '
                       'echo "$GREETING $TRUNKFS_DATUM $TRUNKFS_JOB"; [ "$TRUNKFS_DATUM" != /b.txt ]']
    try:
        manifest = await trio.to_thread.run_sync(
            run_batch, _request(url, "job1", commit, [[i, d] for i, d in enumerate(datums)], cmd))
    finally:
        close_worker_stores()
    assert manifest["protocol"] == PROTOCOL and manifest["run"] == 1 and not manifest["cancelled"]
    first, second = sorted(manifest["datums"], key=lambda r: r["index"])
    assert first["error"] is None and first["log"]["stdout"] == "hi /a.txt job1\n"
    assert first["log"]["stats"]["download_bytes"] == 6 and first["log"]["stats"]["upload_bytes"] == 2
    assert second["tree"] is None and second["error"] == "exited with 1"     # the worker says why
    # the output is in packs the worker wrote: this store reads it once they are indexed
    store.index_packs(manifest["packs"])
    (entry,) = store.read_tree(first["tree"])
    assert entry["name"] == "a.txt.n" and b"".join(store.iter_file(entry)) == b"6\n"
    assert json.loads(store.backend.get(f"{RUNS_PREFIX}job1/0.1/1"))["worker"]


async def test_a_rerun_counts_as_an_attempt_and_none_is_left_past_the_retries(
        store: Store, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What Dask does when a worker dies mid-batch: it runs the task again.
    Each run claims the next run number, so the pipeline's retries bound
    the runs whatever the scheduler's own limit is."""
    monkeypatch.setenv("TRUNKFS_WORKER_DIR", str(workdir / "worker"))
    commit = await _commit_files(store, {"a": b"1"})
    datums = [[0, d] for d in cut_datums(store, store.read_commit(commit).tree, "/*")]
    copy = ["sh", "-c", 'cp -r . "$TRUNKFS_OUTPUT"']
    try:
        store.backend.put_if(f"{RUNS_PREFIX}job2/0.1/1", b'{"worker": "one that died"}', None)
        rerun = await trio.to_thread.run_sync(run_batch, _request(store.backend.url, "job2", commit, datums,
                                                                  copy, retries=1))
        assert rerun["run"] == 2 and rerun["datums"][0]["error"] is None
        assert rerun["datums"][0]["log"]["attempts"] == 2
        again = await trio.to_thread.run_sync(run_batch, _request(store.backend.url, "job2", commit, datums,
                                                                  copy, retries=1))
        assert again["datums"][0]["tree"] is None and "died 2 times" in again["datums"][0]["error"]
        with pytest.raises(Exception, match="protocol"):
            await trio.to_thread.run_sync(run_batch, dict(_request(store.backend.url, "j", commit, datums, copy),
                                                          protocol=99))
    finally:
        close_worker_stores()
    # two worker processes never share a slot (one RocksDB index each)
    assert os.path.isdir(workdir / "worker")
