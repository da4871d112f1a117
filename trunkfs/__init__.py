"""trunkfs: a versioned filesystem daemon.

The sub-packages live in top-level source folders (``store/``, ``cache/``,
``mountfs/``, ``daemon/``) and are installed under this namespace.
"""

__version__ = "0.1.0"
