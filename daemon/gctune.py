"""The cyclic garbage collector's thresholds, set for a daemon that holds
millions of objects.

Every inode the kernel holds is an object the collector tracks (a slotted
object with references always is).  With Python's defaults (700, 10, 10)
the collector runs so often over a growing heap that, with a million inodes
held (``bench/scale.py``), it took a quarter of a ``find`` over the mount
(19.7 s; 14.2 s with the collector off) and half of a ``diff`` of 10,000
changes in 1,000 directories (6.6 s; 3.1 s off).  With (20000, 20, 20): 17.8 s
and 3.9 s.  The daemon makes few reference cycles, so collecting them less
often costs little memory.
"""

from __future__ import annotations

import gc

THRESHOLDS = (20_000, 20, 20)


def tune_gc() -> None:
    """Set the thresholds, and move what is there at start (the modules
    imported) out of the collector's way for good (``gc.freeze``)."""
    gc.set_threshold(*THRESHOLDS)
    gc.freeze()
