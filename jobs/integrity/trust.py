"""What a check trusts besides the database's own signature.

- The public key is pinned: its id is kept in state at keygen, init and rekey; a database
  signed with another key (someone who can write both integrity.pub and integrity.db) is a
  verification failure, and only `integrity rekey` (which needs the old private key) moves
  the pin.
- The newest generation is kept in two places: state, and a seal beside the keys (in the
  configuration directory, apart from the state directory), signed with the private key at
  init, update and rekey. A replayed older database is caught while either survives; the
  report says which evidence the replay check used.
- Who may read the private key and write the database and the public key is looked at on
  every check.
"""

from __future__ import annotations

import json
import os
import stat
import struct

from nightwarden.lib.errors import TamperedError
from nightwarden.lib.fsutil import atomic_write, read_regular

from .settings import integrity_file

SEAL_MAGIC = b"NWSEAL\x01\n"
PIN = "integrity.key"
GENERATION = "integrity.generation"


def pinned_key(state) -> str | None:
    return state.get_meta(PIN)


def pin_key(state, ident: str) -> None:
    with state:
        state.set_meta(PIN, ident)


def check_pin(state, ident: str, path) -> None:
    """A key other than the pinned one is a verification failure."""
    pinned = pinned_key(state)
    if pinned is not None and pinned != ident:
        raise TamperedError(
            f"{path}: key {ident} is not the pinned key {pinned}: the public key was replaced; "
            f"nothing signed with it is trusted (a new key is accepted only by `integrity rekey`)"
        )


def write_seal(config, private_key, generation: int, ident: str) -> None:
    body = json.dumps(
        {"host": config.hostname, "generation": generation, "key": ident}, sort_keys=True
    ).encode()
    signed = SEAL_MAGIC + struct.pack(">I", len(body)) + body
    atomic_write(integrity_file(config, "seal"), signed + private_key.sign(signed), 0o644)


def read_seal(config, public_key) -> tuple[int | None, str]:
    """(the sealed generation or None, what to say of it). A seal that exists but does not
    verify is a verification failure."""
    from cryptography.exceptions import InvalidSignature

    path = integrity_file(config, "seal")
    try:
        data = read_regular(path, 4096, "integrity seal")
    except FileNotFoundError:
        return None, f"no seal ({path})"
    try:
        (size,) = struct.unpack_from(">I", data, len(SEAL_MAGIC))
        signed, signature = data[: len(SEAL_MAGIC) + 4 + size], data[len(SEAL_MAGIC) + 4 + size :]
        if not data.startswith(SEAL_MAGIC) or len(signature) != 64:
            raise ValueError("bad format")
        public_key.verify(signature, signed)
        seal = json.loads(signed[len(SEAL_MAGIC) + 4 :])
    except (ValueError, struct.error, InvalidSignature):
        raise TamperedError(f"{path}: the generation seal does not verify: altered or replaced") from None
    if seal.get("host") != config.hostname:
        raise TamperedError(f"{path}: the generation seal was made for host {seal.get('host')!r}")
    return int(seal["generation"]), f"seal {path} (generation {seal['generation']})"


def newest_generation(ctx, public_key) -> tuple[int, str]:
    """The newest generation this host is known to have had, and the evidence for it."""
    seen = int(ctx.state.get_meta(GENERATION, "0"))
    sealed, seal_note = read_seal(ctx.config, public_key)
    evidence = [f"state (generation {seen})" if seen else "state (no generation recorded)", seal_note]
    return max(seen, sealed or 0), "replay check used " + " and ".join(evidence)


def established(ctx) -> bool:
    """This host has had an integrity database: from now on a missing or unreadable one is a
    verification failure, not "not set up"."""
    return (
        int(ctx.state.get_meta(GENERATION, "0")) > 0
        or pinned_key(ctx.state) is not None
        or os.path.lexists(integrity_file(ctx.config, "seal"))
    )


def permission_warnings(config) -> list[str]:
    """The private key readable, or the database and the public key writable, by anyone but
    the owner (root, when nightwarden runs as root)."""
    warnings = []
    me = os.geteuid()
    for key, bad_bits, what in (
        ("private_key", stat.S_IRWXG | stat.S_IRWXO, "readable or writable by others"),
        ("public_key", stat.S_IWGRP | stat.S_IWOTH, "writable by others"),
        ("database", stat.S_IWGRP | stat.S_IWOTH, "writable by others"),
        ("seal", stat.S_IWGRP | stat.S_IWOTH, "writable by others"),
    ):
        path = integrity_file(config, key)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_mode & bad_bits:
            warnings.append(f"{path} is {what} (mode {stat.S_IMODE(st.st_mode):04o})")
        if st.st_uid != me:
            warnings.append(f"{path} belongs to uid {st.st_uid}, not to uid {me} who runs the check")
    parent = integrity_file(config, "database").parent
    try:
        st = os.stat(parent)
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            warnings.append(f"{parent} is writable by anyone: the database can be replaced")
    except OSError:
        pass
    return warnings


def status(config, state) -> dict:
    """For `nightwarden status`: the database generation and the pinned key."""
    generation = int(state.get_meta(GENERATION, "0"))
    if not generation:
        return {
            "database": "none yet",
            "problem": "no signed database yet: nothing is checked (nightwarden integrity keygen, then init)",
        }
    return {
        "database": f"{integrity_file(config, 'database')}, generation {generation}",
        "key": pinned_key(state),
    }
