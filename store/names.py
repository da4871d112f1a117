"""Validation of repo and branch names and of paths inside a repo.

Paths name bytes (docs/names.md): a component is any 1-255 bytes without NUL
or '/', held as the ``str`` ``os.fsdecode`` makes of them.  Repo and branch
names are identifiers: text, without surrogates.
"""

from __future__ import annotations

import os

from .errors import InvalidArgument

NAME_MAX = 255
REF_NAME_MAX = 100
_FORBIDDEN = {"/": "a '/'", "@": "an '@'", ":": "a ':'"}


def check_name(name: object, what: str = "repo") -> str:
    """Return ``name`` if it is a valid repo or branch name, else raise saying why."""
    if not isinstance(name, str):
        raise InvalidArgument(f"{what} name must be a string")
    if not name:
        raise InvalidArgument(f"{what} name is empty")
    if len(name) > REF_NAME_MAX:
        raise InvalidArgument(f"{what} name {name[:20]!r}... is too long ({len(name)} > {REF_NAME_MAX} characters)")
    if name.startswith("."):
        raise InvalidArgument(f"{what} name {name!r} starts with '.'")
    for ch, desc in _FORBIDDEN.items():
        if ch in name:
            raise InvalidArgument(f"{what} name {name!r} contains {desc}")
    for ch in name:
        if "\ud800" <= ch <= "\udfff":
            raise InvalidArgument(f"{what} name {name!r} is not valid UTF-8 text")
        if ch.isspace():
            raise InvalidArgument(f"{what} name {name!r} contains white space")
        if ord(ch) < 32 or ord(ch) == 127:
            raise InvalidArgument(f"{what} name {name!r} contains a control character")
    return name


def canonical_component(part: str, path: str) -> str:
    """``part`` as ``os.fsdecode`` makes it of its bytes: two strings that
    name the same bytes (``"é"`` and ``"\\udcc3\\udca9"``) become one."""
    try:
        raw = os.fsencode(part)
    except UnicodeEncodeError:
        raise InvalidArgument(f"path {path!r} holds a lone surrogate that names no byte "
                              "(only U+DC80..U+DCFF stand for bytes)") from None
    if len(raw) > NAME_MAX:
        raise InvalidArgument(f"path {path!r} has a component longer than {NAME_MAX} bytes")
    return os.fsdecode(raw)


def split_path(path: object) -> list[str]:
    """Split a repo path ('/a/b', 'a/b', '/') into components, refusing '..'
    and NUL; each component canonical (:func:`canonical_component`)."""
    if not isinstance(path, str):
        raise InvalidArgument("path must be a string")
    if "\0" in path:
        raise InvalidArgument(f"path {path!r} contains a NUL byte")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    for p in parts:
        if p == "..":
            raise InvalidArgument(f"path {path!r} contains '..'")
    return [canonical_component(p, path) for p in parts]


def join_path(parts: list[str]) -> str:
    return "/" + "/".join(parts)
