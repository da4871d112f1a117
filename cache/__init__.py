"""Local chunk cache (size bound, eviction, single-flight fetch, readahead)."""
