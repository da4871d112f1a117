"""The chunk cache on a real store: single-flight, byte bound and LRU order,
restarts, damaged data, prefetch and readahead, a full cache disk."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from trunkfs.cache.chunkcache import ChunkCache, default_cache_limit
from trunkfs.cache.readahead import SequentialReadahead
from trunkfs.store.backends.factory import open_backend
from trunkfs.store.backends.local import LocalBackend
from trunkfs.store.backends.wrappers import MeteredBackend
from trunkfs.store.errors import IntegrityError, ObjectMissing
from trunkfs.store.packs import pack_key
from trunkfs.store.store import Store

KIB = 1024


class CountingStore(Store):
    """A real Store that counts its chunk reads, and can make them slow so
    that concurrent callers really overlap."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.reads: Counter[bytes] = Counter()
        self.delay = 0.0
        self.active = 0
        self.peak = 0
        self.calls = 0   # read_blobs calls: one per coalesced batch
        self._count_lock = threading.Lock()

    @contextlib.contextmanager
    def _counted(self, bids: list[bytes]) -> Iterator[None]:
        with self._count_lock:
            for bid in bids:
                self.reads[bid] += 1
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            yield
        finally:
            with self._count_lock:
                self.active -= 1

    def read_blob(self, bid: bytes) -> bytes:
        with self._counted([bid]):
            return super().read_blob(bid)

    def read_blobs(self, blob_ids: list[bytes], pool=None) -> list[bytes]:
        with self._count_lock:
            self.calls += 1
        with self._counted(blob_ids):
            return super().read_blobs(blob_ids, pool)

    @property
    def total_reads(self) -> int:
        return sum(self.reads.values())


@pytest.fixture
def store(workdir: Path):
    s = CountingStore(MeteredBackend(LocalBackend(str(workdir / "store"))), str(workdir / "index"),
                      str(workdir / "tmp")).open()
    yield s
    s.close()


@pytest.fixture
def make_cache(store: CountingStore, workdir: Path):
    made: list[ChunkCache] = []

    def make(limit: int = 1 << 30, directory: Path | None = None, **kw) -> ChunkCache:
        # cache files written in the fetching thread, so that a test sees them
        # right after get(); test_write_behind covers the daemon's default
        kw.setdefault("write_behind", False)
        c = ChunkCache(store, str(directory or workdir / "cache"), limit, **kw)
        c.open()
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def put_chunks(store: Store, sizes: list[int], seed: int = 0) -> list[tuple[bytes, bytes]]:
    """Ingest one small file per size (a file under the chunker's minimum is
    one chunk); return ``(chunk id, bytes)`` pairs."""
    rng = random.Random(seed)
    session = store.session()
    out = []
    for size in sizes:
        data = rng.randbytes(size)
        chunks, n = session.put_bytes(data)
        assert n == size and len(chunks) == 1 and chunks[0][1] == size
        out.append((bytes.fromhex(chunks[0][0]), data))
    session.flush()
    return out


def cached_ids(directory: Path) -> set[bytes]:
    return {bytes.fromhex(p.name) for p in directory.glob("??/*")}


def disk_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def chunk_file(directory: Path, bid: bytes) -> Path:
    return directory / bid.hex()[:2] / bid.hex()


# -- reading ---------------------------------------------------------------------

async def test_get_returns_the_chunks_of_a_file_and_caches_them(store, make_cache, workdir):
    data = random.Random(1).randbytes(3 * 1024 * 1024 + 123)
    session = store.session()
    chunks, size = session.put_bytes(data)
    session.flush()
    ids = [bytes.fromhex(c[0]) for c in chunks]
    assert len(ids) >= 2
    cache = make_cache()

    assert b"".join([await cache.get(bid) for bid in ids]) == data
    assert store.total_reads == len(ids)
    cache.flush_writes()  # cache files are written behind the reads
    st = cache.stats()
    assert (st["misses"], st["hits"], st["entries"]) == (len(ids), 0, len(ids))
    assert st["fetched_bytes"] == st["size"] == len(data)
    assert st["memory_bytes"] == len(data)
    assert disk_bytes(workdir / "cache") == len(data)
    start = 0
    for (hexid, length) in chunks:  # plain bytes, one file per chunk, named by id
        assert chunk_file(workdir / "cache", bytes.fromhex(hexid)).read_bytes() == data[start:start + length]
        start += length

    assert b"".join([await cache.get(bid) for bid in ids]) == data
    assert store.total_reads == len(ids)
    assert cache.stats()["hits"] == len(ids)


