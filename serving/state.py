"""Online state that must take effect at once: sends recorded at run time, recent purchases,
consent changes and erasures.

The rules read it on top of the batch context, so an item mailed an hour ago or a pram
bought this morning is excluded before the next snapshot is built. The interface
(:class:`StateStore`) is four methods over DataFrames, small enough for a Redis
implementation to replace :class:`SQLiteStateStore` later; the event log, consent and
erasure methods of :class:`SQLiteStateStore` serve ``POST /v1/events`` and
``DELETE /v1/customers/{id}``.

Writes are atomic: a batch of rows is stored in one transaction, entirely or not at all,
and committed with ``synchronous=FULL`` (on disk before the call returns). The SQLite
file runs in WAL mode, so readers (API workers) never block the writer and several
writer processes queue on the file lock.

Tables: ``sends``, ``purchases`` (read by the rules); ``events`` (every posted event,
``event_id`` unique: a retried event is stored once); ``consent`` (latest consent per
customer and channel from ``consent_update`` events, each channel with its own ``ts``);
``erased`` (customers erased on request: their rows are deleted everywhere and later
events for them are not stored); the online-scoring tables of :mod:`serving.online_schema`
(a change of online ads consent and an erasure are appended to its change log).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import pandas as pd

from features import contract as c
from serving.online_schema import CONSENT_ADS as ADS_CHANGE
from serving.online_schema import ERASURE, ONLINE_SCHEMA, ONLINE_TABLES
from serving.online_schema import ads_consent as _ads_consent
from serving.online_schema import log_change as _log_change

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
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT UNIQUE,
    {c.CUSTOMER_ID} TEXT NOT NULL,
    {c.TS} TEXT NOT NULL,
    {c.EVENT_TYPE} TEXT NOT NULL,
    {c.ITEM_ID} TEXT,
    {c.QUANTITY} REAL,
    {c.VALUE} REAL,
    {c.CHANNEL} TEXT,
    {c.SESSION_ID} TEXT,
    {c.CAMPAIGN_ID} TEXT,
    {c.ORDER_ID} TEXT,
    {c.PLACEMENT} TEXT,
    {c.CONSENT_EMAIL} INTEGER,
    {c.CONSENT_ADS} INTEGER,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_customer ON events ({c.CUSTOMER_ID}, {c.TS});
CREATE TABLE IF NOT EXISTS consent (
    {c.CUSTOMER_ID} TEXT PRIMARY KEY,
    {c.CONSENT_EMAIL} INTEGER,
    email_ts TEXT,
    {c.CONSENT_ADS} INTEGER,
    ads_ts TEXT
);
CREATE TABLE IF NOT EXISTS erased (
    {c.CUSTOMER_ID} TEXT PRIMARY KEY,
    erased_at TEXT NOT NULL
);
"""
#: Event types beyond the data contract's that ``record_events`` understands.
SEND = "send"
CONSENT_UPDATE = "consent_update"
#: Columns of the ``events`` table a posted event may fill (besides ``event_id``).
EVENT_COLUMNS = (
    c.CUSTOMER_ID,
    c.TS,
    c.EVENT_TYPE,
    c.ITEM_ID,
    c.QUANTITY,
    c.VALUE,
    c.CHANNEL,
    c.SESSION_ID,
    c.CAMPAIGN_ID,
    c.ORDER_ID,
    c.PLACEMENT,
    c.CONSENT_EMAIL,
    c.CONSENT_ADS,
)
_CONSENT_UPSERT = f"""
INSERT INTO consent ({c.CUSTOMER_ID}, {c.CONSENT_EMAIL}, email_ts, {c.CONSENT_ADS}, ads_ts)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT ({c.CUSTOMER_ID}) DO UPDATE SET
  {c.CONSENT_EMAIL} = CASE WHEN excluded.email_ts IS NOT NULL
      AND (email_ts IS NULL OR excluded.email_ts >= email_ts)
      THEN excluded.{c.CONSENT_EMAIL} ELSE {c.CONSENT_EMAIL} END,
  email_ts = CASE WHEN excluded.email_ts IS NOT NULL
      AND (email_ts IS NULL OR excluded.email_ts >= email_ts)
      THEN excluded.email_ts ELSE email_ts END,
  {c.CONSENT_ADS} = CASE WHEN excluded.ads_ts IS NOT NULL
      AND (ads_ts IS NULL OR excluded.ads_ts >= ads_ts)
      THEN excluded.{c.CONSENT_ADS} ELSE {c.CONSENT_ADS} END,
  ads_ts = CASE WHEN excluded.ads_ts IS NOT NULL
      AND (ads_ts IS NULL OR excluded.ads_ts >= ads_ts)
      THEN excluded.ads_ts ELSE ads_ts END
"""


@dataclass(frozen=True)
class EventCounts:
    """What :meth:`SQLiteStateStore.record_events` did with a batch of events.

    Attributes
    ----------
    received : int
        Events in the batch.
    stored : int
        Events newly written to the event log.
    duplicates : int
        Events skipped because their ``event_id`` was already stored (a retry).
    erased : int
        Events skipped because their customer was erased.
    purchases, sends, consent_updates : int
        Stored events of each kind that act on recommendations at once.
    """

    received: int
    stored: int
    duplicates: int
    erased: int
    purchases: int
    sends: int
    consent_updates: int


