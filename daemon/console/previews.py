"""What the console shows of a file: the first lines of text, a CSV as a
table, an image, a Parquet file's schema and first rows; and the text diff
of two small versions of a file.  Pure functions of bytes (and, for
Parquet, of a ranged reader), so they run in a worker thread."""

from __future__ import annotations

import csv
import difflib
import io
import logging
import posixpath
from collections.abc import Callable

log = logging.getLogger(__name__)

PREVIEW_BYTES = 64 * 1024        # bytes of a file a text or CSV preview reads
CSV_ROWS = 50                    # rows of a CSV preview
PARQUET_ROWS = 20                # rows of a Parquet preview
CELL_CHARS = 200                 # characters of one shown cell
DIFF_MAX = 256 * 1024            # the larger side of a text diff, at most
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".webp": "image/webp", ".bmp": "image/bmp"}   # no SVG: it can carry script
CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
PARQUET_MAGIC = b"PAR1"

RangeReader = Callable[[int, int], bytes]   # (offset, length) -> bytes, in a worker thread


def image_type(name: str) -> str | None:
    """The MIME type the console serves an image of this name with (None: not an image it shows)."""
    return IMAGE_TYPES.get(posixpath.splitext(name)[1].lower())


def is_text(data: bytes) -> bool:
    """Whether ``data`` (a file's first bytes) reads as UTF-8 text."""
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(data) - 3 and exc.reason == "unexpected end of data"   # a cut character
    return True


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def preview(name: str, size: int, head: bytes, read_range: RangeReader) -> dict:
    """The preview of a file named ``name`` of ``size`` bytes, whose first
    bytes are ``head`` (up to PREVIEW_BYTES)."""
    out: dict = {"size": size, "truncated": size > len(head)}
    ext = posixpath.splitext(name)[1].lower()
    mime = image_type(name)
    if size == 0:
        out["kind"] = "empty"
    elif mime is not None:
        out.update(kind="image", mime=mime)
    elif head.startswith(PARQUET_MAGIC) or ext == ".parquet":
        out.update(kind="parquet", **parquet_preview(read_range, size))
    elif ext in CSV_DELIMITERS and is_text(head):
        out.update(kind="csv", **csv_preview(head, size, CSV_DELIMITERS[ext]))
    elif is_text(head):
        out.update(kind="text", text=_text(head))
    else:
        out["kind"] = "binary"
    return out


def csv_preview(head: bytes, size: int, delimiter: str) -> dict:
    """The first CSV_ROWS rows (the first is the header) of a CSV file."""
    text = _text(head)
    if size > len(head):        # the last line read is cut: leave it out
        text = text[:text.rfind("\n") + 1]
    rows: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text), delimiter=delimiter):
            rows.append([cell[:CELL_CHARS] for cell in row])
            if len(rows) > CSV_ROWS:
                break
    except csv.Error as exc:
        return {"error": f"not a well-formed CSV file: {exc}", "text": text[:PREVIEW_BYTES]}
    return {"rows": rows[:CSV_ROWS + 1]}


class _RangeFile(io.RawIOBase):
    """A file of ``size`` bytes read through ``read_range``: pyarrow seeks to
    the footer and reads only the column chunks it needs."""

    def __init__(self, read_range: RangeReader, size: int) -> None:
        self._read, self._size, self._pos = read_range, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: memoryview) -> int:   # type: ignore[override]
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._read(self._pos, n)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)


def parquet_preview(read_range: RangeReader, size: int) -> dict:
    """A Parquet file's schema, row count and first PARQUET_ROWS rows."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return {"error": "pyarrow is not installed in the daemon's environment"}
    try:
        pf = pq.ParquetFile(io.BufferedReader(_RangeFile(read_range, size), 1 << 20))
        columns = [{"name": f.name, "type": str(f.type)} for f in pf.schema_arrow]
        rows: list[list[str]] = []
        for batch in pf.iter_batches(batch_size=PARQUET_ROWS, use_threads=False):
            for record in batch.to_pylist()[:PARQUET_ROWS]:
                rows.append([str(record.get(c["name"]))[:CELL_CHARS] for c in columns])
            break
        return {"columns": columns, "rows": rows, "num_rows": pf.metadata.num_rows,
                "row_groups": pf.metadata.num_row_groups}
    except Exception as exc:   # a damaged or non-Parquet file: say so on the page
        log.debug("parquet preview failed: %s", exc)
        return {"error": f"not a readable Parquet file: {exc}"}


def text_diff(old: bytes | None, new: bytes | None, path: str) -> dict:
    """The unified diff of two versions of a small text file (None: absent)."""
    sides = [b for b in (old, new) if b is not None]
    if any(len(b) > DIFF_MAX for b in sides):
        return {"kind": "too_large", "limit": DIFF_MAX}
    if not all(is_text(b) for b in sides):
        return {"kind": "binary"}
    a = _text(old).splitlines(keepends=True) if old is not None else []
    b = _text(new).splitlines(keepends=True) if new is not None else []
    lines = difflib.unified_diff(a, b, fromfile="a" + path if old is not None else "/dev/null",
                                 tofile="b" + path if new is not None else "/dev/null")
    return {"kind": "text", "diff": "".join(line if line.endswith("\n") else line + "\n" for line in lines)}
