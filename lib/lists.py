"""The allow, deny and ignore lists, in csf's and PortSentry's file formats.

Accepted lines (csf.allow, csf.deny, csf.ignore, portsentry.ignore):
  1.2.3.4                     an address
  10.0.0.0/8                  a network
  2001:db8::/32 # comment     IPv6, with a trailing comment
  tcp:in:d=3306:s=11.22.33.44 a csf advanced filter (use | as separator for IPv6)
  Include /etc/csf/more.allow another file
A bad line is reported as ``file:line: message`` and skipped; the rest still applies. A
file that exists but cannot be read (permissions, a FIFO or a device in its place, too
large) is *unreadable*: an allow or ignore list that is unreadable stops every block until
it can be read again (fail closed), because what it would have protected is unknown.
Lookups go through an index (sorted ranges per family): microseconds at a million entries.
"""

from __future__ import annotations

import bisect
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError, NightwardenError, NoInputError
from .fsutil import read_regular
from .netaddr import Network, display, parse_network

MAX_INCLUDE_DEPTH = 5
MAX_LIST_BYTES = 256 << 20
_PORT = re.compile(r"^\d{1,5}([_:-]\d{1,5})?$")


@dataclass(frozen=True)
class PortFilter:
    """A csf advanced filter: protocol, direction, port and address."""

    proto: str
    direction: str
    port_side: str  # "d" or "s"
    ports: tuple[str, ...]
    addr_side: str  # "s" or "d"
    network: Network

    def __str__(self) -> str:
        return (
            f"{self.proto}|{self.direction}|{self.port_side}={','.join(self.ports)}"
            f"|{self.addr_side}={display(self.network)}"
        )


@dataclass(frozen=True, slots=True)
class ListEntry:
    network: Network
    file: str
    line: int
    comment: str = ""
    filter: PortFilter | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _span(net: Network) -> tuple[int, int]:
    """The first and the last address of a network, as integers."""
    low = int(net.network_address)
    return low, low | ((1 << (net.max_prefixlen - net.prefixlen)) - 1)


class RangeIndex:
    """Whole-address entries as sorted [start, end] ranges per family, with the running
    maximum of the ends: "does any entry overlap this network" in two bisections."""

    def __init__(self, entries: list[ListEntry]):
        self.families = {}
        for version in (4, 6):
            mine = sorted(
                ((*_span(e.network), e) for e in entries if e.network.version == version),
                key=lambda m: (m[0], m[1]),
            )
            reach, top = [], -1
            for _, end, _ in mine:
                top = max(top, end)
                reach.append(top)
            self.families[version] = ([m[0] for m in mine], reach, [m[2] for m in mine], [m[1] for m in mine])

    def find(self, net: Network) -> ListEntry | None:
        starts, reach, entries, ends = self.families[net.version]
        low, high = _span(net)
        last = bisect.bisect_right(starts, high)  # entries[:last] start at or before high
        if not last:
            return None
        first = bisect.bisect_left(reach, low, 0, last)  # the first whose reach gets to low
        if first == last:
            return None
        # reach[first] >= low is the end of some entry at or before `first`: the first entry
        # whose own end is that far is at `first` (the running maximum rose there)
        return entries[first] if ends[first] >= low else None


