"""nftables backend: a table of our own (inet family) with sets, timeouts in the kernel.

Sets: {allow,perm,temp}{,net}{4,6}; "net" sets carry the interval flag for CIDRs, host sets
are plain hashes. The input chain accepts the allow sets first, then drops the others.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from .. import proc
from ..errors import FirewallError, UnavailableError
from ..netaddr import Network, display
from . import libnft, nfnetlink
from .base import KINDS, Backend, Entry, Filter, KernelEntry, parse_kernel_network, port_spec


class NftablesBackend(Backend):
    name = "nftables"
    kernel_timeouts = True

    def __init__(self, *args, in_process: bool | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.nft = proc.need("nft")
        self.table = f"inet {self.prefix}"
        # libnftables in this process when it loads: no fork per change
        self.in_process = libnft.available() if in_process is None else in_process
        self.fast_in_process = self.in_process

    @classmethod
    def probe(cls) -> str | None:
        path = proc.which("nft")
        if path is None:
            return "nft is not installed"
        done = proc.run([path, "list", "tables"], timeout=10)
        if done.returncode != 0:
            return f"nft does not work here: {done.error_line}"
        return None

    # -- plumbing -------------------------------------------------------------
    def _apply(self, script: str) -> None:
        if self.in_process:
            rc, _, err = libnft.run_script(script)
            if rc != 0:
                line = " ".join(err.strip().splitlines()[:3])[:500]
                raise FirewallError(f"nft refused the change (nothing applied): {line}")
            return
        done = proc.run([self.nft, "-f", "-"], input=script.encode(), timeout=120)
        if done.returncode != 0:
            raise FirewallError(f"nft refused the change (nothing applied): {done.error_line}")

    def _set_name(self, kind: str, version: int, net: bool) -> str:
        return f"{kind}{'net' if net else ''}{version}"

    def _sets(self):
        for kind in KINDS:
            for version in self.families():
                for net in (False, True):
                    yield kind, version, net, self._set_name(kind, version, net)

    # -- interface ------------------------------------------------------------
    def ensure(self, filters: Sequence[Filter] = ()) -> None:
        lines = [f"add table {self.table}"]
        for kind, version, net, name in self._sets():
            flags = [f for f, on in (("interval", net), ("timeout", kind == "temp")) if on]
            flag_text = f" flags {', '.join(flags)};" if flags else ""
            lines.append(f"add set {self.table} {name} {{ type ipv{version}_addr;{flag_text} }}")
        lines.append(
            f"add chain {self.table} input {{ type filter hook input priority filter - 10; policy accept; }}"
        )
        lines.append(f"flush chain {self.table} input")
        rule = f"add rule {self.table} input"
        for version in self.families():
            ipf = "ip" if version == 4 else "ip6"
            for net in (False, True):
                lines.append(f"{rule} {ipf} saddr @{self._set_name('allow', version, net)} accept")
        for flt in filters:
            if flt.rule.direction == "in" and (flt.rule.network.version == 4 or self.ipv6):
                lines.append(f"{rule} {self._filter_rule(flt)}")
        for kind in ("perm", "temp"):
            for version in self.families():
                ipf = "ip" if version == 4 else "ip6"
                for net in (False, True):
                    lines.append(
                        f"{rule} {ipf} saddr @{self._set_name(kind, version, net)}"
                        f' counter drop comment "nightwarden {kind}"'
                    )
        self._apply("\n".join(lines) + "\n")

    def _filter_rule(self, flt: Filter) -> str:
        r = flt.rule
        ipf = "ip" if r.network.version == 4 else "ip6"
        side = "saddr" if r.addr_side == "s" else "daddr"
        parts = [f"{ipf} {side} {r.network}"]
        if r.proto == "icmp":
            parts.append("meta l4proto { icmp, ipv6-icmp }")
        else:
            ports = ", ".join(port_spec(r.ports))
            parts.append(f"{r.proto} {'dport' if r.port_side == 'd' else 'sport'} {{ {ports} }}")
        parts.append("accept" if flt.action == "allow" else "counter drop")
        return " ".join(parts)

    def is_ready(self) -> bool:
        done = proc.run([self.nft, "list", "chain", *self.table.split(), "input"], timeout=10)
        return done.returncode == 0

    def _group(self, entries: Sequence[Entry]) -> dict[str, list[Entry]]:
        groups: dict[str, list[Entry]] = {}
        for e in self.wanted(entries):
            net = e.network
            name = f"{e.kind}{'' if net.prefixlen == net.max_prefixlen else 'net'}{net.version}"
            groups.setdefault(name, []).append(e)
        return groups

    def block(self, entries: Sequence[Entry], fresh: bool = False) -> None:
        lines = []
        for name, group in self._group(entries).items():
            if fresh:  # new entries: one add, no refresh dance
                texts = (display(e.network) + (f" timeout {e.ttl}s" if e.ttl else "") for e in group)
                lines.append(f"add element {self.table} {name} {{ {', '.join(texts)} }}")
                continue
            plain = ", ".join(display(e.network) for e in group)
            if name.startswith("temp"):
                # add, delete, add: refreshes the timeout of an entry that is already there,
                # on every kernel, in one transaction.
                timed = ", ".join(display(e.network) + (f" timeout {e.ttl}s" if e.ttl else "") for e in group)
                lines += [
                    f"add element {self.table} {name} {{ {plain} }}",
                    f"delete element {self.table} {name} {{ {plain} }}",
                    f"add element {self.table} {name} {{ {timed} }}",
                ]
            else:
                lines.append(f"add element {self.table} {name} {{ {plain} }}")
        if lines:
            self._apply("\n".join(lines) + "\n")

    def fast_block(self, hosts: Sequence[Network], ttl: int | None) -> None:
        """New temporary host entries, as quickly as the kernel takes them: one netlink message
        per family (about 0.05 ms; nfnetlink), or one `add element` through libnftables
        (about 0.25 ms) if that is refused. No refresh dance: the entries are new."""
        try:
            for version in self.families():
                keys = [h.network_address.packed for h in hosts if h.version == version]
                if keys:
                    nfnetlink.add_elements(
                        "inet",
                        self.prefix,
                        self._set_name("temp", version, False),
                        keys,
                        ttl * 1000 if ttl else None,
                    )
            return
        except OSError:
            pass  # libnftables below says what is wrong, if anything
        lines = []
        for version in self.families():
            mine = ", ".join(
                display(h) + (f" timeout {ttl}s" if ttl else "") for h in hosts if h.version == version
            )
            if mine:
                lines.append(
                    f"add element {self.table} {self._set_name('temp', version, False)} {{ {mine} }}"
                )
        if lines:
            self._apply("\n".join(lines) + "\n")

    def unblock(self, entries: Sequence[Entry]) -> None:
        lines = []
        for name, group in self._group(entries).items():
            plain = ", ".join(display(e.network) for e in group)
            lines += [
                f"add element {self.table} {name} {{ {plain} }}",
                f"delete element {self.table} {name} {{ {plain} }}",
            ]
        if lines:
            self._apply("\n".join(lines) + "\n")

    def list(self) -> list[KernelEntry]:
        done = proc.run([self.nft, "-j", "list", "table", *self.table.split()], timeout=60)
        if done.returncode != 0:
            if b"No such file" in done.stderr:
                return []
            raise UnavailableError(f"nft list table failed: {done.error_line}")
        out: list[KernelEntry] = []
        for item in json.loads(done.stdout).get("nftables", []):
            s = item.get("set")
            if not s or s.get("table") != self.prefix:
                continue
            kind = next((k for k in KINDS if s["name"].startswith(k)), None)
            if kind is None:
                continue
            for elem in s.get("elem", []):
                out.append(self._kernel_entry(kind, elem))
        return out

    @staticmethod
    def _kernel_entry(kind: str, elem) -> KernelEntry:
        expires = None
        if isinstance(elem, dict) and "elem" in elem:
            expires = elem["elem"].get("expires")
            elem = elem["elem"]["val"]
        if isinstance(elem, dict) and "prefix" in elem:
            net = parse_kernel_network(f"{elem['prefix']['addr']}/{elem['prefix']['len']}")
        else:
            net = parse_kernel_network(str(elem))
        return KernelEntry(net, kind, float(expires) if expires is not None else None)

    def purge(self, kind: str = "temp") -> int:
        done = proc.run([self.nft, "-j", "list", "table", *self.table.split()], timeout=60)
        count = 0
        if done.returncode == 0:
            count = sum(
                len(item["set"].get("elem", []))
                for item in json.loads(done.stdout)["nftables"]
                if "set" in item and item["set"]["name"].startswith(kind)
            )
        lines = [f"flush set {self.table} {name}" for k, _, _, name in self._sets() if k == kind]
        self._apply("\n".join(lines) + "\n")
        return count

    def teardown(self) -> None:
        done = proc.run([self.nft, "list", "table", *self.table.split()], timeout=10)
        if done.returncode == 0:
            self._apply(f"delete table {self.table}\n")

    def describe(self) -> str:
        return f"nftables (table {self.table})"