async def test_fifty_concurrent_gets_of_a_cold_chunk_fetch_once(store, make_cache):
    [(bid, data)] = put_chunks(store, [100 * KIB])
    store.delay = 0.05
    cache = make_cache()
    results: list[bytes] = []

    async def reader() -> None:
        results.append(await cache.get(bid))

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(reader)
    assert results == [data] * 50
    assert store.reads[bid] == 1
    st = cache.stats()
    assert st["fetches"] == 1 and st["fetched_bytes"] == len(data)
    assert st["misses"] == 50 and st["hits"] == 0

    assert await cache.get(bid) == data
    assert store.reads[bid] == 1
    assert cache.stats()["hits"] == 1


async def test_a_memory_hit_does_not_leave_the_event_loop(store, make_cache):
    (a, da), (b, db) = put_chunks(store, [10 * KIB, 10 * KIB])
    cache = make_cache()
    await cache.get(a)
    with trio.CancelScope() as scope:
        scope.cancel()  # any checkpoint (a thread hop) would raise Cancelled now
        got = await cache.get(a)
    assert got == da and not scope.cancelled_caught
    with trio.CancelScope() as scope:
        scope.cancel()
        await cache.get(b)  # a miss goes to a thread, so it is cancelled here
    assert scope.cancelled_caught
    assert await cache.get(b) == db


async def test_memory_layer_is_bounded_and_backed_by_disk(store, make_cache):
    pieces = put_chunks(store, [64 * KIB] * 5)
    cache = make_cache(memory_bytes=3 * 64 * KIB)
    for bid, _ in pieces:
        await cache.get(bid)
    st = cache.stats()
    assert st["memory_bytes"] == 3 * 64 * KIB and st["memory_entries"] == 3
    assert await cache.get(pieces[4][0]) == pieces[4][1]
    assert cache.stats()["memory_hits"] == 1
    assert await cache.get(pieces[0][0]) == pieces[0][1]  # fell out of memory, still on disk
    st = cache.stats()
    assert st["disk_hits"] == 1 and st["hits"] == 2
    assert store.total_reads == 5


@pytest.mark.parametrize("memory_bytes", [0, 64 << 20], ids=["disk-only", "with-memory"])
async def test_disk_bound_holds_and_least_recently_used_go_first(store, make_cache, workdir,
                                                                   memory_bytes):
    pieces = put_chunks(store, [64 * KIB] * 10)
    ids = [bid for bid, _ in pieces]
    limit = 5 * 64 * KIB
    cache = make_cache(limit, memory_bytes=memory_bytes)
    for bid in ids[:5]:
        await cache.get(bid)
        cache.flush_writes()  # cache files are written behind the reads
    assert await cache.get(ids[0]) == pieces[0][1]  # 0 is now more recent than 1
    await cache.get(ids[5])
    cache.flush_writes()
    assert cached_ids(workdir / "cache") == {ids[0], ids[2], ids[3], ids[4], ids[5]}
    for bid in ids[6:]:
        await cache.get(bid)
        cache.flush_writes()
        assert disk_bytes(workdir / "cache") <= limit
        assert cache.stats()["size"] == disk_bytes(workdir / "cache")
    assert cached_ids(workdir / "cache") == set(ids[5:])
    st = cache.stats()
    assert st["entries"] == 5 and st["size"] == limit and st["evictions"] == 5
    assert store.total_reads == 10
    # chunk 1 left the disk; only the memory layer (when there is one) still has it
    assert await cache.get(ids[1]) == pieces[1][1]
    assert store.reads[ids[1]] == (2 if memory_bytes == 0 else 1)


async def test_a_chunk_larger_than_the_limit_is_served_but_not_kept(store, make_cache, workdir):
    [(small, _), (big, big_data)] = put_chunks(store, [10 * KIB, 100 * KIB])
    cache = make_cache(50 * KIB, memory_bytes=0)
    await cache.get(small)
    assert await cache.get(big) == big_data
    assert cached_ids(workdir / "cache") == {small}


# -- restarts and damaged files ---------------------------------------------------