@dataclass(frozen=True)
class ConsentOverride:
    """Consent recorded online for one customer; ``None``: nothing recorded for a channel."""

    consent_email: bool | None
    consent_ads: bool | None


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


class OnlineStateStore(StateStore, Protocol):
    """A :class:`StateStore` that also keeps the event log, online consent and erasures
    (what the API writes; :class:`SQLiteStateStore`)."""

    def record_events(
        self, events: Sequence[Mapping[str, object]], received_at: datetime
    ) -> EventCounts:
        """Store posted events once each, atomically."""
        ...

    def erase_customer(self, customer_id: str, erased_at: datetime) -> int:
        """Delete the customer's rows and put them on the erasure list."""
        ...

    def erased(self, customer_ids: Sequence[str] | None = None) -> set[str]:
        """Erased customers among ``customer_ids`` (None: all)."""
        ...

    def consent_overrides(
        self, customer_ids: Sequence[str] | None = None
    ) -> dict[str, ConsentOverride]:
        """Consent recorded online per customer (None: all)."""
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
            con.execute("PRAGMA synchronous=FULL")  # a commit is on disk before we answer
            if not self._ready:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA + ONLINE_SCHEMA)
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

    # -- event log, consent, erasure ---------------------------------------------------------
    def record_events(
        self, events: Sequence[Mapping[str, object]], received_at: datetime
    ) -> EventCounts:
        """Store a batch of posted events in one transaction (all or nothing), once each.

        Every event goes to the ``events`` log; a ``purchase`` also to ``purchases`` and a
        ``send`` to ``sends`` (read by the rules on the next call), a ``consent_update`` to
        ``consent`` (the later ``ts`` per channel wins). An event whose ``event_id`` is
        already stored -- also earlier in the same batch -- is skipped, as is an event of
        an erased customer.

        Parameters
        ----------
        events : sequence of mapping
            Keys of :data:`EVENT_COLUMNS` plus optional ``event_id``; ``customer_id``,
            ``ts`` (naive UTC datetime) and ``event_type`` required; ``item_id`` required
            for purchases and sends; ``consent_email`` / ``consent_ads`` booleans (at least
            one) for consent updates.
        received_at : datetime
            When the batch arrived (naive UTC), stored with each event.

        Returns
        -------
        EventCounts

        Raises
        ------
        ValueError
            A required field is missing (nothing is stored).
        """
        rows: list[tuple[str | None, tuple]] = []
        for k, ev in enumerate(events):
            for key in (c.CUSTOMER_ID, c.TS, c.EVENT_TYPE):
                if ev.get(key) is None:
                    raise ValueError(f"events[{k}].{key} is required")
            kind = ev[c.EVENT_TYPE]
            if kind in (c.PURCHASE, SEND) and ev.get(c.ITEM_ID) is None:
                raise ValueError(f"events[{k}].item_id is required for a {kind}")
            values = tuple(_sql_value(ev.get(col)) for col in EVENT_COLUMNS)
            event_id = ev.get("event_id")
            rows.append((None if event_id is None else str(event_id), values))
        received = _stamp(received_at)
        cols = ("event_id", *EVENT_COLUMNS, "received_at")
        insert = (
            f"INSERT OR IGNORE INTO events ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' * len(cols))})"
        )
        at = {col: i for i, col in enumerate(EVENT_COLUMNS)}
        n = {"stored": 0, "duplicates": 0, "erased": 0, c.PURCHASE: 0, SEND: 0, CONSENT_UPDATE: 0}
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                erased = self._erased_among(con, {v[at[c.CUSTOMER_ID]] for _, v in rows})
                for event_id, v in rows:
                    cid, ts, kind = v[at[c.CUSTOMER_ID]], v[at[c.TS]], v[at[c.EVENT_TYPE]]
                    if cid in erased:
                        n["erased"] += 1
                        continue
                    if con.execute(insert, (event_id, *v, received)).rowcount == 0:
                        n["duplicates"] += 1
                        continue
                    n["stored"] += 1
                    item = v[at[c.ITEM_ID]]
                    if kind == c.PURCHASE:
                        con.execute(
                            f"INSERT INTO purchases ({', '.join(_PURCHASE_COLS)}) VALUES (?, ?, ?)",
                            (cid, item, ts),
                        )
                    elif kind == SEND:
                        con.execute(
                            f"INSERT INTO sends ({', '.join(_SEND_COLS)}) VALUES (?, ?, ?, ?)",
                            (cid, item, v[at[c.PLACEMENT]], ts),
                        )
                    elif kind == CONSENT_UPDATE:
                        email, ads = v[at[c.CONSENT_EMAIL]], v[at[c.CONSENT_ADS]]
                        ads_before = _ads_consent(con, cid)
                        con.execute(
                            _CONSENT_UPSERT,
                            (
                                cid,
                                email,
                                None if email is None else ts,
                                ads,
                                None if ads is None else ts,
                            ),
                        )
                        _log_change(con, cid, ADS_CHANGE, ads_before, _ads_consent(con, cid), ts)
                    else:
                        continue
                    n[kind] += 1
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        return EventCounts(
            received=len(rows),
            stored=n["stored"],
            duplicates=n["duplicates"],
            erased=n["erased"],
            purchases=n[c.PURCHASE],
            sends=n[SEND],
            consent_updates=n[CONSENT_UPDATE],
        )

    @staticmethod
    def _erased_among(con: sqlite3.Connection, ids: set[str]) -> set[str]:
        out: set[str] = set()
        ordered = sorted(ids)
        for i in range(0, len(ordered), _MAX_VARS):
            part = ordered[i : i + _MAX_VARS]
            marks = ", ".join("?" * len(part))
            q = f"SELECT {c.CUSTOMER_ID} FROM erased WHERE {c.CUSTOMER_ID} IN ({marks})"
            out.update(r[0] for r in con.execute(q, part))
        return out

    def erase_customer(self, customer_id: str, erased_at: datetime) -> int:
        """Delete every row of ``customer_id`` and put the customer on the erasure list.

        Parameters
        ----------
        customer_id : str
        erased_at : datetime
            When (naive UTC).

        Returns
        -------
        int
            Rows deleted from ``events``, ``purchases``, ``sends`` and ``consent`` (the
            online scores, features and change-log rows go too, uncounted; one erasure row
            is appended to the change log for the audience delta feed).
        """
        n = 0
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                for table in ("events", "purchases", "sends", "consent", *ONLINE_TABLES):
                    keep = f" AND kind != '{ERASURE}'" if table == "changes" else ""
                    deleted = con.execute(
                        f"DELETE FROM {table} WHERE {c.CUSTOMER_ID} = ?{keep}", (customer_id,)
                    ).rowcount
                    n += 0 if table in ONLINE_TABLES else deleted
                if con.execute(
                    f"INSERT OR IGNORE INTO erased ({c.CUSTOMER_ID}, erased_at) VALUES (?, ?)",
                    (customer_id, _stamp(erased_at)),
                ).rowcount:  # the delta feed tells exports to drop the customer
                    _log_change(con, customer_id, ERASURE, None, None, _stamp(erased_at))
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        return n

    def erased(self, customer_ids: Sequence[str] | None = None) -> set[str]:
        """Erased customers among ``customer_ids`` (None: all of them)."""
        with self._connect() as con:
            if customer_ids is None:
                return {r[0] for r in con.execute(f"SELECT {c.CUSTOMER_ID} FROM erased")}
            return self._erased_among(con, {str(x) for x in customer_ids})

    def consent_overrides(
        self, customer_ids: Sequence[str] | None = None
    ) -> dict[str, ConsentOverride]:
        """Consent recorded by ``consent_update`` events, per customer (None: all)."""
        base = f"SELECT {c.CUSTOMER_ID}, {c.CONSENT_EMAIL}, {c.CONSENT_ADS} FROM consent"
        rows: list[tuple] = []
        with self._connect() as con:
            if customer_ids is None:
                rows = con.execute(base).fetchall()
            else:
                ids = [str(x) for x in dict.fromkeys(customer_ids)]
                for i in range(0, len(ids), _MAX_VARS):
                    part = ids[i : i + _MAX_VARS]
                    q = f"{base} WHERE {c.CUSTOMER_ID} IN ({', '.join('?' * len(part))})"
                    rows.extend(con.execute(q, part).fetchall())
        return consent_rows(rows)

    def count_events(self, customer_id: str | None = None) -> int:
        """Rows in the event log (of one customer when given)."""
        with self._connect() as con:
            if customer_id is None:
                return int(con.execute("SELECT count(*) FROM events").fetchone()[0])
            q = f"SELECT count(*) FROM events WHERE {c.CUSTOMER_ID} = ?"
            return int(con.execute(q, (customer_id,)).fetchone()[0])


def consent_rows(rows: Sequence[tuple]) -> dict[str, ConsentOverride]:
    """``(customer_id, consent_email, consent_ads)`` rows (0/1/NULL) -> overrides."""
    return {
        str(cid): ConsentOverride(
            consent_email=None if email is None else bool(email),
            consent_ads=None if ads is None else bool(ads),
        )
        for cid, email, ads in rows
    }


def _stamp(when: datetime) -> str:
    return pd.Timestamp(when).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _sql_value(value: object) -> object:
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, datetime):
        return _stamp(value)
    return str(value)


def _missing(frame: pd.DataFrame) -> pd.Series:
    raise ValueError(f"missing column {c.TS!r}; have {list(frame.columns)}")


__all__ = [
    "CONSENT_UPDATE",
    "ConsentOverride",
    "EVENT_COLUMNS",
    "EventCounts",
    "OnlineStateStore",
    "SEND",
    "SQLiteStateStore",
    "StateStore",
    "consent_rows",
]
