"""python-iptables backend, for hosts that run iptables-legacy.

python-iptables drives only the legacy xtables backend: on a host whose `iptables` is the
nft flavour, its rules are enforced but invisible to `iptables -S`. It ignores the xtables
lock, so we take /run/xtables.lock ourselves. It blocks in-process (no fork per block).

Layout: chain {PREFIX} (jumped from INPUT) holds the allow rules (RETURN) and the advanced
filters, then jumps to {PREFIX}-PERM and {PREFIX}-TEMP, which hold one DROP rule per entry.
The kernel has no timeouts here: temp entries expire through the scheduled runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .. import proc
from ..errors import FirewallError, UnavailableError
from ..lock import LockFile
from .base import Backend, Entry, Filter, KernelEntry, parse_kernel_network, port_spec

XTABLES_LOCK = Path("/run/xtables.lock")


def _iptc():
    try:
        import iptc  # noqa: PLC0415  (heavy: about 0.2 s, imported only when used)
    except Exception as e:  # the C library may be missing
        raise UnavailableError(f"python-iptables cannot be loaded: {e}") from None
    return iptc


class IptcBackend(Backend):
    name = "iptc"
    kernel_timeouts = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.iptc = _iptc()
        self.main = self.prefix.upper()
        self.sub = {"perm": f"{self.main}-PERM", "temp": f"{self.main}-TEMP"}

    @classmethod
    def probe(cls) -> str | None:
        path = proc.which("iptables")
        if path is not None:
            version = proc.run([path, "--version"], timeout=10).stdout.decode()
            if "nf_tables" in version:
                return "the host's iptables is the nft flavour (python-iptables drives legacy only)"
        try:
            _iptc()
        except UnavailableError as e:
            return str(e)
        return None

    # -- plumbing -------------------------------------------------------------
    def _tables(self):
        tables = [(4, self.iptc.Table(self.iptc.Table.FILTER))]
        if self.ipv6:
            tables.append((6, self.iptc.Table6(self.iptc.Table6.FILTER)))
        return tables

    def _rule(self, version: int):
        return self.iptc.Rule() if version == 4 else self.iptc.Rule6()

    def _tagged(self, version: int, target: str, tag: str, src: str | None = None):
        rule = self._rule(version)
        if src is not None:
            rule.src = src
        match = rule.create_match("comment")
        match.comment = f"{self.prefix}:{tag}"
        rule.target = self.iptc.Target(rule, target)
        return rule

    def _transaction(self, work) -> None:
        """Run work(version, table) for each family under the xtables lock, one commit each."""
        with LockFile(XTABLES_LOCK, "xtables").acquire(wait=self.lock_timeout):
            for version, table in self._tables():
                table.autocommit = False
                table.refresh()
                try:
                    work(version, table)
                    table.commit()
                except self.iptc.IPTCError as e:
                    table.refresh()
                    raise FirewallError(f"python-iptables refused the change: {e}") from None
                finally:
                    table.autocommit = True

    def _chain(self, table, name: str):
        return self.iptc.Chain(table, name)

    @staticmethod
    def _count_rules(table, chain: str) -> int:
        """Count without decoding each rule (decoding costs about 0.2 ms a rule)."""
        count, entry = 0, table.first_rule(chain)
        while entry:
            count += 1
            entry = table.next_rule(entry)
        return count

    @staticmethod
    def _comment(rule) -> str:
        for m in rule.matches:
            if m.name == "comment":
                return m.comment or ""
        return ""

    def _src(self, rule) -> str:
        return str(parse_kernel_network(rule.src))

    # -- interface ------------------------------------------------------------
    def ensure(self, filters: Sequence[Filter] = ()) -> None:
        def work(version, table):
            for name in (self.main, *self.sub.values()):
                if not table.is_chain(name):
                    table.create_chain(name)
            main = self._chain(table, name=self.main)
            for rule in list(main.rules):
                if self._comment(rule) != f"{self.prefix}:allow":
                    main.delete_rule(rule)
            for flt in filters:
                if flt.rule.direction == "in" and flt.rule.network.version == version:
                    main.append_rule(self._filter_rule(version, flt))
            for name in self.sub.values():
                main.append_rule(self._tagged(version, name, "jump"))
            inp = self._chain(table, "INPUT")
            if not any(r.target.name == self.main for r in inp.rules):
                inp.insert_rule(self._tagged(version, self.main, "jump"))

        self._transaction(work)

    def _filter_rule(self, version: int, flt: Filter):
        r = flt.rule
        rule = self._tagged(version, "RETURN" if flt.action == "allow" else "DROP", "filter")
        if r.addr_side == "s":
            rule.src = str(r.network)
        else:
            rule.dst = str(r.network)
        if r.proto == "icmp":
            rule.protocol = "icmp" if version == 4 else "ipv6-icmp"
        else:
            rule.protocol = r.proto
            mp = rule.create_match("multiport")
            ports = ",".join(p.replace("-", ":") for p in port_spec(r.ports))
            if r.port_side == "d":
                mp.dports = ports
            else:
                mp.sports = ports
        return rule

    def is_ready(self) -> bool:
        for _, table in self._tables():
            table.refresh()
            inp = self._chain(table, "INPUT")
            if not table.is_chain(self.main) or not any(r.target.name == self.main for r in inp.rules):
                return False
        return True

    def _existing(self, table) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {"allow": set(), "perm": set(), "temp": set()}
        for rule in self._chain(table, self.main).rules:
            if self._comment(rule) == f"{self.prefix}:allow":
                found["allow"].add(self._src(rule))
        for kind, name in self.sub.items():
            if table.is_chain(name):
                found[kind] = {self._src(r) for r in self._chain(table, name).rules}
        return found

    def block(self, entries: Sequence[Entry], fresh: bool = False) -> None:
        wanted = self.wanted(entries)

        def work(version, table):
            existing = self._existing(table)
            for e in wanted:
                src = str(e.network)
                if e.network.version != version or src in existing[e.kind]:
                    continue
                if e.kind == "allow":
                    self._chain(table, self.main).insert_rule(self._tagged(version, "RETURN", "allow", src))
                else:
                    self._chain(table, self.sub[e.kind]).append_rule(
                        self._tagged(version, "DROP", e.kind, src)
                    )
                existing[e.kind].add(src)

        self._transaction(work)

    def unblock(self, entries: Sequence[Entry]) -> None:
        wanted = self.wanted(entries)

        def work(version, table):
            for kind in ("allow", "perm", "temp"):
                targets = {str(e.network) for e in wanted if e.kind == kind and e.network.version == version}
                if not targets:
                    continue
                chain = self._chain(table, self.main if kind == "allow" else self.sub[kind])
                for rule in list(chain.rules):
                    if self._src(rule) in targets and (
                        kind != "allow" or self._comment(rule) == f"{self.prefix}:allow"
                    ):
                        chain.delete_rule(rule)

        self._transaction(work)

    def list(self) -> list[KernelEntry]:
        out = []
        for _, table in self._tables():
            table.refresh()
            if not table.is_chain(self.main):
                continue
            for kind, addrs in self._existing(table).items():
                out += [KernelEntry(parse_kernel_network(a), kind) for a in sorted(addrs)]
        return out

    def purge(self, kind: str = "temp") -> int:
        if kind == "allow":
            allowed = [e for e in self.list() if e.kind == "allow"]
            self.unblock([Entry(e.network, "allow") for e in allowed])
            return len(allowed)
        counted = []

        def work(version, table):
            if table.is_chain(self.sub[kind]):
                counted.append(self._count_rules(table, self.sub[kind]))
                self._chain(table, self.sub[kind]).flush()

        self._transaction(work)
        return sum(counted)

    def teardown(self) -> None:
        def work(version, table):
            inp = self._chain(table, "INPUT")
            for rule in list(inp.rules):
                if rule.target.name == self.main:
                    inp.delete_rule(rule)
            for name in (self.main, *self.sub.values()):
                if table.is_chain(name):
                    self._chain(table, name).flush()
            for name in (self.main, *self.sub.values()):
                if table.is_chain(name):
                    table.delete_chain(name)

        self._transaction(work)

    def describe(self) -> str:
        return f"python-iptables, legacy xtables (chain {self.main})"
