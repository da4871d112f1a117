"""Whether a directory listing sends its files whole or by name only.

Sent whole (a readdirplus entry), a file costs the daemon an inode and its
attributes, and a later ``stat`` or ``open`` of it costs nothing more: the
kernel has it.  Sent by name only (``nameonly``), it costs about a fifth,
but a later ``stat`` costs a lookup round trip.  ``find``, ``ls``, ``glob``
and ``os.walk`` only want names; ``ls -l``, ``du``, ``rsync`` and a reader
that opens every file it lists want each name's inode.

The kernel has the same choice for file systems that let it (readdirplus
"auto", which pyfuse3 turns off): it sends a directory's later pages whole
once something looked up a name listed before.  :class:`ListingAdvice`
does that for the whole mount: names only while few of the names it sent
come back as lookups; whole once more than half of them did, and by name
again for a try after a stretch of whole entries (``WHOLE_STRETCH``), so a
walk that stopped stat'ing gets the fast listing back.

``mode``: ``auto`` (the above), ``whole`` (always), ``names`` (files by
name only whenever it can be done; the tests use it).
"""

from __future__ import annotations

MODES = ("auto", "whole", "names")

WINDOW = 4096          # names sent between two halvings of the counts
MIN_NAMES = 256        # names sent before a lookup rate means anything
WHOLE_STRETCH = 65536  # entries sent whole before names only are tried again


class ListingAdvice:
    __slots__ = ("mode", "names", "misses", "whole", "whole_left")

    def __init__(self, mode: str = "auto") -> None:
        if mode not in MODES:
            raise ValueError(f"listing mode {mode!r} is none of {', '.join(MODES)}")
        self.mode = mode
        self.names = 0        # name-only entries sent (decayed)
        self.misses = 0       # lookups of names sent name-only (decayed)
        self.whole = False    # auto: sending whole entries now
        self.whole_left = 0   # whole entries to send before trying names again

    def names_only(self) -> bool:
        """Whether the next page of a listing may send files by name only."""
        if self.mode != "auto":
            return self.mode == "names"
        return not self.whole

    def sent_names(self, count: int) -> None:
        self.names += count
        if self.names >= WINDOW:
            self.names //= 2
            self.misses //= 2

    def sent_whole(self, count: int) -> None:
        if self.whole:
            self.whole_left -= count
            if self.whole_left <= 0:   # try names again, with fresh counts
                self.whole = False
                self.names = self.misses = 0

    def missed(self) -> None:
        """A lookup of a name that was listed name-only."""
        self.misses += 1
        if self.mode == "auto" and not self.whole and self.names >= MIN_NAMES \
                and 2 * self.misses > self.names:
            self.whole, self.whole_left = True, WHOLE_STRETCH
