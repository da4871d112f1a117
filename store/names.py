"""Validation of repo and branch names and of paths inside a repo."""

from __future__ import annotations

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
        if ch.isspace():
            raise InvalidArgument(f"{what} name {name!r} contains white space")
        if ord(ch) < 32 or ord(ch) == 127:
            raise InvalidArgument(f"{what} name {name!r} contains a control character")
    return name


def split_path(path: object) -> list[str]:
    """Split a repo path ('/a/b', 'a/b', '/') into components, refusing '..' and NUL."""
    if not isinstance(path, str):
        raise InvalidArgument("path must be a string")
    if "\0" in path:
        raise InvalidArgument(f"path {path!r} contains a NUL byte")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    for p in parts:
        if p == "..":
            raise InvalidArgument(f"path {path!r} contains '..'")
        if len(p.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise InvalidArgument(f"path {path!r} has a component longer than {NAME_MAX} bytes")
    return parts


def join_path(parts: list[str]) -> str:
    return "/" + "/".join(parts)
