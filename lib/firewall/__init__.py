"""Firewall backends and their detection. See base.Backend for the interface."""

from __future__ import annotations

import os

from ..errors import ConfigError, PermissionDenied, UnavailableError
from .base import KINDS, Backend, Entry, Filter, KernelEntry

__all__ = [
    "KINDS",
    "Backend",
    "Entry",
    "Filter",
    "KernelEntry",
    "open_backend",
    "backend_class",
    "detect_backend",
]

ORDER = ("nftables", "ipset", "iptc")


def backend_class(name: str) -> type[Backend]:
    if name == "nftables":
        from .nftables import NftablesBackend

        return NftablesBackend
    if name == "ipset":
        from .ipset import IpsetBackend

        return IpsetBackend
    if name == "iptc":
        from .iptc import IptcBackend

        return IptcBackend
    if name == "dryrun":
        from .dryrun import DryRunBackend

        return DryRunBackend
    raise ConfigError(f"unknown firewall backend {name!r}")


def detect_backend() -> tuple[str, list[str]]:
    """The first backend that works here, and why each one before it did not."""
    reasons = []
    for name in ORDER:
        why = backend_class(name).probe()
        if why is None:
            return name, reasons
        reasons.append(f"{name}: {why}")
    raise UnavailableError("no firewall backend works here (" + "; ".join(reasons) + ")")


def open_backend(config, dry_run: bool = False, reading: bool = False) -> Backend:
    """The configured backend (or the detected one for "auto"); a recorder for --dry-run.
    reading: only to look (the refusal for a user who is not root says so)."""
    fw = config.firewall
    common = dict(prefix=fw.name, ipv6=fw.ipv6, lock_timeout=fw.lock_timeout)
    choice = config.firewall_backend()
    if dry_run or choice == "dryrun":
        from .dryrun import DryRunBackend

        path = None if dry_run else config.state_dir / "firewall-dryrun.json"
        return DryRunBackend(**common, path=path)
    if os.geteuid() != 0:
        if reading:
            raise PermissionDenied("reading the kernel's firewall rules needs root")
        raise PermissionDenied("firewall changes need root (or use --sandbox DIR, or --dry-run)")
    if choice == "auto":
        choice, _ = detect_backend()
    else:
        why = backend_class(choice).probe()
        if why is not None:
            raise UnavailableError(f"firewall backend {choice!r} cannot work here: {why}")
    return backend_class(choice)(**common)
