"""Text for a terminal: names that cannot drive it.

File names are bytes (docs/names.md) and any user may choose them; printed
raw to the terminal of the user reading them (often root), an escape
sequence in a name could move the cursor, retitle the window or hide
output.  On a terminal the CLI shows control characters, bytes that are not
UTF-8 and the bidirectional overrides escaped, as ``ls`` quotes names on a
terminal; into a pipe or file it writes names as their own bytes.
"""

from __future__ import annotations

import io
import re
import sys
from typing import BinaryIO, TextIO

# C0 controls but tab and newline, DEL, C1 controls, lone surrogates, and the
# bidirectional embeddings, overrides and isolates
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:       # a byte that is not UTF-8 (PEP 383)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: str) -> str:
    """``text`` with what could drive a terminal escaped (``\\x1b``, ``\\xe9``, ``\\u202e``)."""
    return _UNSAFE.sub(_escape, text)


class TerminalWriter(io.TextIOBase):
    """A text stream that escapes what it writes with :func:`terminal_safe`."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, text: str) -> int:
        self.out.write(terminal_safe(text))
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.out.fileno()

    @property
    def buffer(self) -> BinaryIO:
        """Raw bytes (``cat`` of a file) go through unescaped, as cat's do."""
        return self.out.buffer


def setup_stdout() -> None:
    """Names as their own bytes into a pipe; escaped on a terminal (stdout
    and stderr, where error messages quote names)."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="surrogateescape")
        if sys.stdout.isatty():
            sys.stdout = TerminalWriter(sys.stdout)
    if isinstance(sys.stderr, io.TextIOWrapper) and sys.stderr.isatty():
        sys.stderr = TerminalWriter(sys.stderr)
