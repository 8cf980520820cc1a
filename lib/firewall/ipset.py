"""iptables + ipset backend: works with either xtables flavour (nft or legacy).

Sets {prefix}-{allow,perm,temp}{4,6} (hash:net; the temp sets carry timeouts), one chain
of our own jumped from INPUT. Every iptables call waits for the xtables lock (-w).
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import proc
from ..errors import FirewallError
from .base import KINDS, Backend, Entry, Filter, KernelEntry, parse_kernel_network, port_spec

MAXELEM = 1048576


class IpsetBackend(Backend):
    name = "ipset"
    kernel_timeouts = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ipset = proc.need("ipset")
        self.iptables = {4: proc.need("iptables"), 6: proc.need("ip6tables")}
        self.restore = {4: proc.need("iptables-restore"), 6: proc.need("ip6tables-restore")}
        self.chain = self.prefix.upper()

    @classmethod
    def probe(cls) -> str | None:
        for tool in ("ipset", "iptables", "ip6tables", "iptables-restore"):
            if proc.which(tool) is None:
                return f"{tool} is not installed"
        done = proc.run([proc.which("ipset"), "list", "-n"], timeout=10)
        if done.returncode != 0:
            return f"ipset does not work here: {done.error_line}"
        return None

    def set_name(self, kind: str, version: int) -> str:
        return f"{self.prefix}-{kind}{version}"

    def _ipset_restore(self, lines: list[str]) -> None:
        if not lines:
            return
        done = proc.run(
            [self.ipset, "restore", "-exist"], input=("\n".join(lines) + "\n").encode(), timeout=120
        )
        if done.returncode != 0:
            raise FirewallError(f"ipset restore refused the change: {done.error_line}")

    def _xt(self, version: int, *args: str, check: bool = True) -> proc.Completed:
        done = proc.run([self.iptables[version], "-w", str(int(self.lock_timeout)), *args], timeout=60)
        if check and done.returncode != 0:
            raise FirewallError(f"{self.iptables[version]} {' '.join(args)}: {done.error_line}")
        return done

    def _jump(self) -> list[str]:
        return ["INPUT", "-j", self.chain, "-m", "comment", "--comment", self.prefix]

    # -- interface ------------------------------------------------------------
    def ensure(self, filters: Sequence[Filter] = ()) -> None:
        creates = []
        for kind in KINDS:
            for version in self.families():
                family = "inet" if version == 4 else "inet6"
                timeout = " timeout 0" if kind == "temp" else ""
                creates.append(
                    f"create {self.set_name(kind, version)} hash:net family {family}"
                    f" hashsize 4096 maxelem {MAXELEM}{timeout}"
                )
        self._ipset_restore(creates)
        for version in self.families():
            rules = [
                "*filter",
                f":{self.chain} - [0:0]",
                f"-A {self.chain} -m set --match-set {self.set_name('allow', version)} src -j RETURN",
            ]
            for flt in filters:
                if flt.rule.direction == "in" and flt.rule.network.version == version:
                    rules.append(f"-A {self.chain} {self._filter_rule(flt)}")
            for kind in ("perm", "temp"):
                rules.append(
                    f"-A {self.chain} -m set --match-set {self.set_name(kind, version)} src"
                    f' -m comment --comment "{self.prefix} {kind}" -j DROP'
                )
            rules.append("COMMIT")
            done = proc.run(
                [self.restore[version], "-w", str(int(self.lock_timeout)), "--noflush"],
                input=("\n".join(rules) + "\n").encode(),
                timeout=60,
            )
            if done.returncode != 0:
                raise FirewallError(f"{self.restore[version]} refused our chain: {done.error_line}")
            if self._xt(version, "-C", *self._jump(), check=False).returncode != 0:
                self._xt(version, "-I", *self._jump()[:1], "1", *self._jump()[1:])

    @staticmethod
    def _filter_rule(flt: Filter) -> str:
        r = flt.rule
        side = "-s" if r.addr_side == "s" else "-d"
        target = "RETURN" if flt.action == "allow" else "DROP"
        if r.proto == "icmp":
            proto = "icmp" if r.network.version == 4 else "ipv6-icmp"
            return f"-p {proto} {side} {r.network} -j {target}"
        ports = ",".join(p.replace("-", ":") for p in port_spec(r.ports))
        flag = "--dports" if r.port_side == "d" else "--sports"
        return f"-p {r.proto} {side} {r.network} -m multiport {flag} {ports} -j {target}"

    def is_ready(self) -> bool:
        return all(self._xt(v, "-C", *self._jump(), check=False).returncode == 0 for v in self.families())

    def block(self, entries: Sequence[Entry], fresh: bool = False) -> None:
        lines = []
        for e in self.wanted(entries):
            timeout = f" timeout {e.ttl or 0}" if e.kind == "temp" else ""
            lines.append(f"add {self.set_name(e.kind, e.network.version)} {e.network}{timeout}")
        self._ipset_restore(lines)

    def unblock(self, entries: Sequence[Entry]) -> None:
        self._ipset_restore(
            [f"del {self.set_name(e.kind, e.network.version)} {e.network}" for e in self.wanted(entries)]
        )

    def list(self) -> list[KernelEntry]:
        out: list[KernelEntry] = []
        for kind in KINDS:
            for version in self.families():
                done = proc.run([self.ipset, "save", self.set_name(kind, version)], timeout=60)
                if done.returncode != 0:
                    continue
                for line in done.stdout.decode().splitlines():
                    parts = line.split()
                    if len(parts) < 3 or parts[0] != "add":
                        continue
                    expires = None
                    if "timeout" in parts:
                        value = int(parts[parts.index("timeout") + 1])
                        expires = float(value) if value else None
                    out.append(KernelEntry(parse_kernel_network(parts[2]), kind, expires))
        return out

    def _count(self, name: str) -> int:
        done = proc.run([self.ipset, "list", "-t", name], timeout=30)
        for line in done.stdout.decode().splitlines():
            if line.startswith("Number of entries:"):
                return int(line.split(":")[1])
        return 0

    def purge(self, kind: str = "temp") -> int:
        count = sum(self._count(self.set_name(kind, v)) for v in self.families())
        self._ipset_restore([f"flush {self.set_name(kind, v)}" for v in self.families()])
        return count

    def teardown(self) -> None:
        for version in self.families():
            while self._xt(version, "-D", *self._jump(), check=False).returncode == 0:
                pass
            if self._xt(version, "-F", self.chain, check=False).returncode == 0:
                self._xt(version, "-X", self.chain)
        for kind in KINDS:
            for version in self.families():
                proc.run([self.ipset, "destroy", self.set_name(kind, version)], timeout=30)

    def describe(self) -> str:
        return f"iptables + ipset (chain {self.chain}, sets {self.prefix}-*)"
