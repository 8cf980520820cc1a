"""Signatures of the fleet: decisions are signed in batches (one Ed25519 signature over the
root of a Merkle tree of the batch's decisions; each decision carries its path to the root),
so a host that comes back to 100,000 decisions checks a few hundred signatures, not 100,000.

An envelope is: b"NW1", the payload's length (2 bytes), the payload, the signature (64),
the leaf's index (4), the path's length (1) and the path (32 bytes a level). The leaf and
node hashes are domain-separated (0x00 leaf, 0x01 node) so no node passes for a leaf."""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections import OrderedDict
from pathlib import Path

from nightwarden.lib.errors import DataError

MAGIC = b"NW1"
BATCH = b"nightwarden-fleet-batch-v1\0"
OPERATOR = b"nightwarden-fleet-operator-v1\0"
EMPTY = hashlib.sha256(b"\x02").digest()  # the sibling of a level's odd last node
MAX_PAYLOAD = 8192


class BadSignature(Exception):
    """An envelope that does not verify: broken, unsigned, or signed by another key."""


def _leaf(payload: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + payload).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def sign_batch(private_key, payloads: list[bytes]) -> list[bytes]:
    """Envelopes for the payloads, all under one signature."""
    if not payloads:
        return []
    for p in payloads:
        if len(p) > MAX_PAYLOAD:
            raise ValueError(f"a decision of {len(p)} bytes (at most {MAX_PAYLOAD})")
    levels = [[_leaf(p) for p in payloads]]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append(
            [_node(below[i], below[i + 1] if i + 1 < len(below) else EMPTY) for i in range(0, len(below), 2)]
        )
    signature = private_key.sign(BATCH + levels[-1][0])
    envelopes = []
    for index, payload in enumerate(payloads):
        path, i = [], index
        for level in levels[:-1]:
            sibling = i ^ 1
            path.append(level[sibling] if sibling < len(level) else EMPTY)
            i //= 2
        envelopes.append(
            MAGIC
            + struct.pack(">H", len(payload))
            + payload
            + signature
            + struct.pack(">IB", index, len(path))
            + b"".join(path)
        )
    return envelopes


def unpack(envelope: bytes) -> tuple[bytes, bytes, int, list[bytes]]:
    """(payload, signature, index, path) of an envelope; BadSignature when malformed."""
    if len(envelope) < 3 + 2 + 64 + 5 or envelope[:3] != MAGIC:
        raise BadSignature("not a signed decision")
    (size,) = struct.unpack_from(">H", envelope, 3)
    end = 5 + size
    if len(envelope) < end + 69:
        raise BadSignature("truncated")
    payload, signature = envelope[5:end], envelope[end : end + 64]
    index, depth = struct.unpack_from(">IB", envelope, end + 64)
    rest = envelope[end + 69 :]
    if depth > 32 or len(rest) != 32 * depth or index >> depth:
        raise BadSignature("a malformed path")
    return payload, signature, index, [rest[i : i + 32] for i in range(0, len(rest), 32)]


class Verifier:
    """Checks envelopes against one public key, remembering the roots it has checked."""

    def __init__(self, public_key, cache: int = 65536):
        self.key = public_key
        self.roots: OrderedDict[bytes, bytes] = OrderedDict()  # root -> its signature
        self.cache = cache
        self.checked = 0  # signatures checked (the rest came from the cache)

    def open(self, envelope: bytes) -> bytes:
        """The payload, or BadSignature."""
        from cryptography.exceptions import InvalidSignature

        payload, signature, index, path = unpack(envelope)
        node = _leaf(payload)
        for sibling in path:
            node = _node(sibling, node) if index & 1 else _node(node, sibling)
            index >>= 1
        if self.roots.get(node) == signature:
            self.roots.move_to_end(node)
            return payload
        try:
            self.key.verify(signature, BATCH + node)
        except InvalidSignature:
            raise BadSignature("the signature is not the fleet key's") from None
        self.checked += 1
        self.roots[node] = signature
        if len(self.roots) > self.cache:
            self.roots.popitem(last=False)
        return payload


# -- keys ---------------------------------------------------------------------------------
def public_key(text: str, what: str):
    """A pinned Ed25519 public key from its base64 form (as `fleet init` prints it)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise DataError(f"fleet.{what}: not an Ed25519 public key in base64 ({text[:20]!r})") from None


def public_text(key) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def new_key(path: Path, passphrase: bytes | None = None):
    """A new Ed25519 private key written to `path` (PEM, mode 0600, never over a file)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    crypt = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, crypt)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def load_key(path: Path, what: str, passphrase: bytes | None = None):
    """A private key file: ours alone (not a link, mode 0600 or stricter), else refused."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from nightwarden.lib.fsutil import read_private

    data = read_private(path, 65536, what)
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError) as e:
        why = (
            "a passphrase is needed"
            if "encrypted" in str(e)
            else "not a PEM private key, or a wrong passphrase"
        )
        raise DataError(f"{path}: the {what}: {why}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise DataError(f"{path}: the {what} is not an Ed25519 key")
    return key
