"""Dry-run backend: records what it would do and keeps its entries in a JSON file (or in
memory), so that a sandbox or a non-root demo behaves like a real firewall without one."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from ..fsutil import atomic_write
from ..logsetup import get
from ..netaddr import display
from .base import Backend, Entry, Filter, KernelEntry, parse_kernel_network

log = get("firewall")


class DryRunBackend(Backend):
    name = "dryrun"
    kernel_timeouts = True

    def __init__(self, *args, path: Path | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.path = path
        self.actions: list[str] = []
        self._entries: dict[str, dict] = {}
        self._ready = False
        if path is not None and path.exists():
            data = json.loads(path.read_text())
            self._entries = data.get("entries", {})
            self._ready = data.get("ready", False)

    def _save(self) -> None:
        if self.path is not None:
            data = {"ready": self._ready, "entries": self._entries}
            atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True).encode(), 0o640)

    def _record(self, text: str) -> None:
        self.actions.append(text)
        log.info("dry-run firewall: would %s", text)

    @staticmethod
    def _key(e: Entry) -> str:
        return f"{e.kind} {e.network}"

    def _live(self) -> dict[str, dict]:
        now = time.time()
        return {k: v for k, v in self._entries.items() if v["expires"] is None or v["expires"] > now}

    def ensure(self, filters: Sequence[Filter] = ()) -> None:
        self._record(f"set up base rules ({len(filters)} advanced filters)")
        self._ready = True
        self._save()

    def is_ready(self) -> bool:
        return self._ready

    def block(self, entries: Sequence[Entry], fresh: bool = False) -> None:
        entries = self.wanted(entries)
        self._entries = self._live()
        for e in entries:
            expires = time.time() + e.ttl if (e.kind == "temp" and e.ttl) else None
            self._entries[self._key(e)] = {"expires": expires}
        if entries:
            sample = ", ".join(display(e.network) for e in entries[:5])
            more = f" and {len(entries) - 5} more" if len(entries) > 5 else ""
            self._record(f"add {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}: {sample}{more}")
        self._save()

    def unblock(self, entries: Sequence[Entry]) -> None:
        entries = self.wanted(entries)
        for e in entries:
            self._entries.pop(self._key(e), None)
        if entries:
            self._record(
                f"remove {', '.join(display(e.network) for e in entries[:5])}"
                + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
            )
        self._save()

    def list(self) -> list[KernelEntry]:
        now = time.time()
        out = []
        for key, value in self._live().items():
            kind, net = key.split(" ", 1)
            expires = value["expires"] - now if value["expires"] else None
            out.append(KernelEntry(parse_kernel_network(net), kind, expires))
        return out

    def purge(self, kind: str = "temp") -> int:
        live = self._live()
        gone = [k for k in live if k.startswith(kind + " ")]
        self._entries = {k: v for k, v in live.items() if k not in gone}
        self._record(f"flush {len(gone)} {kind} entries")
        self._save()
        return len(gone)

    def teardown(self) -> None:
        self._entries = {}
        self._ready = False
        self._record("remove our table/chain and sets")
        self._save()

    def describe(self) -> str:
        where = f", recorded in {self.path}" if self.path else ""
        return f"dry run (no kernel changes{where})"