async def test_restart_keeps_entries_and_serves_them_without_fetching(store, make_cache):
    pieces = put_chunks(store, [30 * KIB, 40 * KIB, 50 * KIB, 60 * KIB])
    first = make_cache()
    for bid, _ in pieces:
        await first.get(bid)
    first.close()
    assert store.total_reads == 4

    second = make_cache()
    st = second.stats()
    assert st["entries"] == 4 and st["size"] == 180 * KIB
    for bid, data in pieces:
        assert await second.get(bid) == data
    assert store.total_reads == 4
    assert second.stats()["disk_hits"] == 4


async def test_restart_rebuilds_the_lru_order_from_mtimes(store, make_cache, workdir):
    pieces = put_chunks(store, [20 * KIB] * 6)
    ids = [bid for bid, _ in pieces]
    first = make_cache()
    for bid in ids:
        await first.get(bid)
    first.close()
    order = [3, 0, 5, 1, 4, 2]  # oldest first
    base = time.time() - 1000
    for age, i in enumerate(order):
        t = base + 10 * age
        os.utime(chunk_file(workdir / "cache", ids[i]), (t, t))

    second = make_cache(limit=3 * 20 * KIB)  # a smaller bound: open evicts the oldest three
    assert cached_ids(workdir / "cache") == {ids[i] for i in order[3:]}
    assert second.stats()["entries"] == 3
    await second.get(ids[0])  # a miss: evicts the oldest remaining, chunk 1
    second.flush_writes()
    assert cached_ids(workdir / "cache") == {ids[0], ids[4], ids[2]}


async def test_open_removes_torn_temp_and_stray_files(store, make_cache, workdir):
    (a, da), (b, db) = put_chunks(store, [64 * KIB, 32 * KIB])
    first = make_cache()
    await first.get(a)
    await first.get(b)
    first.close()
    d = workdir / "cache"
    with open(chunk_file(d, a), "r+b") as f:  # a torn write under the final name
        f.truncate(1000)
    (d / ".tmp-leftover").write_bytes(b"half a chunk")
    (d / "ab" / "not-a-chunk-id").write_bytes(b"x")
    unknown = os.urandom(32)  # a well-formed id the store does not have
    chunk_file(d, unknown).write_bytes(b"y" * 10)
    misplaced = d / ("00" if b.hex()[:2] != "00" else "01") / b.hex()
    misplaced.write_bytes(db)

    second = make_cache()
    assert cached_ids(d) == {b}
    assert not (d / ".tmp-leftover").exists() and not misplaced.exists()
    assert not (d / "ab" / "not-a-chunk-id").exists()
    st = second.stats()
    assert st["entries"] == 1 and st["size"] == len(db)
    assert await second.get(a) == da
    assert store.reads[a] == 2
    second.flush_writes()
    assert chunk_file(d, a).read_bytes() == da


@pytest.mark.allow_warnings
async def test_a_damaged_cache_file_is_refetched_not_served(store, make_cache, workdir, caplog):
    [(a, da)] = put_chunks(store, [64 * KIB])
    cache = make_cache(memory_bytes=0)
    await cache.get(a)
    cache.flush_writes()
    path = chunk_file(workdir / "cache", a)
    with open(path, "r+b") as f:  # same size, wrong bytes
        f.seek(5000)
        f.write(bytes([da[5000] ^ 0xFF]))
    assert await cache.get(a) == da
    assert store.reads[a] == 2
    cache.flush_writes()
    assert path.read_bytes() == da
    assert cache.stats()["damaged"] == 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "damaged" in warnings[0].getMessage()


async def test_a_corrupt_pack_raises_and_caches_nothing(store, make_cache, workdir):
    [(a, da)] = put_chunks(store, [64 * KIB], seed=7)
    loc = store.index.blob(a)
    pack = os.path.join(store.backend.root, pack_key(loc.pack_id))

    def flip() -> None:
        with open(pack, "r+b") as f:
            f.seek(loc.offset + 100)
            byte = f.read(1)
            f.seek(loc.offset + 100)
            f.write(bytes([byte[0] ^ 0xFF]))

    flip()
    store.delay = 0.02
    cache = make_cache()
    errors: list[BaseException] = []

    async def reader() -> None:
        try:
            await cache.get(a)
        except IntegrityError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(reader)
    assert len(errors) == 10 and all(a.hex() in str(e) for e in errors)
    assert store.reads[a] == 1
    d = workdir / "cache"
    assert cached_ids(d) == set() and disk_bytes(d) == 0
    assert cache.stats()["entries"] == 0 and cache.stats()["memory_entries"] == 0

    with pytest.raises(IntegrityError):  # not remembered: the store is asked again
        await cache.get(a)
    assert store.reads[a] == 2

    flip()  # repaired
    assert await cache.get(a) == da
    assert store.reads[a] == 3
    cache.flush_writes()
    assert cached_ids(d) == {a}


