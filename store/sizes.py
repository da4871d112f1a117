"""Sizes as people write them: ``4096``, ``512M``, ``10G``, ``1.5GiB``."""

from __future__ import annotations

from .errors import InvalidArgument

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40,
          "tib": 1 << 40}


def parse_size(value: str | int) -> int:
    """``"10G"``, ``"512MiB"``, ``4096`` -> bytes; InvalidArgument otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    num = text.rstrip("kmgtib")
    unit = text[len(num):]
    try:
        if unit not in _UNITS:
            raise ValueError
        return int(float(num) * _UNITS[unit])
    except ValueError:
        raise InvalidArgument(f"not a size: {value!r} (use e.g. 4096, 512M, 10G)") from None
