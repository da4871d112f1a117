"""Keep the daemon's memory from creeping up under large reads.

glibc's malloc serves an allocation above its mmap threshold with a fresh
mapping and unmaps it on free; but the threshold moves up (to 32 MiB) the
first time such a block is freed, after which the buffers of coalesced
store reads (up to ``read_request_size``, 40 MiB) come from the heaps of
its arenas, one per thread up to 8 per core, and what they free stays
with the process.  Measured with ``bench/s3read.py --mib 1024 --only
trunkfs`` (peak RSS over a cold and a warm read of 1 GiB through the
mount): 523 MiB as glibc leaves it; 180 MiB with every chunk mapped
(threshold 256 KiB), but the cold read at half the speed (a mapping and
its page faults per chunk); 330 MiB at the same speed with the threshold
pinned at 8 MiB (request buffers mapped, chunks on the heap) and two
arenas, which is what the daemon does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 8 << 20   # above the largest chunk: request buffers are mapped, chunks are not
ARENAS = 2
# Setting the mmap threshold also freezes the trim threshold at 128 KiB
# (glibc raises it to twice the mmap threshold only while it moves that
# itself): the heap then shrinks and grows again at nearly every free of a
# decoded tree.  Measured with a diff of 10,000 changes in a million files
# (2,000 trees decoded): 4.1-4.4 s and 305,000 page faults pinned as
# before, 2.9-3.3 s and 9,700 left alone; twice the mmap threshold again
# gives the second.


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD, arenas: int = ARENAS) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes, its trim threshold
    at twice that and its arenas at ``arenas``; False where there is no
    glibc ``mallopt`` (musl, another libc): nothing changes then."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.debug("no mallopt in %s; the mmap threshold stays as it is", name)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return (bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * threshold))
            and bool(mallopt(M_ARENA_MAX, arenas)))


_trim: Any = None    # glibc's malloc_trim, once looked up (False: there is none)


def trim() -> bool:
    """Hand the heap's free pages back to the kernel (glibc's
    ``malloc_trim(0)``): what a large commit or read freed stops counting
    in the daemon's RSS (and in the next peak).  False without glibc."""
    global _trim
    if _trim is None:
        try:
            fn = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
            fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
            _trim = fn
        except (OSError, AttributeError, TypeError):
            _trim = False
    return bool(_trim(0)) if _trim else False
