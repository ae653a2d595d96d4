"""Online state that must take effect at once: sends recorded at run time, recent purchases.

The rules read it on top of the batch context, so an item mailed an hour ago or a pram
bought this morning is excluded before the next snapshot is built. The interface
(:class:`StateStore`) is four methods over DataFrames, small enough for a Redis
implementation to replace :class:`SQLiteStateStore` later.

Writes are atomic: a batch of rows is stored in one transaction, entirely or not at all.
The SQLite file runs in WAL mode, so readers (API workers) never block the writer.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Protocol

import pandas as pd

from features import contract as c

log = logging.getLogger(__name__)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS sends (
    {c.CUSTOMER_ID} TEXT NOT NULL,
    {c.ITEM_ID} TEXT NOT NULL,
    {c.PLACEMENT} TEXT,
    {c.TS} TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sends_customer ON sends ({c.CUSTOMER_ID}, {c.TS});
CREATE INDEX IF NOT EXISTS sends_ts ON sends ({c.TS});
CREATE TABLE IF NOT EXISTS purchases (
    {c.CUSTOMER_ID} TEXT NOT NULL,
    {c.ITEM_ID} TEXT NOT NULL,
    {c.TS} TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS purchases_customer ON purchases ({c.CUSTOMER_ID}, {c.TS});
CREATE INDEX IF NOT EXISTS purchases_ts ON purchases ({c.TS});
"""
_SEND_COLS = (c.CUSTOMER_ID, c.ITEM_ID, c.PLACEMENT, c.TS)
_PURCHASE_COLS = (c.CUSTOMER_ID, c.ITEM_ID, c.TS)
_MAX_VARS = 500  # ids per IN (...) query, below SQLite's variable limit


class StateStore(Protocol):
    """Online state: what was sent and bought since the last batch context was built."""

    def record_sends(self, sends: pd.DataFrame) -> int:
        """Store sends (``customer_id, item_id, ts`` and optional ``placement``) atomically."""
        ...

    def record_purchases(self, purchases: pd.DataFrame) -> int:
        """Store purchases (``customer_id, item_id, ts``) atomically."""
        ...

    def recent_sends(
        self, since: datetime, customer_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Sends with ``ts > since`` (optionally of these customers only)."""
        ...

    def recent_purchases(
        self, since: datetime, customer_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Purchases with ``ts > since`` (optionally of these customers only)."""
        ...


def _iso(values: pd.Series, column: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = values
    else:
        ts = pd.to_datetime(values, errors="coerce", format="ISO8601")
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    if ts.isna().any():
        bad = values[ts.isna()].astype(str).head(3).tolist()
        raise ValueError(f"{column} has {int(ts.isna().sum())} missing/unparseable value(s): {bad}")
    return ts.dt.strftime("%Y-%m-%dT%H:%M:%S.%f")


def _text(frame: pd.DataFrame, column: str, required: bool) -> pd.Series:
    if column not in frame.columns:
        if required:
            raise ValueError(f"missing column {column!r}; have {list(frame.columns)}")
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)
    col = frame[column]
    if required and col.isna().any():
        raise ValueError(f"column {column!r} has {int(col.isna().sum())} missing value(s)")
    return col.astype(object).where(col.notna(), None).map(lambda v: v if v is None else str(v))


class SQLiteStateStore:
    """:class:`StateStore` in a local SQLite file (one connection per call; WAL mode).

    Parameters
    ----------
    path : str or Path
        SQLite file; created (with its folder) on first write or read.
    timeout_s : float
        Seconds to wait for a lock held by another writer.
    """

    def __init__(self, path: str | Path, timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._ready = False

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        try:
            if not self._ready:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA)
                self._ready = True
            yield con
        finally:
            con.close()

    def _insert(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> int:
        if not rows:
            return 0
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany(sql, rows)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        return len(rows)

    def record_sends(self, sends: pd.DataFrame) -> int:
        """Store sends atomically; returns the number of rows stored.

        Parameters
        ----------
        sends : DataFrame
            ``customer_id``, ``item_id``, ``ts`` (UTC) and optional ``placement``.

        Raises
        ------
        ValueError
            A required column is missing or has missing/unparseable values (nothing stored).
        """
        cols = [
            _text(sends, c.CUSTOMER_ID, True),
            _text(sends, c.ITEM_ID, True),
            _text(sends, c.PLACEMENT, False),
            _iso(sends[c.TS], c.TS) if c.TS in sends.columns else _missing(sends),
        ]
        return self._insert("sends", _SEND_COLS, list(zip(*cols, strict=True)))

    def record_purchases(self, purchases: pd.DataFrame) -> int:
        """Store purchases (``customer_id, item_id, ts``) atomically; returns rows stored."""
        cols = [
            _text(purchases, c.CUSTOMER_ID, True),
            _text(purchases, c.ITEM_ID, True),
            _iso(purchases[c.TS], c.TS) if c.TS in purchases.columns else _missing(purchases),
        ]
        return self._insert("purchases", _PURCHASE_COLS, list(zip(*cols, strict=True)))

    def _select(
        self,
        table: str,
        columns: tuple[str, ...],
        since: datetime,
        customer_ids: Sequence[str] | None,
    ) -> pd.DataFrame:
        since_iso = pd.Timestamp(since).strftime("%Y-%m-%dT%H:%M:%S.%f")
        base = f"SELECT {', '.join(columns)} FROM {table} WHERE {c.TS} > ?"
        rows: list[tuple] = []
        with self._connect() as con:
            if customer_ids is None:
                rows = con.execute(base, (since_iso,)).fetchall()
            else:
                ids = [str(x) for x in dict.fromkeys(customer_ids)]
                for i in range(0, len(ids), _MAX_VARS):
                    part = ids[i : i + _MAX_VARS]
                    q = f"{base} AND {c.CUSTOMER_ID} IN ({', '.join('?' * len(part))})"
                    rows.extend(con.execute(q, (since_iso, *part)).fetchall())
        frame = pd.DataFrame(rows, columns=list(columns), dtype=object)
        frame[c.TS] = pd.to_datetime(frame[c.TS]).astype("datetime64[ns]")
        return frame

    def recent_sends(
        self, since: datetime, customer_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Sends with ``ts > since`` (naive UTC): ``customer_id, item_id, placement, ts``."""
        return self._select("sends", _SEND_COLS, since, customer_ids)

    def recent_purchases(
        self, since: datetime, customer_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Purchases with ``ts > since`` (naive UTC): ``customer_id, item_id, ts``."""
        return self._select("purchases", _PURCHASE_COLS, since, customer_ids)

    def prune(self, before: datetime) -> int:
        """Delete sends and purchases with ``ts < before`` (atomic); returns rows deleted."""
        iso = pd.Timestamp(before).strftime("%Y-%m-%dT%H:%M:%S.%f")
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                n = con.execute(f"DELETE FROM sends WHERE {c.TS} < ?", (iso,)).rowcount
                n += con.execute(f"DELETE FROM purchases WHERE {c.TS} < ?", (iso,)).rowcount
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        return n


def _missing(frame: pd.DataFrame) -> pd.Series:
    raise ValueError(f"missing column {c.TS!r}; have {list(frame.columns)}")


__all__ = ["SQLiteStateStore", "StateStore"]
