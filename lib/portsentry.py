"""PortSentry's history format, written and read in one place: the listener appends to
portsentry.history and portsentry.blocked as PortSentry 1.2 does, and the scan-history job
imports those files and PortSentry 2.x's (users migrating from PortSentry bring theirs)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# PortSentry 1.2: "1700000000 - 11/14/2023 22:13:20 Host: name/1.2.3.4 Port: 23 TCP Blocked"
V12 = re.compile(r"^(\d+) - \d\d/\d\d/\d{4} \d\d:\d\d:\d\d Host: (\S*)/(\S+) Port: (\d+) (TCP|UDP) (\w+)\s*$")
# PortSentry 2.x: "2024-01-02T03:04:05+00:00 Scan from: [1.2.3.4] (host) protocol: [TCP] port: [23]
#                  type: [Connect] ... blocked: [true]"
V2 = re.compile(
    r"^(\S+) Scan from: \[([^\]]+)\] \(([^)]*)\) protocol: \[(TCP|UDP)\] port: \[(\d+)\]"
    r"(?:.*?type: \[([^\]]*)\])?(?:.*?blocked: \[(\w+)\])?"
)


def format_line(when: float, ip: str, port: int, proto: str, action: str = "Blocked") -> str:
    """One history line in PortSentry 1.2's format (action: Blocked or Detected)."""
    stamp = datetime.fromtimestamp(when).strftime("%m/%d/%Y %H:%M:%S")
    return f"{int(when)} - {stamp} Host: {ip}/{ip} Port: {port} {proto.upper()} {action}\n"


@dataclass
class Imported:
    rows: list[tuple] = field(default_factory=list)  # (time, address, port, proto, type, blocked)
    errors: list[str] = field(default_factory=list)


def parse_history_line(line: str) -> tuple | None:
    m = V12.match(line)
    if m:
        epoch, _, ip, port, proto, action = m.groups()
        return float(epoch), ip, int(port), proto.lower(), "connect", action == "Blocked"
    m = V2.match(line)
    if m:
        stamp, ip, _, proto, port, kind, blocked = m.groups()
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        kind = (kind or "connect").strip()
        kind = "connect" if kind.lower() == "connect" else kind.upper()
        return when, ip, int(port), proto.lower(), kind, blocked == "true"
    return None


def read_history(path: Path, start_line: int = 0) -> Imported:
    """Parse a history file from a line on; a bad line is reported with file:line, skipped."""
    out = Imported()
    try:
        raw = path.read_bytes()
    except OSError as e:
        out.errors.append(f"{path}: cannot read: {e.strerror}")
        return out
    for lineno, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        if lineno <= start_line or not line.strip():
            continue
        try:
            row = parse_history_line(line)
            if row:
                ipaddress.ip_address(row[1])
                if not 0 < row[2] < 65536:
                    raise ValueError("port out of range")
        except ValueError as e:
            row = None
            reason = str(e)
        else:
            reason = "not a PortSentry 1.2 or 2.x history line"
        if row is None:
            out.errors.append(f"{path}:{lineno}: {reason}; line skipped")
            continue
        out.rows.append(row)
    return out
