"""``trunkfs://``: repos as an fsspec filesystem, for the Python data stack
(pandas, pyarrow, Polars, DuckDB, Dask) where there is no mount.

``filesystem`` is the fsspec implementation; ``paths`` parses
``REPO@REF/path``; ``sources`` reaches the data through the local daemon's
socket or straight from the store.
"""