async def test_a_missing_chunk_raises_object_missing(store, make_cache, workdir):
    cache = make_cache()
    ghost = os.urandom(32)
    for _ in range(2):
        with pytest.raises(ObjectMissing):
            await cache.get(ghost)
    assert store.reads[ghost] == 2
    assert cache.stats()["entries"] == 0 and cached_ids(workdir / "cache") == set()


# -- prefetch and readahead -------------------------------------------------------

async def test_prefetch_loads_in_the_background_with_bounded_concurrency(store, make_cache):
    pieces = put_chunks(store, [16 * KIB] * 12)
    store.delay = 0.03
    cache = make_cache(max_fetches=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        for bid, _ in pieces:   # twelve batches of one chunk
            cache.prefetch([bid])
        cache.prefetch([pieces[0][0]])  # already loading: not asked twice
        with trio.fail_after(10):
            await cache.wait_idle()
        assert store.total_reads == 12 and set(store.reads.values()) == {1}
        assert 1 < store.peak <= 4
        st = cache.stats()
        assert st["prefetched"] == 12 and st["entries"] == 12 and st["prefetch_pending"] == 0
        for bid, data in pieces:
            assert await cache.get(bid) == data
        st = cache.stats()
        assert st["hits"] == 12 and st["misses"] == 0
        assert store.total_reads == 12
        nursery.cancel_scope.cancel()


async def test_a_prefetched_batch_is_one_coalesced_read_and_readers_wait_for_it(store, make_cache):
    """A batch of chunks that neighbour in a pack is one request to the
    backend; a reader that asks for one of them meanwhile waits for that
    request instead of making its own."""
    pieces = put_chunks(store, [64 * KIB] * 8, seed=9)
    store.delay = 0.1
    cache = make_cache()
    before = store.backend.counts().get("get", {"areas": {}})["areas"].get("packs", {}).get("requests", 0)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        cache.prefetch([bid for bid, _ in pieces])
        got = await cache.get_many([pieces[5][0], pieces[2][0]])
        assert got == [pieces[5][1], pieces[2][1]]
        assert await cache.get(pieces[7][0]) == pieces[7][1]
        await cache.wait_idle()
        nursery.cancel_scope.cancel()
    assert store.calls == 1 and set(store.reads.values()) == {1}
    assert store.backend.counts()["get"]["areas"]["packs"]["requests"] - before == 1
    st = cache.stats()
    assert st["prefetch_batches"] == 1 and st["prefetched"] == 8 and st["fetched_bytes"] == 8 * 64 * KIB


async def test_prefetch_after_run_stops_asks_nothing_and_leaves_no_waiter_behind(store, make_cache):
    pieces = put_chunks(store, [16 * KIB] * 3, seed=10)
    cache = make_cache()
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        nursery.cancel_scope.cancel()
    cache.prefetch([bid for bid, _ in pieces])   # not running: a no-op
    with trio.fail_after(5):
        assert await cache.get(pieces[1][0]) == pieces[1][1]
    assert store.total_reads == 1


async def test_a_sequential_read_with_readahead_overlaps_fetches(store, make_cache):
    pieces = put_chunks(store, [40 * KIB] * 16, seed=3)
    data = b"".join(d for _, d in pieces)
    ids = [bid for bid, _ in pieces]
    starts = [i * 40 * KIB for i in range(16)]
    store.delay = 0.02
    # a small window in batches of two chunks: several requests in flight
    cache = make_cache(readahead_bytes=160 * KIB, request_bytes=80 * KIB)
    ra = cache.readahead(ids, [40 * KIB] * 16)
    assert ra is not None
    out = bytearray()
    batches = []
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        for off in range(0, len(data), 16 * KIB):  # what the FUSE layer does per read
            size = min(16 * KIB, len(data) - off)
            for batch in ra.on_read(off, size):
                batches.append(batch)
                cache.prefetch([ids[i] for i in batch])
            i = off // (40 * KIB)
            chunk = await cache.get(ids[i])
            piece = chunk[off - starts[i]:off - starts[i] + size]
            if len(piece) < size:
                piece += (await cache.get(ids[i + 1]))[:size - len(piece)]
            out += piece
        nursery.cancel_scope.cancel()
    assert bytes(out) == data
    assert set(store.reads.values()) == {1} and len(store.reads) == 16
    assert all(len(b) <= 2 for b in batches) and sum(map(len, batches)) == 15
    assert store.peak > 1
    assert cache.stats()["prefetched"] == 15


def test_readahead_window_grows_on_sequential_reads():
    ra = SequentialReadahead([100] * 40, initial=200, maximum=800, batch=300, trigger=300)
    assert ra.on_read(0, 50) == [[1, 2, 3]]  # a first batch, filled to the batch size
    assert ra.on_read(50, 50) == []  # same chunk, already asked for
    assert ra.on_read(100, 100) == [[4, 5, 6]]  # window 400
    assert ra.on_read(200, 100) == [[7, 8, 9], [10, 11, 12]]  # window 800: two batches in flight
    assert ra.window == 800
    assert ra.on_read(3000, 10) == []  # a seek: the window resets
    assert ra.window == 200
    assert ra.on_read(3010, 10) == []  # not from the start: streams only after 300 bytes
    assert ra.on_read(3020, 100) == []
    assert ra.on_read(3120, 100) == []
    assert ra.on_read(3220, 100) == [[34, 35, 36]]
    assert ra.on_read(3320, 100) == [[37, 38, 39]]  # never past the last chunk
    assert ra.on_read(3420, 580) == []
    assert ra.on_read(4000, 10) == []  # at EOF


def test_readahead_batches_end_where_the_pack_ends():
    ra = SequentialReadahead([100] * 10, initial=100, maximum=1000, batch=10_000, group=lambda i: i // 3)
    assert ra.on_read(0, 100) == [[1, 2]]  # up to the end of the first pack
    assert ra.on_read(100, 100) == [[3, 4, 5]]  # the next pack whole
    assert ra.on_read(200, 100) == [[6, 7, 8]]
    assert ra.on_read(300, 100) == [[9]]


def test_readahead_asks_for_each_pack_once_when_its_chunks_interleave():
    """A put appends chunks to packs in the order its threads finish, so at
    a pack boundary a few chunks of each pack sit among the other's: each
    pack is still one batch."""
    packs = ["B" if i == 8 else "A" if i < 10 or i == 11 else "B" for i in range(20)]
    ra = SequentialReadahead([100] * 20, initial=1000, maximum=4000, batch=1000, group=packs.__getitem__)
    batches = ra.on_read(0, 100)
    assert batches == [[1, 2, 3, 4, 5, 6, 7, 9, 11], [8, 10, 12, 13, 14, 15, 16, 17, 18, 19]]
    assert [packs[i] for i in batches[0]] == ["A"] * 9
    assert ra.on_read(100, 1900) == []   # everything is asked for


def test_readahead_ignores_random_access_and_empty_files():
    ra = SequentialReadahead([1000] * 100, initial=2000, maximum=8000, batch=2000, trigger=4000)
    rng = random.Random(4)
    prev = -100_000
    for _ in range(50):   # reads of 2.5 chunks, none next to the one before, each split into three
        off = rng.randrange(0, 97_000)
        while abs(off - prev) < 10_000:
            off = rng.randrange(0, 97_000)
        prev = off
        for part, size in ((0, 1000), (1000, 1000), (2000, 500)):
            assert ra.on_read(off + part, size) == []
    assert ra.on_read(0, 0) == []
    assert SequentialReadahead([]).on_read(0, 4096) == []
    # a read that spans several chunks leaves them to the reader
    assert SequentialReadahead([1000] * 10, initial=1000, batch=1000).on_read(0, 2500) == [[3]]


def test_readahead_never_asks_twice_in_a_sequential_pass():
    rng = random.Random(5)
    lengths = [rng.randint(1, 5000) for _ in range(200)]
    ra = SequentialReadahead(lengths, initial=4000, maximum=40_000, batch=12_000)
    asked: list[int] = []
    off, total = 0, sum(lengths)
    while off < total:
        size = rng.randint(1, 20000)
        for batch in ra.on_read(off, size):
            assert batch == list(range(batch[0], batch[-1] + 1))
            asked += batch
        off += size
    assert asked == sorted(set(asked)) and len(asked) > 150


# -- a full cache disk ------------------------------------------------------------

@pytest.fixture
def small_tmpfs():
    """A 1 MiB tmpfs, unmounted and removed afterwards; skip where we cannot mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    d = tempfile.mkdtemp(prefix="trunkfs-tmpfs-")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", d],
                          capture_output=True)
    if proc.returncode != 0:
        os.rmdir(d)
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.decode().strip()}")
    try:
        yield Path(d)
    finally:
        subprocess.run(["umount", d], check=True)
        os.rmdir(d)


def test_default_cache_limit_is_a_tenth_of_the_free_space(small_tmpfs, workdir):
    assert default_cache_limit(str(small_tmpfs / "not" / "yet")) == (1 << 20) // 10
    st = os.statvfs(workdir)
    expected = min(st.f_bavail * st.f_frsize // 10, 10 << 30)
    assert abs(default_cache_limit(str(workdir)) - expected) < 64 << 20  # others write meanwhile
    assert 0 < default_cache_limit(str(workdir)) <= 10 << 30


@pytest.mark.allow_warnings
async def test_a_full_cache_disk_does_not_fail_reads(store, make_cache, small_tmpfs, caplog):
    pieces = put_chunks(store, [200 * KIB] * 8, seed=9)
    cache = make_cache(64 << 20, directory=small_tmpfs / "cache")
    for bid, data in pieces:
        assert await cache.get(bid) == data
    cache.flush_writes()
    st = cache.stats()
    assert 0 < st["entries"] < 8 and st["write_errors"] == 8 - st["entries"]
    assert disk_bytes(small_tmpfs / "cache") == st["size"] == st["entries"] * 200 * KIB
    assert not [p for p in (small_tmpfs / "cache").iterdir() if p.name.startswith(".tmp-")]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "full" in warnings[0].getMessage()
    for bid, data in pieces:  # still readable, from memory or disk
        assert await cache.get(bid) == data
    assert store.total_reads == 8


async def test_write_behind_returns_data_before_the_cache_file_is_written(store, make_cache, workdir):
    pieces = put_chunks(store, [64 * KIB] * 6, seed=11)
    cache = make_cache(write_behind=True)
    for bid, data in pieces:
        assert await cache.get(bid) == data
    cache.flush_writes()
    assert cached_ids(workdir / "cache") == {bid for bid, _ in pieces}
    assert disk_bytes(workdir / "cache") == cache.stats()["size"] == 6 * 64 * KIB
    second = make_cache(write_behind=True, memory_bytes=0)
    for bid, data in pieces:
        assert await second.get(bid) == data
    assert store.total_reads == 6 and second.stats()["disk_hits"] == 6


# -- no disk layer ------------------------------------------------------------------

async def test_without_a_disk_layer_nothing_is_written_to_disk(store, workdir):
    """limit 0 (the daemon's default over a local store): memory only, no
    cache directory, no writer thread, even with write-behind asked for."""
    pieces = put_chunks(store, [64 * KIB] * 4, seed=13)
    d = workdir / "memory-only"
    cache = ChunkCache(store, str(d), 0, write_behind=True)
    cache.open()
    try:
        for _ in range(2):
            for bid, data in pieces:
                assert await cache.get(bid) == data
        async with trio.open_nursery() as nursery:
            await nursery.start(cache.run)
            cache.prefetch([bid for bid, _ in put_chunks(store, [32 * KIB] * 2, seed=14)])
            with trio.fail_after(10):
                await cache.wait_idle()
            nursery.cancel_scope.cancel()
        cache.flush_writes()
        assert not d.exists()
        assert not [t for t in threading.enumerate() if t.name.startswith("trunkfs-cache-write")]
        st = cache.stats()
        assert (st["entries"], st["size"], st["limit"], st["write_skipped"]) == (0, 0, 0, 0)
        assert (st["misses"], st["memory_hits"], st["disk_hits"], st["prefetched"]) == (4, 4, 0, 2)
        assert store.total_reads == 6
    finally:
        cache.close()
    assert not d.exists()


async def test_without_a_disk_layer_an_earlier_disk_cache_is_removed(store, make_cache, workdir):
    pieces = put_chunks(store, [16 * KIB] * 3, seed=15)
    d = workdir / "cache"
    first = make_cache()
    for bid, _ in pieces:
        await first.get(bid)
    first.close()
    assert len(cached_ids(d)) == 3
    (d / "notes.txt").write_text("not the cache's")
    second = ChunkCache(store, str(d), 0)
    second.open()
    second.close()
    assert cached_ids(d) == set() and (d / "notes.txt").read_text() == "not the cache's"


# -- a store opened by a process without a daemon ----------------------------------

class SlowBackend(MeteredBackend):
    """The store's own backend, metered, with a network's latency on reads,
    so that readers in several threads really overlap."""

    delay = 0.2

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        time.sleep(self.delay)
        return super().get(key, offset, length)


def test_threads_of_one_process_share_each_chunk_load(workdir):
    """OpenedStore (a Dask worker, trunkfs:// without a daemon): threads that
    want the same chunks at once wait for one load, and a file read
    sequentially loads its next chunks while the caller takes these."""
    from trunkfs.cache.opened import OpenedStore, StoreOptions
    writer = Store(open_backend(f"file://{workdir / 'store'}"), str(workdir / "windex"),
                   str(workdir / "wtmp")).open()
    try:
        session = writer.session()
        data = random.Random(12).randbytes(12 << 20)
        chunks, _ = session.put_bytes(data)
        session.flush()
    finally:
        writer.close()
    opened = OpenedStore(StoreOptions(f"file://{workdir / 'store'}"), str(workdir / "client"))
    try:
        bids = [bytes.fromhex(c[0]) for c in chunks]
        opened.store.sync_index()   # what a reader learns from the commits it reads
        assert all(opened.store.index.blob(b) is not None for b in bids)
        slow = SlowBackend(opened.store.backend)
        opened.store.backend = slow
        results: list[bytes] = []
        threads = [threading.Thread(target=lambda: results.append(b"".join(opened.read_blobs(bids))))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == [data] * 4
        assert slow.counts()["get"]["areas"]["packs"]["requests"] == 1   # one coalesced load for all four
        assert opened.shared_chunks == 3 * len(bids) and opened.fetched_bytes == len(data)
        # read_file: while the caller holds the first chunk, the rest of the file loads
        assert len(bids) > 8
        slow.delay = 0.05
        reader = opened.read_file({"chunks": chunks})
        got = [next(reader)]
        deadline = time.monotonic() + 10
        two_groups = len(data) + sum(c[1] for c in chunks[:16])   # read_file's groups are 8 chunks
        while opened.fetched_bytes < two_groups and time.monotonic() < deadline:
            time.sleep(0.05)
        assert opened.fetched_bytes == two_groups   # the next group came in meanwhile, no more
        got += list(reader)
        assert b"".join(got) == data
    finally:
        opened.close()


def test_the_read_settings_have_defaults_and_are_checked(store, workdir):
    from trunkfs.daemon.config import Config, load_config
    from trunkfs.daemon.wiring import open_cache
    from trunkfs.store.errors import InvalidArgument
    # an S3 store: few large requests (about one per pack), several in flight
    assert tuple(Config(state=str(workdir / "s"), store="s3://bucket/p").read_settings()) == \
        (96 << 20, 48 << 20, 4, 40 << 20)
    cache = open_cache(Config(state=str(workdir / "s")), store)   # a local store: small batches, more at once
    try:
        assert (cache.memory_limit, cache.readahead_bytes, cache.request_bytes, cache.max_fetches) == \
            (32 << 20, 16 << 20, 4 << 20, 8)
        assert store.coalesce_span == 4 << 20
    finally:
        cache.close()
    path = workdir / "config.toml"
    path.write_text('cache_memory = "32M"\nreadahead = "64M"\nread_requests = 16\nread_request_size = "8M"\n')
    cache = open_cache(load_config(str(path), {"state": str(workdir / "s")}), store)
    try:   # the window never outgrows half of the memory layer
        assert (cache.memory_limit, cache.readahead_bytes, cache.request_bytes, cache.max_fetches) == \
            (32 << 20, 16 << 20, 8 << 20, 16)
        assert store.coalesce_span == 8 << 20
    finally:
        cache.close()
    for bad in ('cache_memory = "lots"', 'readahead = "-1"', "read_requests = 0", "read_requests = true",
                'read_request_size = "1K"', 'read_request_size = "2G"'):
        path.write_text(bad + "\n")
        with pytest.raises(InvalidArgument):
            load_config(str(path), {"state": str(workdir / "s")})
