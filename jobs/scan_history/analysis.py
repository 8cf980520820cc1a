"""Scan history: PortSentry history files (1.2 and 2.x formats) brought into state, and the
analysis (pandas) of what the listener saw: top sources, ports and subnets, scan types,
trends, change against the previous period, repeat offenders, danger levels (as psad's) and
recommendations. pandas is imported only by the functions that need it."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# PortSentry 1.2: "1700000000 - 11/14/2023 22:13:20 Host: name/1.2.3.4 Port: 23 TCP Blocked"
V12 = re.compile(r"^(\d+) - \d\d/\d\d/\d{4} \d\d:\d\d:\d\d Host: (\S*)/(\S+) Port: (\d+) (TCP|UDP) (\w+)\s*$")
# PortSentry 2.x: "2024-01-02T03:04:05+00:00 Scan from: [1.2.3.4] (host) protocol: [TCP] port: [23]
#                  type: [Connect] ... blocked: [true]"
V2 = re.compile(r"^(\S+) Scan from: \[([^\]]+)\] \(([^)]*)\) protocol: \[(TCP|UDP)\] port: \[(\d+)\]"
                r"(?:.*?type: \[([^\]]*)\])?(?:.*?blocked: \[(\w+)\])?")
# psad's default danger thresholds (packets) for levels 1 to 5
DANGER = (5, 15, 150, 1500, 10000)


@dataclass
class Imported:
    rows: list[tuple] = field(default_factory=list)     # (time, address, port, proto, type, blocked)
    errors: list[str] = field(default_factory=list)


def parse_line(line: str) -> tuple | None:
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
            row = parse_line(line)
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


def import_file(state, path: Path) -> tuple[int, list[str]]:
    """Bring new lines of a history file into state; a cursor remembers how far it got."""
    key = f"history:{path}"
    cursor = state.get_cursor(key) or {}
    try:
        st = path.stat()
    except OSError as e:
        return 0, [f"{path}: cannot read: {e.strerror}"]
    start = cursor.get("line", 0) if cursor.get("inode") == st.st_ino and \
        cursor.get("size", 0) <= st.st_size else 0
    result = read_history(path, start)
    lines = start + len(result.rows) + len(result.errors)
    with state:
        state.db.executemany(
            "INSERT INTO events(time, kind, address, port, proto, source, detail)"
            " VALUES (?, 'scan', ?, ?, ?, 'portsentry', ?)",
            [(t, ip, port, proto, json.dumps({"type": kind, "blocked": blocked}))
             for t, ip, port, proto, kind, blocked in result.rows])
        state.set_cursor(key, {"inode": st.st_ino, "size": st.st_size, "line": lines})
    return len(result.rows), result.errors


# -- analysis ----------------------------------------------------------------------------------
COLUMNS = ["time", "address", "port", "proto", "type"]
SCAN_SQL = ("SELECT time, address, port, proto, COALESCE(json_extract(detail, '$.type'), 'connect')"
            " FROM events WHERE kind = 'scan' AND time >= {since!r} AND time < {until!r}")


def load(state, since: float, until: float):
    """The scan events of [since, until) as a DataFrame: time, address, port, proto, type.

    Read column-wise through Arrow when its SQLite driver is installed (a dependency); else
    the rows come through the sqlite3 module in chunks, each made categorical at once."""
    import pandas as pd

    sql = SCAN_SQL.format(since=float(since), until=float(until))
    fast = _load_arrow(state, sql)
    if fast is not None:
        return fast
    cur = state.db.execute(sql)
    parts = []
    while True:
        rows = cur.fetchmany(500_000)
        if not rows:
            break
        parts.append(frame(pd.DataFrame(rows, columns=COLUMNS)))
    if not parts:
        return frame(pd.DataFrame(columns=COLUMNS))
    if len(parts) == 1:
        return parts[0]
    from pandas.api.types import union_categoricals
    out = pd.DataFrame({"time": pd.concat([p["time"] for p in parts], ignore_index=True),
                        "port": pd.concat([p["port"] for p in parts], ignore_index=True)})
    for col in ("address", "proto", "type"):
        out[col] = union_categoricals([p[col] for p in parts])
    return out[COLUMNS]


def _load_arrow(state, sql: str):
    """Columnar read through ADBC's SQLite driver (Arrow): ten million rows in about ten
    seconds. None when the driver is not installed."""
    try:
        import adbc_driver_sqlite.dbapi as dbapi
        import pyarrow.compute as pc
    except ImportError:
        return None
    from urllib.parse import quote
    con = dbapi.connect(f"file:{quote(str(state.path))}?mode=ro")
    try:
        cur = con.cursor()
        cur.execute(sql)
        table = cur.fetch_arrow_table()
        cur.close()
    finally:
        con.close()
    table = table.rename_columns(COLUMNS)
    for name in ("address", "proto", "type"):
        table = table.set_column(table.schema.get_field_index(name), name,
                                 pc.dictionary_encode(table.column(name)))
    # the Arrow buffers are released as the columns move to pandas: a lower peak
    return frame(table.to_pandas(split_blocks=True, self_destruct=True))


def frame(df):
    """Types fit for ten million rows: categories for the strings, int32 ports."""
    import pandas as pd

    df["time"] = pd.to_datetime(df["time"], unit="s")
    for col in ("address", "proto", "type"):
        df[col] = df[col].astype("category")
    df["port"] = df["port"].astype("int32")
    return df


def danger(hits, ports):
    """psad-like level: by packet count thresholds, one more for wide port coverage (max 5)."""
    import numpy as np

    level = np.zeros(len(hits), dtype="int8")
    for threshold in DANGER:
        level += (hits >= threshold).astype("int8")
    level += (ports >= 10).astype("int8")
    return np.clip(level, 1, 5)


def subnet(addresses, prefix4: int, prefix6: int):
    """The network of each address: string operations for IPv4 /24 and /16 (millions of
    addresses), the ipaddress module for the rest."""
    import pandas as pd

    idx = pd.Index(addresses).astype(str)
    v4 = idx.str.fullmatch(r"\d+\.\d+\.\d+\.\d+")
    out = pd.Series(index=range(len(idx)), dtype=object)
    if prefix4 in (24, 16):
        keep = 3 if prefix4 == 24 else 2
        parts = idx[v4].str.split(".", n=keep, regex=False).str[:keep].str.join(".")
        out[v4] = (parts + (".0/24" if prefix4 == 24 else ".0.0/16")).to_numpy()
    for i in (~v4).nonzero()[0] if not all(v4) else []:
        a = idx[i]
        try:
            ip = ipaddress.ip_address(a)
            out[i] = str(ipaddress.ip_network(f"{a}/{prefix4 if ip.version == 4 else prefix6}",
                                              strict=False))
        except ValueError:
            out[i] = a
    return out.to_numpy()


@dataclass
class Analysis:
    tables: dict                    # title -> DataFrame
    summary: dict
    candidates: list[str]           # permanent-block candidates
    subnets: list[str]              # networks worth blocking


def analyse(df, previous, blocks: dict, cfg: dict) -> Analysis:
    """blocks: address -> (times blocked, currently permanent)."""
    import pandas as pd

    top = cfg["top"]
    tables: dict = {}
    if df.empty:
        summary = {"hits": 0, "sources": 0, "ports": 0, "previous_hits": int(len(previous)),
                   "previous_sources": int(previous["address"].nunique()) if len(previous) else 0}
        return Analysis(tables, summary, [], [])
    g = df.groupby("address", observed=True)
    sources = pd.DataFrame({"first seen": g["time"].min(), "last seen": g["time"].max(),
                            "hits": g.size(), "ports": g["port"].nunique()})
    sources["danger"] = danger(sources["hits"].to_numpy(), sources["ports"].to_numpy())
    times_blocked = pd.Series({a: b[0] for a, b in blocks.items()}, dtype="int64")
    counts = times_blocked.reindex(sources.index.astype(str)).fillna(0).astype("int64").to_numpy()
    sources["times blocked"] = counts
    sources["blocked"] = pd.Series(counts > 0, index=sources.index).map({True: "yes", False: "no"})
    sources = sources.sort_values(["hits", "ports"], ascending=False)
    tables["Top sources"] = sources.head(top)

    ports = df.groupby(["port", "proto"], observed=True).agg(hits=("address", "size"),
                                                             sources=("address", "nunique"))
    tables["Top ports"] = ports.sort_values("hits", ascending=False).head(top)

    per_source = sources[["hits"]].copy()
    for label, p4, p6 in (("/24", 24, 64), ("/16", 16, 48)):
        per_source["net"] = subnet(per_source.index, p4, p6)
        nets = per_source.groupby("net").agg(sources=("hits", "size"), hits=("hits", "sum"))
        tables[f"Subnets {label}"] = nets.sort_values(["sources", "hits"], ascending=False).head(top)

    kinds = df.groupby("type", observed=True).agg(hits=("address", "size"), sources=("address", "nunique"))
    tables["Scan types"] = kinds.sort_values("hits", ascending=False)

    for title, rule, keep in (("Hourly", "1h", 48), ("Daily", "1D", 31)):
        trend = df.set_index("time").resample(rule).agg({"address": ["size", "nunique"]})
        trend.columns = ["hits", "sources"]
        tables[title] = trend
        tables[title + " (shown)"] = trend[trend["hits"] > 0].tail(keep)

    repeat = sources[sources["times blocked"] >= 2].sort_values("times blocked", ascending=False)
    tables["Repeat offenders"] = repeat[["times blocked", "hits", "ports", "danger"]].head(top)

    summary = {"hits": int(len(df)), "sources": int(df["address"].nunique()),
               "ports": int(df["port"].nunique()), "previous_hits": int(len(previous)),
               "previous_sources": int(previous["address"].nunique()) if len(previous) else 0}
    permanent = {a for a, b in blocks.items() if b[1]}
    cands = sources[((sources["danger"] >= cfg["candidate_danger"]) |
                     (sources["times blocked"] >= cfg["repeat_blocks"]))]
    candidates = [a for a in cands.index if a not in permanent]
    nets24 = tables["Subnets /24"]
    subnets = [n for n, row in nets24.iterrows() if row["sources"] >= cfg["subnet_min_sources"]]
    return Analysis(tables, summary, candidates, subnets)


def change(now: int, before: int) -> str:
    if before == 0:
        return "new" if now else "none"
    return f"{(now - before) / before * 100:+.0f} %"


def charts(analysis: Analysis, out_dir: Path, stem: str) -> dict[str, Path]:
    """PNG charts: a timeline, top ports, top sources."""
    if not analysis.tables:
        return {}
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = [("timeline", "Hourly", "hits", "Probes per hour", "line"),
             ("ports", "Top ports", "hits", "Top ports", "barh"),
             ("sources", "Top sources", "hits", "Top sources", "barh")]
    for name, table, column, title, kind in specs:
        data = analysis.tables[table][column]
        if data.empty:
            continue
        fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
        if kind == "line":
            ax.plot(data.index, data.values, color="#b03030")
            fig.autofmt_xdate()
        else:
            labels = ["/".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in data.index[:10]]
            ax.barh(labels[::-1], data.values[:10][::-1], color="#3060a0")
        ax.set_title(title)
        fig.tight_layout()
        path = out_dir / f"{stem}-{name}.png"
        fig.savefig(path)
        plt.close(fig)
        made[name] = path
    return made
