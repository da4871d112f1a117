"""Directory entries sent with a name and a type only: no inode for the kernel.

A FUSE readdirplus reply may carry, per entry, either a whole lookup (an
inode the kernel instantiates, with its attributes) or only the name, its
``d_ino`` and ``d_type``: node id 0 (the kernel's ``fuse_direntplus_link``
skips such an entry; libfuse's high-level API sends every entry this way
when the file system gives no attributes, which is why ``find`` over bindfs
never looks a file up).  A name-only entry costs the daemon no inode and
about a fifth of the Python work; a caller that then stats the name pays a
lookup (see ``listadvice``, which chooses).

pyfuse3 has no call for it: ``EntryAttributes.st_ino`` sets the node id and
``st_ino`` together.  :class:`NameOnlyEntry` keeps one ``EntryAttributes``
and clears its node id in place, at an offset found, and checked, by a probe
when the mount starts; if the probe fails (another pyfuse3 layout, another
Python), there is no name-only entry and every entry is sent whole.
"""

from __future__ import annotations

import ctypes
import logging
import struct
import sys

import pyfuse3

log = logging.getLogger(__name__)

_MAGIC = 0x5A17_C0DE_0BAD_F00D   # a value no field holds by chance


class NameOnlyEntry:
    """One reusable ``EntryAttributes`` for name-only entries: set
    ``attr.st_ino`` (the ``d_ino``; it sets the node id too), then
    ``node_id.value = 0``, and ``attr.st_mode`` to the type
    (``stat.S_IF*``).  pyfuse3's ``readdir_reply`` copies it at once, so one
    object serves every entry (the listing's loop sets the fields itself: it
    runs once per name of a walk)."""

    __slots__ = ("attr", "node_id")

    def __init__(self, attr: pyfuse3.EntryAttributes, node_id: ctypes.c_uint64) -> None:
        self.attr = attr
        self.node_id = node_id   # the node id's field in ``attr`` (cleared after st_ino is set)

    @classmethod
    def probe(cls) -> NameOnlyEntry | None:
        """The helper, or None where pyfuse3's ``EntryAttributes`` is not laid
        out as this module expects (then every entry goes whole)."""
        if sys.implementation.name != "cpython":   # id() is an address on CPython only
            return None
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = _MAGIC
        size = type(attr).__basicsize__
        raw = ctypes.string_at(id(attr), size)
        pattern = struct.pack("=Q", _MAGIC)
        found = [i for i in range(0, size - 7) if raw[i:i + 8] == pattern]
        # fuse_entry_param: the node id first, then the generation, then the
        # struct stat whose st_ino (after st_dev) is the dirent's d_ino
        if len(found) != 2 or found[1] - found[0] != 24 or found[0] % 8:
            log.info("pyfuse3's EntryAttributes is not laid out as expected (%s): every "
                     "directory entry is sent with its attributes", found)
            return None
        node_id = ctypes.c_uint64.from_address(id(attr) + found[0])
        node_id.value = 0
        after = ctypes.string_at(id(attr), size)
        if attr.st_ino != 0 or after[found[1]:found[1] + 8] != pattern:
            log.info("pyfuse3's EntryAttributes did not take a node id of 0 apart from st_ino: "
                     "every directory entry is sent with its attributes")
            return None
        return cls(attr, node_id)
