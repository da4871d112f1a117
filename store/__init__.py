"""The content-addressed store: chunking, hashing, compression, packs, backends, objects, refs, index.

A plain synchronous, thread-safe API with no FUSE and no trio.
"""
