"""Ed25519 keys: the private key in OpenSSH format, encrypted with a passphrase; the public
key separate (checking needs only the public key, accepting changes needs the private one).
The passphrase comes from the terminal, a file, or an environment variable; never logged."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from nightwarden.lib.errors import ConfigError, DataError, NoInputError
from nightwarden.lib.fsutil import atomic_write, read_regular


def passphrase(cfg, confirm: bool = False, prompt: str = "") -> bytes:
    path = cfg.passphrase_file
    if path:
        try:
            return Path(path).read_bytes().rstrip(b"\n")
        except OSError as e:
            raise NoInputError(f"{path}: cannot read the passphrase file: {e.strerror}") from None
    env = cfg.passphrase_env
    if env and os.environ.get(env):
        return os.environ[env].encode()
    if not sys.stdin.isatty():
        raise ConfigError(
            f"no passphrase: not on a terminal, integrity.passphrase_file is unset and ${env} is empty"
        )
    first = getpass.getpass(f"{prompt}integrity key passphrase: ").encode()
    if confirm and getpass.getpass("again: ").encode() != first:
        raise DataError("the passphrases differ")
    if not first:
        raise DataError("an empty passphrase is not accepted")
    return first


def generate(private_path: Path, public_path: Path, secret: bytes, comment: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if private_path.exists():
        raise DataError(
            f"{private_path} exists; move it away first (a new key makes the current database unverifiable)"
        )
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(secret),
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    atomic_write(private_path, private, 0o600)
    atomic_write(public_path, public + f" {comment}\n".encode(), 0o644)
    return key_id(key.public_key())


def key_id(public_key) -> str:
    import hashlib

    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private(path: Path, secret: bytes):
    from cryptography.hazmat.primitives import serialization

    try:
        data = read_regular(path, 64 << 10, "private key")
    except FileNotFoundError:
        raise NoInputError(f"{path}: no private key (run: nightwarden integrity keygen)") from None
    try:
        return serialization.load_ssh_private_key(data, password=secret)
    except ValueError as e:
        reason = str(e).lower()
        if any(w in reason for w in ("password", "decrypt", "bcrypt", "checksum")):
            # an encrypted OpenSSH key decrypted with the wrong passphrase fails its check ints
            raise DataError(f"{path}: wrong passphrase (or a damaged key)") from None
        raise DataError(f"{path}: not a usable OpenSSH private key ({e})") from None


def load_public(path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        data = read_regular(path, 64 << 10, "public key")
    except FileNotFoundError:
        raise NoInputError(f"{path}: no public key (run: nightwarden integrity keygen)") from None
    try:
        key = serialization.load_ssh_public_key(data.strip())
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: not an OpenSSH public key ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise DataError(f"{path}: not an Ed25519 key")
    return key
