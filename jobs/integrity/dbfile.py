"""The signed database file.

  magic        b"NWINTEGRITY\\x01\\n"
  header_len   4 bytes, big-endian
  header       JSON: host, policy fingerprint, created, generation, count, key id,
               body length and body sha256
  signature    64 bytes: Ed25519 over magic + header_len + header
  body         one JSON array of [path, *record] entries

The signature is checked before a single record is read; the body must then match the
length and hash the signed header names. Paths that are not UTF-8 are kept exactly (JSON's
surrogate escapes). Written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

from nightwarden.lib.errors import DataError, NoInputError, TamperedError
from nightwarden.lib.fsutil import atomic_write, open_regular

MAGIC = b"NWINTEGRITY\x01\n"
SIG_LEN = 64
MAX_HEADER = 1 << 20


def write(
    path: Path,
    header: dict,
    records: dict[str, list],
    private_key,
    encoded: list[str] = (),
    encoded_count: int = 0,
) -> dict:
    """Sign and write the records, plus `encoded`: JSON of more records, made by the scanner's
    workers (comma-joined [path, *record] lists)."""
    parts = [json.dumps([[p, *records[p]] for p in sorted(records)], separators=(",", ":"))[1:-1]]
    parts += [e for e in encoded if e]
    body = ("[" + ",".join(p for p in parts if p) + "]").encode("ascii")
    header = {
        **header,
        "count": len(records) + encoded_count,
        "body_length": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "format": 1,
    }
    head = json.dumps(header, sort_keys=True).encode()
    signed = MAGIC + struct.pack(">I", len(head)) + head
    atomic_write(path, signed + private_key.sign(signed) + body, 0o640)
    return header


def _read_at(fd: int, size: int, offset: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.pread(fd, size - len(data), offset + len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_header(path: Path, public_key) -> tuple[dict, bytes]:
    """Verify the signature and the body; return (header, body). Nothing is parsed before.
    Only a regular file is read (never a link, a FIFO or a device), and every read is bounded
    by the sizes the format and the signed header give."""
    try:
        fd, st = open_regular(path, "integrity database")
    except FileNotFoundError:
        raise NoInputError(f"{path}: no integrity database (run: nightwarden integrity init)") from None
    try:
        start = _read_at(fd, len(MAGIC) + 4, 0)
        if not start.startswith(MAGIC):
            raise DataError(f"{path}: not a nightwarden integrity database (bad magic)")
        if len(start) < len(MAGIC) + 4:
            raise DataError(f"{path}: truncated (no header)")
        (head_len,) = struct.unpack_from(">I", start, len(MAGIC))
        end = len(MAGIC) + 4 + head_len
        if head_len > MAX_HEADER or st.st_size < end + SIG_LEN:
            raise DataError(f"{path}: truncated or corrupt header")
        rest = _read_at(fd, head_len + SIG_LEN, len(start))
        signed, signature = start + rest[:head_len], rest[head_len:]
        from cryptography.exceptions import InvalidSignature

        try:
            public_key.verify(signature, signed)
        except InvalidSignature:
            raise TamperedError(
                f"{path}: SIGNATURE CHECK FAILED: the database was altered or signed "
                f"with another key; nothing in it is trusted"
            ) from None
        header = json.loads(signed[len(MAGIC) + 4 :])
        length = header["body_length"]
        if st.st_size != end + SIG_LEN + length:
            raise TamperedError(
                f"{path}: {st.st_size - end - SIG_LEN:,} bytes of records where the signed header "
                f"says {length:,} (truncated or altered); nothing in it is trusted"
            )
        body = _read_at(fd, length, end + SIG_LEN)
    finally:
        os.close(fd)
    if len(body) != length or hashlib.sha256(body).hexdigest() != header["body_sha256"]:
        raise TamperedError(
            f"{path}: the records do not match the signed header (truncated or "
            f"altered); nothing in it is trusted"
        )
    return header, body


def parse_body(path: Path, body: bytes) -> dict[str, list]:
    try:
        return {item[0]: item[1:] for item in json.loads(body)}
    except (ValueError, IndexError, TypeError):
        raise DataError(f"{path}: the records are corrupt") from None
