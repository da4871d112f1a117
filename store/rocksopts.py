"""RocksDB table options shared by the daemon's local databases.

Each database RocksDB opens without a block cache of its own gets a 32 MiB
one (RocksDB 8 and newer), filled by reads and never given back: a commit of
40,000 staged small files read their inline bytes from the staging journal
and looked their new chunk ids up in the index, and the two caches grew the
daemon's peak by tens of MiB for blocks the page cache holds anyway.  One
small LRU cache serves every database instead, and tables get a Bloom
filter, so that the lookup of a chunk id the index does not hold (every
new chunk) reads no data block at all.
"""

from __future__ import annotations

import threading

from rocksdict import BlockBasedOptions, Cache, Options

BLOCK_CACHE_BYTES = 8 * 1024 * 1024
BLOOM_BITS_PER_KEY = 10

_cache: Cache | None = None
_lock = threading.Lock()


def shared_block_cache() -> Cache:
    """The process's one block cache (made on first use)."""
    global _cache
    with _lock:
        if _cache is None:
            _cache = Cache(BLOCK_CACHE_BYTES)
        return _cache


def table_options(opts: Options) -> Options:
    """Give ``opts`` the shared block cache and Bloom-filtered tables."""
    table = BlockBasedOptions()
    table.set_block_cache(shared_block_cache())
    table.set_bloom_filter(BLOOM_BITS_PER_KEY, False)
    opts.set_block_based_table_factory(table)
    return opts
