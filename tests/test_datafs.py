"""``trunkfs://`` with the real data stack: pandas, pyarrow datasets, Polars
and DuckDB read versions of a repo through a real daemon's socket and
straight from a moto S3 store; filters fetch fewer chunks than the dataset
holds; a reader at a commit never sees later writes; errors are the Python
exceptions callers expect."""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from trunkfs.datafs.filesystem import TrunkFileSystem


def _events(version: int, rows: int = 4000) -> pd.DataFrame:
    return pd.DataFrame({"day": [f"d{i % 4}" for i in range(rows)], "n": [i * version for i in range(rows)],
                         "text": [f"row {i} of v{version}" for i in range(rows)]})


def _write_version(src: Path, version: int) -> None:
    """A CSV and a Parquet dataset partitioned by day (many row groups each)."""
    (src / "labels.csv").write_text("id,label\n" + "".join(f"{i},v{version}-{i}\n" for i in range(50)))
    table = pa.Table.from_pandas(_events(version), preserve_index=False)
    if (src / "events").exists():
        for p in sorted((src / "events").rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    pq.write_to_dataset(table, str(src / "events"), partition_cols=["day"], row_group_size=200,
                        basename_template="part-{i}.parquet")


def _put(d, src: Path, message: str) -> str:
    return d.cli("put", "raw", str(src / "labels.csv"), str(src / "events"), "-m", message,
                 "--json").json()["commit"]


@pytest.fixture
def two_versions(daemon_factory, workdir: Path, shared_store):
    """A daemon (on a file or S3 store) whose repo raw has two commits, the
    first tagged v1; returns (daemon, store flags for direct reads, c1, c2)."""
    url, extra = shared_store
    d = daemon_factory(store_url=url, extra=extra)
    d.cli("repo", "create", "raw")
    src = workdir / "src"
    src.mkdir()
    _write_version(src, 1)
    c1 = _put(d, src, "v1")
    d.cli("tag", "create", f"raw@{c1}", "v1")
    _write_version(src, 2)
    c2 = _put(d, src, "v2")
    direct = {"store": url}
    if extra:
        direct["s3_endpoint"] = extra[extra.index("--s3-endpoint") + 1]
    return d, direct, c1, c2


@pytest.fixture(autouse=True)
def close_filesystems(workdir):
    """Every trunkfs:// filesystem a test made is closed with it (its store
    and cache live in the test's directory)."""
    yield
    for fs in list(TrunkFileSystem._cache.values()) + _made:
        fs.source.close()
    TrunkFileSystem.clear_instance_cache()
    _made.clear()


_made: list[TrunkFileSystem] = []


def make_fs(**options: object) -> TrunkFileSystem:
    fs = TrunkFileSystem(**options, skip_instance_cache=True)
    _made.append(fs)
    return fs


def _filesystems(d, direct: dict) -> dict[str, TrunkFileSystem]:
    return {"socket": make_fs(socket=d.socket),
            "store": make_fs(**direct)}


def test_pandas_and_pyarrow_read_each_version(two_versions, workdir, monkeypatch):
    d, direct, c1, c2 = two_versions
    monkeypatch.setenv("TRUNKFS_CLIENT_DIR", str(workdir / "client"))
    for how, fs in _filesystems(d, direct).items():
        for ref, version in (("v1", 1), (c1, 1), (c1[:12], 1), ("main", 2), (c2, 2)):
            labels = pd.read_csv(fs.open(f"raw@{ref}/labels.csv"))
            assert list(labels["label"][:2]) == [f"v{version}-0", f"v{version}-1"], (how, ref)
            table = ds.dataset(f"raw@{ref}/events", filesystem=fs, format="parquet",
                               partitioning="hive").to_table()
            assert table.num_rows == 4000 and sorted(table["n"].to_pylist())[-1] == 3999 * version, (how, ref)
        frame = pd.read_csv(fs.open("raw/labels.csv"))             # REPO/path: the head of main
        assert frame["label"][0] == "v2-0"
        assert fs.ukey(f"raw@{c1}/labels.csv") == fs.ukey("raw@v1/labels.csv") != fs.ukey("raw/labels.csv")
        assert fs.checksum(f"raw@{c1}/labels.csv") != fs.checksum(f"raw@{c2}/labels.csv")
        assert sorted(fs.ls("raw@v1", detail=False)) == ["raw@v1/events", "raw@v1/labels.csv"]
        assert fs.info("raw@v1/labels.csv")["type"] == "file" and fs.isdir("raw@v1/events")
        assert len(fs.find("raw@v1/events")) == len(fs.glob("raw@v1/events/day=*/*.parquet")) == 4
        assert fs.du("raw@v1/events") == sum(fs.info(p)["size"] for p in fs.find("raw@v1/events"))
        assert fs.exists("raw@v1/labels.csv") and not fs.exists("raw@v1/nothing")
        walked = [(top, files) for top, _dirs, files in fs.walk("raw@v1/events") if files]
        assert len(walked) == 4 and all(files == ["part-0.parquet"] for _, files in walked)
        whole = fs.cat_file("raw@v1/labels.csv")
        assert fs.cat_file("raw@v1/labels.csv", 3, 20) == whole[3:20]
        assert fs.cat_file("raw@v1/labels.csv", -10) == whole[-10:]
        assert "raw" in fs.ls("", detail=False)
    # through fsspec's registry, as pandas users write it
    opened = fsspec.open(f"trunkfs://raw@{c1}/labels.csv", socket=d.socket).open()
    assert opened.read().startswith(b"id,label\n0,v1-0")


def test_a_filter_reads_only_what_it_needs(two_versions, workdir, monkeypatch):
    d, direct, c1, c2 = two_versions
    monkeypatch.setenv("TRUNKFS_CLIENT_DIR", str(workdir / "client"))
    monkeypatch.setenv("TRUNKFS_CLIENT_CACHE", "0")      # every chunk counted as fetched
    fs = make_fs(**direct)
    opened = fs.source.opened
    dataset = ds.dataset(f"raw@{c2}/events", filesystem=fs, format="parquet", partitioning="hive")
    total = fs.du(f"raw@{c2}/events")
    before = opened.fetched_bytes
    rows = dataset.to_table(filter=ds.field("day") == "d2", columns=["n"])
    assert rows.num_rows == 1000
    fetched = opened.fetched_bytes - before
    assert 0 < fetched < total / 3, (fetched, total)


def test_an_open_file_reads_the_commit_it_was_opened_at(daemon_factory, workdir):
    d = daemon_factory()
    d.cli("repo", "create", "raw")
    big = workdir / "big.bin"
    first = os.urandom(3 << 20)
    big.write_bytes(first)
    c1 = d.cli("put", "raw", str(big), "--json").json()["commit"]
    fs = make_fs(socket=d.socket)
    at_branch = fs.open("raw/big.bin", block_size=1 << 20)
    at_commit = fs.open(f"raw@{c1}/big.bin", block_size=1 << 20)
    assert at_branch.read(1000) == first[:1000]
    big.write_bytes(os.urandom(3 << 20))
    d.cli("put", "raw", str(big))
    assert at_branch.read() == first[1000:]           # still the commit it was opened at
    assert at_commit.read() == first
    at_commit.seek(-100, 2)                            # random access: the last 100 bytes
    assert at_commit.read() == first[-100:]
    at_commit.seek(1 << 20)
    assert at_commit.read(10) == first[1 << 20:(1 << 20) + 10]
    assert fs.open("raw/big.bin").read(1000) != first[:1000]   # a new open sees the new head


def test_polars_and_duckdb_read_through_trunkfs(two_versions, workdir):
    polars = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    d, _direct, c1, _c2 = two_versions
    fs = make_fs(socket=d.socket)
    part = fs.glob(f"raw@{c1}/events/day=d1/*.parquet")[0]
    frame = polars.read_parquet(fs.open(part))
    assert frame.height == 1000 and frame["n"].max() == 3997
    con = duckdb.connect()
    con.register_filesystem(fs)
    count = con.execute(f"SELECT count(*), max(n) FROM read_parquet('trunkfs://raw@{c1}/events/*/*.parquet')")
    assert count.fetchone() == (4000, 3999)
    labels = con.execute("SELECT label FROM read_csv('trunkfs://raw@v1/labels.csv') WHERE id = 7")
    assert labels.fetchone() == ("v1-7",)


def test_errors_say_what_is_wrong(daemon_factory, workdir, monkeypatch):
    d = daemon_factory()
    d.cli("repo", "create", "raw")
    (workdir / "a.txt").write_text("a")
    c1 = d.cli("put", "raw", str(workdir / "a.txt"), "--json").json()["commit"]
    fs = make_fs(socket=d.socket)
    with pytest.raises(FileNotFoundError, match="nope"):
        fs.open("nope/a.txt")
    with pytest.raises(FileNotFoundError, match="b.txt"):
        fs.open("raw/b.txt")
    with pytest.raises(FileNotFoundError):
        fs.info("raw@0123456789abcdef/a.txt")
    with pytest.raises(IsADirectoryError):
        fs.open("raw@main")
    with pytest.raises(ValueError):
        fs.info("raw@/a.txt")
    with pytest.raises(PermissionError, match="commit or a tag"):
        fs.open(f"raw@{c1}/new.txt", "wb")
    d.cli("tag", "create", "raw", "v1")
    with pytest.raises(PermissionError, match="commit or a tag"):
        fs.open("raw@v1/new.txt", "wb")
    with pytest.raises(ValueError, match="mode"):
        fs.open("raw/a.txt", "ab")
    with pytest.raises(FileNotFoundError):
        fs.rm("raw/none.txt")
    with pytest.raises(ConnectionError, match="no daemon answers"):
        make_fs(socket=str(workdir / "no-such.sock")).ls("raw")
    monkeypatch.setenv("TRUNKFS_CLIENT_DIR", str(workdir / "client"))
    with pytest.raises(OSError, match="store"):
        TrunkFileSystem(store=str(workdir / "not-a-store" / "x"), skip_instance_cache=True).ls("raw")


def test_a_transaction_is_one_commit_and_a_failed_one_is_none(daemon_factory, workdir):
    d = daemon_factory()
    d.cli("repo", "create", "raw")
    (workdir / "old.csv").write_text("x\n1\n")
    d.cli("put", "raw", str(workdir / "old.csv"))
    fs = TrunkFileSystem(socket=d.socket)     # the instance pandas gets for these options, too
    frame = pd.DataFrame({"a": range(1000), "b": [f"s{i}" for i in range(1000)]})
    before = len(d.cli("log", "raw", "--json").json())
    with fs.commit_on_exit("write the tables"):
        frame.to_parquet("trunkfs://raw/tables/t.parquet", storage_options={"socket": d.socket})
        with fs.open("raw/tables/t.csv", "wb") as f:
            f.write(frame.to_csv(index=False).encode())
        fs.rm("raw/old.csv")
        (workdir / "blob.bin").write_bytes(b"\0" * 5000)
        fs.put_file(str(workdir / "blob.bin"), "raw/tables/blob.bin")
        fs.mkdir("raw/empty/inner")
        assert not fs.exists("raw/tables/t.csv")           # nothing lands before the end
    log = d.cli("log", "raw", "--json").json()
    assert len(log) == before + 1 and log[0]["message"] == "write the tables"
    assert pd.read_parquet("trunkfs://raw/tables/t.parquet", storage_options={"socket": d.socket}).equals(frame)
    assert pd.read_csv(fs.open("raw/tables/t.csv")).equals(frame)
    assert fs.cat_file("raw/tables/blob.bin") == b"\0" * 5000
    assert fs.isdir("raw/empty/inner") and fs.ls("raw/empty/inner") == []
    assert not fs.exists("raw/old.csv")
    with pytest.raises(RuntimeError, match="boom"):
        with fs.transaction:
            with fs.open("raw/tables/half.csv", "wb") as f:
                f.write(b"a,b\n")
            raise RuntimeError("boom")
    assert len(d.cli("log", "raw", "--json").json()) == before + 1      # nothing of it
    assert not fs.exists("raw/tables/half.csv")
    # outside a transaction each closed file is staged on the branch, and fs.commit commits it
    with fs.open("raw/later.txt", "wb") as f:
        f.write(b"later")
    fs.rm("raw/tables/t.csv")
    fs.makedirs("raw/made", exist_ok=True)
    assert not fs.exists("raw/later.txt")
    status = d.cli("status", "raw", "--json").json()["changes"]
    assert {(c["status"], c["path"]) for c in status} == {("A", "/later.txt"), ("D", "/tables/t.csv"),
                                                          ("A", "/made/")}
    done = fs.commit("one more")
    assert list(done) == ["raw@main"] and fs.cat_file("raw/later.txt") == b"later"
    assert not fs.exists("raw/tables/t.csv") and fs.isdir("raw/made")
    assert d.cli("log", "raw", "--json").json()[0]["message"] == "one more"
    assert d.cli("status", "raw", "--json").json()["changes"] == []


def test_dask_dataframe_reads_a_version_across_a_dask_cluster(two_versions, workdir, monkeypatch):
    """Each Dask worker opens trunkfs:// itself (straight from the store: a
    worker has no daemon) and reads its partitions' row groups."""
    dd = pytest.importorskip("dask.dataframe")
    from distributed import Client

    from tests.daskcluster import DaskCluster
    d, direct, c1, c2 = two_versions
    cluster = DaskCluster(workdir / "dask", workers=2)
    try:
        cluster.start()
        with Client(cluster.address, set_as_default=False) as client:
            for commit, version in ((c1, 1), (c2, 2)):
                frame = dd.read_parquet(f"trunkfs://raw@{commit}/events", storage_options=direct)
                total, rows = client.compute([frame["n"].sum(), frame.shape[0]], sync=True)
                assert rows == 4000 and total == version * sum(range(4000))
            seen = client.run(lambda: sorted(os.listdir(os.environ["TRUNKFS_CLIENT_DIR"])))
            assert len(seen) == 2 and all(found for found in seen.values())   # each worker read itself
    finally:
        cluster.stop()


def test_reads_through_the_socket_share_the_daemons_chunk_cache(daemon_factory, workdir):
    """A mounted daemon serves trunkfs:// reads and `trunkfs cat` through the
    mount's chunk cache: what one reader fetched, the next one finds there."""
    d = daemon_factory(mount=True, extra=["--cache-local"])
    d.cli("repo", "create", "raw")
    data = os.urandom(6 << 20)
    (workdir / "big.bin").write_bytes(data)
    d.cli("put", "raw", str(workdir / "big.bin"))
    fs = make_fs(socket=d.socket)

    def cache() -> dict:
        return d.cli("stats", "--json").json()["cache"]
    before = cache()
    assert fs.cat_file("raw/big.bin") == data
    first = cache()
    assert first["misses"] > before["misses"] and first["fetched_bytes"] - before["fetched_bytes"] >= len(data)
    assert fs.cat_file("raw/big.bin", 1000, 3 << 20) == data[1000:3 << 20]
    second = cache()
    assert second["misses"] == first["misses"] and second["hits"] > first["hits"]
    assert (d.mount / "raw" / "big.bin").read_bytes() == data
    assert cache()["misses"] == first["misses"]      # the mount found them too
    assert d.cli("cat", "raw:/big.bin").stdout == data
    assert cache()["misses"] == first["misses"]      # and so did `trunkfs cat`


def test_a_parquet_footer_is_read_without_the_file_body(daemon_factory, workdir, monkeypatch):
    d = daemon_factory()
    d.cli("repo", "create", "raw")
    import numpy as np
    rng = np.random.default_rng(1)
    table = pa.table({f"c{i}": rng.random(120_000) for i in range(8)})
    pq.write_table(table, str(workdir / "wide.parquet"), row_group_size=10_000, compression="none")
    size = (workdir / "wide.parquet").stat().st_size
    d.cli("put", "raw", str(workdir / "wide.parquet"))
    monkeypatch.setenv("TRUNKFS_CLIENT_DIR", str(workdir / "client"))
    fs = make_fs(store=d.store_url)
    meta = pq.read_metadata(fs.open("raw/wide.parquet"))
    assert meta.num_rows == 120_000 and meta.num_row_groups == 12
    assert 0 < fs.source.opened.fetched_bytes < size / 3, (fs.source.opened.fetched_bytes, size)
