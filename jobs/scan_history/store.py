"""The scan-history analysis reads the shared events table (the listener's hits and the
imported PortSentry lines) column-wise: its one query lives here."""

from __future__ import annotations

from .analysis import COLUMNS, frame

SCAN_SQL = (
    "SELECT time, address, port, proto, COALESCE(json_extract(detail, '$.type'), 'connect')"
    " FROM events WHERE kind = 'scan' AND time >= ? AND time < ?"
)


def scan_frame(state, since: float, until: float):
    """The scan events of [since, until) as a DataFrame: time, address, port, proto, type.

    Read column-wise through Arrow when its SQLite driver is installed (a dependency); else
    the rows come through the sqlite3 module in chunks, each made categorical at once."""
    import pandas as pd

    period = (float(since), float(until))
    fast = _load_arrow(state, period)
    if fast is not None:
        return fast
    cur = state.db.execute(SCAN_SQL, period)
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

    out = pd.DataFrame(
        {
            "time": pd.concat([p["time"] for p in parts], ignore_index=True),
            "port": pd.concat([p["port"] for p in parts], ignore_index=True),
        }
    )
    for col in ("address", "proto", "type"):
        out[col] = union_categoricals([p[col] for p in parts])
    return out[COLUMNS]


def _load_arrow(state, period: tuple[float, float]):
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
        cur.execute(SCAN_SQL, period)
        table = cur.fetch_arrow_table()
        cur.close()
    finally:
        con.close()
    table = table.rename_columns(COLUMNS)
    for name in ("address", "proto", "type"):
        table = table.set_column(
            table.schema.get_field_index(name), name, pc.dictionary_encode(table.column(name))
        )
    # the Arrow buffers are released as the columns move to pandas: a lower peak
    return frame(table.to_pandas(split_blocks=True, self_destruct=True))
