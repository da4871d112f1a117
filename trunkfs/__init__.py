"""trunkfs: a versioned filesystem daemon.

The subpackages are the top-level source folders, reached through the
symlinks in this directory (so ``trunkfs.store.refs`` is ``store/refs.py``
for Python, type checkers and editors alike; a wheel holds the files):
``store``, ``cache``, ``staging``, ``mountfs``, ``pipelines``, ``client``
and ``daemon``.  docs/architecture.md describes the layers.
"""

__version__ = "0.1.0"
