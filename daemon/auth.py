"""Who calls the socket, and what they may do.

The caller is the uid and gid the kernel gives for the socket (SO_PEERCRED)
with that uid's groups from the system's group database.  Root is admin
everywhere and passes every permission check.

Two kinds of checks:

- **repo roles** (``read`` < ``write`` < ``admin``): a repo's owner is its
  admin; its access list grants roles to users, groups or everyone
  (:class:`~trunkfs.store.objects.RepoInfo`); :func:`require` refuses with
  ``permission_denied``;
- **POSIX modes** of committed entries, as the mount's ``default_permissions``
  checks them (:func:`may`): reading a file needs ``r``, listing a directory
  ``r``, passing through one ``x``.  Entries without an owner (from ``put``)
  belong to the uid and gid the mount shows them with (the daemon's
  ``--uid``/``--gid``, by default its own).
"""

from __future__ import annotations

import grp
import pwd

from ..store.access import ADMIN, READ, WRITE, Caller, allows, groups_of, role_of
from ..store.errors import InvalidArgument, TrunkError
from ..store.objects import DIR, EVERYONE, ROLES, RepoInfo

__all__ = ["ADMIN", "READ", "WRITE", "Caller", "allows", "groups_of", "role_of", "require", "may",
           "FileOwner", "PermissionDenied"]
R_OK, W_OK, X_OK = 4, 2, 1
KINDS = ("user", "group", EVERYONE)


class PermissionDenied(TrunkError):
    """The caller lacks the role or the permission bits an operation needs."""

    code = "permission_denied"


def require(caller: Caller, info: RepoInfo, role: str, what: str = "this") -> None:
    """PermissionDenied unless ``caller`` has ``role`` (or a stronger one) on the repo."""
    if not allows(caller, info, role):
        have = role_of(caller, info)
        raise PermissionDenied(f"{what} needs the {role} role on repo {info.name!r}; uid {caller.uid} "
                               f"has {'the ' + have + ' role' if have else 'no access'} there")


# -- access lists -----------------------------------------------------------------------

def parse_principal(text: str) -> tuple[str, int | None]:
    """``user:NAME``, ``group:NAME`` (a name or a number) or ``everyone``."""
    if text == EVERYONE:
        return EVERYONE, None
    kind, sep, name = text.partition(":")
    if not sep or kind not in ("user", "group") or not name:
        raise InvalidArgument(f"{text!r}: expected user:NAME, group:NAME or everyone")
    if name.isdigit():
        return kind, int(name)
    try:
        return kind, (pwd.getpwnam(name).pw_uid if kind == "user" else grp.getgrnam(name).gr_gid)
    except KeyError:
        raise InvalidArgument(f"{text!r}: no {kind} {name!r} on this machine") from None


def parse_grant(text: str) -> dict:
    """``PRINCIPAL=ROLE`` as an access-list entry."""
    who, sep, role = text.rpartition("=")
    if not sep or role not in ROLES:
        raise InvalidArgument(f"{text!r}: expected PRINCIPAL=ROLE with a role of {', '.join(ROLES)}")
    kind, ident = parse_principal(who)
    return {"kind": kind, "id": ident, "role": role}


def changed_acl(acl: list[dict], grants: list[dict], revokes: list[tuple[str, int | None]]) -> list[dict]:
    """``acl`` without the revoked principals, with the grants (a grant
    replaces the principal's entry)."""
    drop = set(revokes) | {(g["kind"], g["id"]) for g in grants}
    kept = [e for e in acl if (e.get("kind"), e.get("id")) not in drop]
    return kept + grants


def principal_name(kind: str, ident: int | None) -> str:
    """``user:alice``, ``group:staff`` (the number when the name is unknown), ``everyone``."""
    if kind == EVERYONE or ident is None:
        return EVERYONE
    try:
        name = pwd.getpwuid(ident).pw_name if kind == "user" else grp.getgrgid(ident).gr_name
    except KeyError:
        name = str(ident)
    return f"{kind}:{name}"


def acl_json(info: RepoInfo) -> dict:
    """What ``repo.acl`` answers: the owner and the entries."""
    user = principal_name("user", info.owner).partition(":")[2]
    return {"name": info.name, "owner": {"uid": info.owner, "user": user},
            "acl": [{"who": principal_name(str(e.get("kind")), e.get("id")), "kind": e.get("kind"),
                     "id": e.get("id"), "role": e.get("role")} for e in info.acl]}


# -- POSIX modes of committed entries -------------------------------------------------------

class FileOwner:
    """Whose an entry without ``uid``/``gid`` is: the owner the mount shows."""

    __slots__ = ("uid", "gid")

    def __init__(self, uid: int, gid: int) -> None:
        self.uid = uid
        self.gid = gid


def may(caller: Caller, entry: dict, want: int, default: FileOwner) -> bool:
    """Whether the entry's mode grants ``want`` (R_OK, X_OK, ...) to the caller,
    by the class of the caller (owner, group, other) as the kernel decides."""
    if caller.is_root:
        return True
    mode = entry.get("mode")
    if not isinstance(mode, int):
        mode = 0o755 if entry.get("type") == DIR else 0o644
    uid = entry.get("uid", default.uid)
    gid = entry.get("gid", default.gid)
    if caller.uid == uid:
        bits = mode >> 6
    elif gid in caller.groups:
        bits = mode >> 3
    else:
        bits = mode
    return bits & want == want
