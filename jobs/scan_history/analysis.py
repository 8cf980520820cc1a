"""The analysis (pandas) of what the listener saw: top sources, ports and subnets, scan types,
trends, change against the previous period, repeat offenders, danger levels (as psad's) and
recommendations, and the charts. pandas is imported only by the functions that need it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

# psad's default danger thresholds (packets) for levels 1 to 5
DANGER = (5, 15, 150, 1500, 10000)


# -- analysis ----------------------------------------------------------------------------------
COLUMNS = ["time", "address", "port", "proto", "type"]


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
            out[i] = str(ipaddress.ip_network(f"{a}/{prefix4 if ip.version == 4 else prefix6}", strict=False))
        except ValueError:
            out[i] = a
    return out.to_numpy()


@dataclass
class Analysis:
    tables: dict  # title -> DataFrame
    summary: dict
    candidates: list[str]  # permanent-block candidates
    subnets: list[str]  # networks worth blocking


def analyse(df, previous, blocks: dict, cfg: dict) -> Analysis:
    """blocks: address -> (times blocked, currently permanent)."""
    import pandas as pd

    top = cfg.top
    tables: dict = {}
    if df.empty:
        summary = {
            "hits": 0,
            "sources": 0,
            "ports": 0,
            "previous_hits": int(len(previous)),
            "previous_sources": int(previous["address"].nunique()) if len(previous) else 0,
        }
        return Analysis(tables, summary, [], [])
    g = df.groupby("address", observed=True)
    sources = pd.DataFrame(
        {
            "first seen": g["time"].min(),
            "last seen": g["time"].max(),
            "hits": g.size(),
            "ports": g["port"].nunique(),
        }
    )
    sources["danger"] = danger(sources["hits"].to_numpy(), sources["ports"].to_numpy())
    times_blocked = pd.Series({a: b[0] for a, b in blocks.items()}, dtype="int64")
    counts = times_blocked.reindex(sources.index.astype(str)).fillna(0).astype("int64").to_numpy()
    sources["times blocked"] = counts
    sources["blocked"] = pd.Series(counts > 0, index=sources.index).map({True: "yes", False: "no"})
    sources = sources.sort_values(["hits", "ports"], ascending=False)
    tables["Top sources"] = sources.head(top)

    ports = df.groupby(["port", "proto"], observed=True).agg(
        hits=("address", "size"), sources=("address", "nunique")
    )
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

    summary = {
        "hits": int(len(df)),
        "sources": int(df["address"].nunique()),
        "ports": int(df["port"].nunique()),
        "previous_hits": int(len(previous)),
        "previous_sources": int(previous["address"].nunique()) if len(previous) else 0,
    }
    permanent = {a for a, b in blocks.items() if b[1]}
    cands = sources[
        ((sources["danger"] >= cfg.candidate_danger) | (sources["times blocked"] >= cfg.repeat_blocks))
    ]
    candidates = [a for a in cands.index if a not in permanent]
    nets24 = tables["Subnets /24"]
    subnets = [n for n, row in nets24.iterrows() if row["sources"] >= cfg.subnet_min_sources]
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
    specs = [
        ("timeline", "Hourly", "hits", "Probes per hour", "line"),
        ("ports", "Top ports", "hits", "Top ports", "barh"),
        ("sources", "Top sources", "hits", "Top sources", "barh"),
    ]
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
