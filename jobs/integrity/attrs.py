"""Reading and naming the attributes a hash-and-mode scanner would miss: POSIX ACLs, file
capabilities and ext2/4 attribute flags (immutable, append-only, ...)."""

from __future__ import annotations

import array
import fcntl
import struct

FS_IOC_GETFLAGS = 0x80086601
ACL_ACCESS = "system.posix_acl_access"
ACL_DEFAULT = "system.posix_acl_default"
CAPABILITY = "security.capability"

# lsattr's letters, in its order
FLAG_LETTERS = [
    (0x1, "s"),
    (0x2, "u"),
    (0x8, "S"),
    (0x10000, "D"),
    (0x10, "i"),
    (0x20, "a"),
    (0x40, "d"),
    (0x80, "A"),
    (0x4, "c"),
    (0x800, "E"),
    (0x4000, "j"),
    (0x1000, "I"),
    (0x8000, "t"),
    (0x20000, "T"),
    (0x80000, "e"),
    (0x800000, "C"),
    (0x2000000, "x"),
    (0x40000000, "F"),
    (0x10000000, "N"),
    (0x20000000, "P"),
    (0x100000, "V"),
]

CAP_NAMES = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
]

ACL_TAGS = {0x01: "user", 0x02: "user", 0x04: "group", 0x08: "group", 0x10: "mask", 0x20: "other"}


_FLAGS_BUF = array.array("l", [0])


def get_flags(fd: int) -> int | None:
    """ext2/4 attribute flags of an open file or directory; None where unsupported."""
    try:
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, _FLAGS_BUF, True)
    except OSError:
        return None
    return _FLAGS_BUF[0] & 0xFFFFFFFF


def flags_text(flags: int | None) -> str:
    if flags is None:
        return "-"
    return "".join(letter if flags & bit else "-" for bit, letter in FLAG_LETTERS)


def flag_names(flags: int | None) -> str:
    if not flags:
        return "none"
    names = {
        0x10: "immutable",
        0x20: "append-only",
        0x1: "secure-delete",
        0x2: "undeletable",
        0x40: "no-dump",
        0x80: "no-atime",
        0x8: "sync",
    }
    shown = [n for bit, n in names.items() if flags & bit]
    return ", ".join(shown) if shown else "none of note"


def acl_text(raw: bytes | None) -> str:
    """POSIX ACL xattr (version 2) as getfacl's short form: user::rw-,user:1000:r--,..."""
    if not raw:
        return ""
    if len(raw) < 4 or struct.unpack_from("<I", raw, 0)[0] != 2 or (len(raw) - 4) % 8:
        return f"(undecodable ACL, {len(raw)} bytes)"
    out = []
    for off in range(4, len(raw), 8):
        tag, perm, ident = struct.unpack_from("<HHI", raw, off)
        name = ACL_TAGS.get(tag, f"tag{tag}")
        who = str(ident) if tag in (0x02, 0x08) else ""
        rwx = ("r" if perm & 4 else "-") + ("w" if perm & 2 else "-") + ("x" if perm & 1 else "-")
        out.append(f"{name}:{who}:{rwx}")
    return ",".join(out)


def caps_text(raw: bytes | None) -> str:
    """security.capability as setcap writes it: cap_net_raw+ep."""
    if not raw:
        return ""
    if len(raw) < 12:
        return f"(undecodable capability, {len(raw)} bytes)"
    magic = struct.unpack_from("<I", raw, 0)[0]
    permitted = struct.unpack_from("<I", raw, 4)[0]
    inheritable = struct.unpack_from("<I", raw, 8)[0]
    if len(raw) >= 20:
        permitted |= struct.unpack_from("<I", raw, 12)[0] << 32
        inheritable |= struct.unpack_from("<I", raw, 16)[0] << 32
    effective = bool(magic & 1)
    groups: dict[str, list[str]] = {}
    for bit in range(64):
        p, i = bool(permitted >> bit & 1), bool(inheritable >> bit & 1)
        if not (p or i):
            continue
        name = "cap_" + (CAP_NAMES[bit] if bit < len(CAP_NAMES) else str(bit))
        mode = ("e" if effective and p else "") + ("i" if i else "") + ("p" if p else "")
        groups.setdefault(mode, []).append(name)
    return " ".join(f"{','.join(names)}+{mode}" for mode, names in sorted(groups.items()))
