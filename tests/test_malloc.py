"""glibc's heap under the daemon's settings (daemon/malloc.py): freed heap
pages go back to the kernel when :func:`trim` runs.  Run in a child
process, so that this test's settings and heap stay out of pytest's."""

from __future__ import annotations

import subprocess
import sys

CHILD = r"""
import sys
from trunkfs.daemon.malloc import pin_mmap_threshold, trim

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

assert pin_mmap_threshold()
base = rss_kib()
# 200 MiB of 64 KiB blocks: below the pinned mmap threshold, so on the heap
held = [bytearray(64 << 10) for _ in range(3200)]
for b in held:
    b[::4096] = b"x" * len(b[::4096])      # touch every page
grown = rss_kib()
del held[:-1]                              # the last block keeps the heap's top in place
freed = rss_kib()
trimmed = trim()
after = rss_kib()
print(base, grown, freed, after, trimmed)
"""


def test_trim_hands_freed_heap_pages_back() -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    base, grown, freed, after, trimmed = proc.stdout.split()
    base_k, grown_k, freed_k, after_k = int(base), int(grown), int(freed), int(after)
    assert grown_k - base_k > 150_000                   # the blocks were resident
    assert freed_k - base_k > 150_000, proc.stdout      # free() alone kept them (below the heap's top)
    assert trimmed == "True"
    assert after_k - base_k < 30_000, proc.stdout       # trim gave them back