@dataclass
class AddressList:
    """One kind of list (allow, deny or ignore) read from several files."""

    kind: str
    entries: list[ListEntry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # files that exist and cannot be read
    _index: RangeIndex | None = field(default=None, repr=False)

    @property
    def whole(self) -> list[ListEntry]:
        """Entries that cover every port (not advanced filters)."""
        return [e for e in self.entries if e.filter is None]

    @property
    def filters(self) -> list[ListEntry]:
        return [e for e in self.entries if e.filter is not None]

    def match(self, net: Network) -> ListEntry | None:
        """A whole-address entry that overlaps net, or None."""
        if not self.entries:
            return None
        return self.build_index().find(net)

    def build_index(self) -> RangeIndex:
        """The index, made at the first lookup (or ahead of time, as the listener does)."""
        if self._index is None:
            self._index = RangeIndex(self.whole)
        return self._index

    def require_readable(self) -> None:
        """An unreadable list fails closed: raise, naming the file (exit 66)."""
        if self.unreadable:
            raise NoInputError(
                f"the {self.kind} list cannot be read ({self.unreadable[0]}): nothing is blocked "
                f"until it can, since what it protects is unknown"
            )

    def exact(self, net: Network) -> list[ListEntry]:
        return [e for e in self.entries if e.network == net]


def parse_filter(text: str) -> tuple[PortFilter | None, str | None]:
    """Parse a csf advanced filter. Returns (filter, None) or (None, error)."""
    parts = text.split("|") if "|" in text else text.split(":")
    proto, direction = "tcp", "in"
    port_side = addr_side = None
    ports: tuple[str, ...] = ()
    network = None
    for part in parts:
        part = part.strip().lower()
        if part in ("tcp", "udp", "icmp"):
            proto = part
        elif part in ("in", "out"):
            direction = part
        elif part[:2] in ("s=", "d="):
            side, value = part[0], part[2:]
            candidates = value.split(",")
            if all(_PORT.match(p) for p in candidates):
                if any(int(x) > 65535 for p in candidates for x in re.split(r"[_:-]", p)):
                    return None, f"port out of range in {value!r}"
                port_side, ports = side, tuple(candidates)
            else:
                try:
                    network = parse_network(value)
                except DataError:
                    return None, f"{value!r} is neither a port nor an IP address"
                addr_side = side
        elif part.startswith("u=") or part.startswith("g="):
            return None, "uid/gid filters are not supported"
        else:
            return None, f"unknown filter field {part!r}"
    if network is None:
        return None, "advanced filter has no address (s=IP or d=IP)"
    if port_side is None and proto != "icmp":
        return None, "advanced filter has no port (d=PORT or s=PORT)"
    return PortFilter(proto, direction, port_side or "d", ports, addr_side or "s", network), None


def parse_line(raw: str) -> tuple[str, str]:
    """Split a list line into (value, comment)."""
    value, _, comment = raw.partition("#")
    return value.strip(), comment.strip()


def read_list_file(path: Path, kind: str, into: AddressList, depth: int = 0) -> None:
    """Read one list file into `into`. A missing file is not an error (lists are optional)."""
    try:
        raw = read_regular(path, MAX_LIST_BYTES, f"{kind} list", follow=True)
    except FileNotFoundError:
        return
    except (OSError, NightwardenError) as e:
        why = getattr(e, "message", None) or f"{path}: cannot read: {e.strerror}"
        into.unreadable.append(why)
        into.errors.append(why)
        return
    for lineno, line in enumerate(raw.splitlines(), 1):
        where = f"{path}:{lineno}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            into.errors.append(f"{where}: not UTF-8 text; line skipped")
            continue
        value, comment = parse_line(text)
        if not value:
            continue
        if value.lower().startswith("include "):
            target = Path(value.split(None, 1)[1].strip())
            if depth >= MAX_INCLUDE_DEPTH:
                into.errors.append(f"{where}: includes nested too deep; skipped")
            elif not target.is_absolute():
                into.errors.append(f"{where}: Include needs an absolute path; skipped")
            else:
                read_list_file(target, kind, into, depth + 1)
            continue
        token = value.split()[0]
        if "=" in token or "|" in token:
            flt, error = parse_filter(token)
            if error:
                into.errors.append(f"{where}: {error}; line skipped")
                continue
            into.entries.append(ListEntry(flt.network, str(path), lineno, comment, flt))
            continue
        try:
            net = parse_network(token)
        except NightwardenError as e:
            hint = (
                " (host names are not supported: use addresses)"
                if re.search(r"[a-z]", token, re.I) and ":" not in token
                else ""
            )
            into.errors.append(f"{where}: {e}{hint}; line skipped")
            continue
        into.entries.append(ListEntry(net, str(path), lineno, comment))


def load_list(kind: str, files: list[Path], inline: list[str], config_name: str) -> AddressList:
    result = AddressList(kind)
    for path in files:
        read_list_file(path, kind, result)
    for i, text in enumerate(inline, 1):
        try:
            net = parse_network(text)
        except NightwardenError as e:
            result.errors.append(f"{config_name}: lists.{kind}[{i}]: {e}; skipped")
            continue
        result.entries.append(ListEntry(net, f"{config_name} lists.{kind}", i))
    return result


@dataclass
class Lists:
    allow: AddressList
    deny: AddressList
    ignore: AddressList

    @property
    def errors(self) -> list[str]:
        return self.allow.errors + self.deny.errors + self.ignore.errors

    def build_index(self) -> None:
        for kind in (self.allow, self.deny, self.ignore):
            kind.build_index()

    @property
    def unreadable_any(self) -> bool:
        return bool(self.allow.unreadable or self.ignore.unreadable)

    def require_readable(self) -> None:
        """Blocking needs the allow and the ignore list (a deny list read in part only
        blocks less)."""
        self.allow.require_readable()
        self.ignore.require_readable()


def load_lists(config) -> Lists:
    name = str(config.files[0]) if config.files else "config"
    lists = config.lists
    return Lists(
        *(
            load_list(kind, config.list_files(kind), getattr(lists, kind), name)
            for kind in ("allow", "deny", "ignore")
        )
    )


def append_entry(path: Path, net: Network, comment: str) -> None:
    """Append an address to one of our list files, atomically (write a copy, rename)."""
    from .fsutil import atomic_write

    try:
        existing = path.read_bytes()
    except FileNotFoundError:
        existing = b""
    if existing and not existing.endswith(b"\n"):
        existing += b"\n"
    line = display(net) + (f" # {comment}" if comment else "")
    atomic_write(path, existing + line.encode() + b"\n", mode=0o640)


def remove_entry(path: Path, net: Network) -> int:
    """Remove every line of our list file that names exactly net. Returns lines removed."""
    from .fsutil import atomic_write

    try:
        lines = path.read_bytes().splitlines(keepends=True)
    except FileNotFoundError:
        return 0
    kept, removed = [], 0
    for line in lines:
        value, _ = parse_line(line.decode("utf-8", "replace"))
        token = value.split()[0] if value else ""
        try:
            same = bool(token) and parse_network(token) == net
        except NightwardenError:
            same = False
        if same:
            removed += 1
        else:
            kept.append(line)
    if removed:
        atomic_write(path, b"".join(kept), mode=os.stat(path).st_mode & 0o7777)
    return removed
