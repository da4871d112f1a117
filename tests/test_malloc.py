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


FAULTS_CHILD = r"""
import resource, sys
from trunkfs.daemon.malloc import pin_mmap_threshold

if sys.argv[1] == "pinned":
    assert pin_mmap_threshold()
keep = bytearray(16)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(300):            # a decoded tree's buffers, made and freed at the heap's top
    b = bytearray(1 << 20)
    b[::4096] = b"x" * len(b[::4096])
    del b
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_the_pinned_heap_is_not_trimmed_at_every_free() -> None:
    """Pinning the mmap threshold froze glibc's trim threshold at 128 KiB:
    a 1 MiB buffer freed at the top of the heap went back to the kernel and
    its pages faulted in again at the next one (a diff of a million files
    took half as long again).  Pinned, the heap keeps them, as glibc's
    defaults do."""
    faults = {}
    for mode in ("default", "pinned"):
        proc = subprocess.run([sys.executable, "-c", FAULTS_CHILD, mode], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        faults[mode] = int(proc.stdout)
    assert faults["pinned"] < 5_000, faults      # 300 trims would fault 300 x 256 pages
    assert faults["default"] < 5_000, faults


GC_CHILD = r"""
import gc
from trunkfs.daemon.gctune import THRESHOLDS, tune_gc

class Held:                      # as an inode: slots, references (tracked by the collector)
    __slots__ = ("parent", "name")
    def __init__(self, parent, name):
        self.parent, self.name = parent, name

def collections_over_held():
    # collections while a million inodes are added, then while a diff's
    # worth of short-lived dicts come and go: (young, full)
    start = [g["collections"] for g in gc.get_stats()]
    held.extend(Held(None, str(i)) for i in range(1_000_000))
    for _ in range(200):
        [{"name": str(i), "chunks": [[i, i]]} for i in range(1000)]
    end = [g["collections"] for g in gc.get_stats()]
    return end[0] - start[0], end[2] - start[2]

held = []
default = collections_over_held()
tune_gc()
tuned = collections_over_held()
print(gc.get_threshold() == THRESHOLDS, gc.get_freeze_count() > 0, *default, *tuned)
"""


def test_the_collector_is_tuned_for_a_heap_of_held_inodes() -> None:
    """Holding a million more inodes and churning short-lived objects, the
    tuned collector runs far fewer collections, full ones (over every held
    object) above all (daemon/gctune.py; the time they cost is measured by
    bench/scale.py)."""
    out = subprocess.run([sys.executable, "-c", GC_CHILD], check=True, capture_output=True, text=True)
    set_, frozen, young, full, tuned_young, tuned_full = out.stdout.split()
    assert set_ == "True" and frozen == "True"
    assert int(tuned_young) * 10 < int(young), out.stdout
    assert int(tuned_full) < int(full), out.stdout
