"""A tree's names and kinds, kept in the index for listings by name.

``find``, ``ls`` and ``os.walk`` over a committed directory want each
entry's name and type and nothing else.  Decoding the stored tree for that
(a JSON object per entry, chunk ids and all) was most of what a walk of a
million files cost the daemon: a tree of a thousand files is about 170 KB
to read, decompress, verify and decode (1.5 ms here) for 12 KB of names.
So when a tree is checked on this machine (``Index.mark_tree_checked``),
its names and kinds are kept beside the mark as one record::

    kinds "/" name "/" name ...

``kinds`` has one byte per entry (:data:`KIND_CODES`; ``h`` for a hard-link
name, whose listing needs its entry), and the names are the entries' names
as the file system's bytes (UTF-8, with the surrogate escapes of names that
are not), in the tree's order.  No checked name holds ``/`` or is empty, so
the split is exact, and a record whose parts do not agree is not used.  A
record costs about a fifteenth of its tree; it goes with the tree's pack
(``Index.remove_packs``).
"""

from __future__ import annotations

from typing import NamedTuple

KIND_CODES = {"file": ord("f"), "dir": ord("d"), "symlink": ord("l"), "fifo": ord("p"),
              "socket": ord("s"), "char": ord("c"), "block": ord("b")}
HARD_LINK = ord("h")   # a name of a hard-link group: listed from its entry

_SEP = b"/"


class NameTable(NamedTuple):
    """A tree's entry names (the file system's bytes) and kinds (a code per
    entry), in the tree's order."""
    names: list[bytes]
    kinds: bytes


def table_of(entries: list[dict], encoding: str = "utf-8") -> NameTable:
    """The table of a tree's (checked) entries; names in ``encoding`` (kept:
    UTF-8)."""
    codes = KIND_CODES
    return NameTable([e["name"].encode(encoding, "surrogateescape") for e in entries],
                     bytes(HARD_LINK if "link" in e else codes[e["type"]] for e in entries))


def encode(table: NameTable) -> bytes:
    return table.kinds + _SEP + _SEP.join(table.names)


def decode(raw: bytes) -> NameTable | None:
    """The table kept as ``raw``; None when it does not hold one name per
    kind (not a record this module wrote)."""
    kinds, sep, rest = raw.partition(_SEP)
    if not sep:
        return None
    if not kinds:   # an empty tree
        return NameTable([], kinds) if not rest else None
    names = rest.split(_SEP)
    if len(names) != len(kinds) or not all(names):
        return None
    return NameTable(names, kinds)
