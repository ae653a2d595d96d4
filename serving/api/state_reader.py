"""A faster read path over the SQLite state store for per-request look-ups.

:class:`serving.state.SQLiteStateStore` opens a connection per call and always builds a
DataFrame -- about 1 ms per read, two reads per recommendation call. The API asks about one
customer (or a batch of up to 1,000) per call, and almost always the answer is "nothing
recorded", so :class:`FastStateReader` keeps one connection per thread open, runs the same
indexed query, and returns a ready empty frame when no row matches. Reads go straight to
the file (SQLite in WAL mode), so an event written by any worker counts at once. Writes,
whole-table scans and large id lists are delegated to the wrapped store unchanged.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime

import pandas as pd

from features import contract as c
from serving.state import ConsentOverride, EventCounts, SQLiteStateStore, consent_rows

_SEND_COLS = (c.CUSTOMER_ID, c.ITEM_ID, c.PLACEMENT, c.TS)
_PURCHASE_COLS = (c.CUSTOMER_ID, c.ITEM_ID, c.TS)
#: Ids per query on the fast path; longer lists go to the wrapped store.
_FAST_MAX_IDS = 500


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame({col: pd.Series([], dtype=object) for col in columns})
    frame[c.TS] = pd.Series([], dtype="datetime64[ns]")
    return frame


class FastStateReader:
    """:class:`serving.state.StateStore` over a :class:`SQLiteStateStore`, fast for few ids.

    Parameters
    ----------
    store : SQLiteStateStore
        Where rows are written and from which large reads are served.
    timeout_s : float
        Seconds a read waits for a lock.
    """

    def __init__(self, store: SQLiteStateStore, timeout_s: float = 5.0) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._ready = False
        # Shared empty answers (read-only: the rules never modify an overlay frame).
        self._none: dict[tuple[str, ...], pd.DataFrame] = {
            cols: _empty(cols) for cols in (_SEND_COLS, _PURCHASE_COLS)
        }

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            if not self._ready:
                self.store.recent_sends(datetime(1970, 1, 1), [])  # creates file and schema
                self._ready = True
            con = sqlite3.connect(self.store.path, timeout=self.timeout_s, check_same_thread=False)
            con.isolation_level = None  # autocommit: every read sees the latest commit
            self._local.con = con
        return con

    def record_sends(self, sends: pd.DataFrame) -> int:
        """Store sends (see :meth:`SQLiteStateStore.record_sends`)."""
        return self.store.record_sends(sends)

    def record_purchases(self, purchases: pd.DataFrame) -> int:
        """Store purchases (see :meth:`SQLiteStateStore.record_purchases`)."""
        return self.store.record_purchases(purchases)

    def record_events(
        self, events: Sequence[Mapping[str, object]], received_at: datetime
    ) -> EventCounts:
        """Store posted events (see :meth:`SQLiteStateStore.record_events`)."""
        return self.store.record_events(events, received_at)

    def erase_customer(self, customer_id: str, erased_at: datetime) -> int:
        """Erase a customer (see :meth:`SQLiteStateStore.erase_customer`)."""
        return self.store.erase_customer(customer_id, erased_at)

    def _few(self, query: str, customer_ids: Sequence[str]) -> list[tuple]:
        ids = [str(x) for x in dict.fromkeys(customer_ids)]
        if not ids:
            return []
        q = f"{query} WHERE {c.CUSTOMER_ID} IN ({', '.join('?' * len(ids))})"
        return self._con().execute(q, ids).fetchall()

    def erased(self, customer_ids: Sequence[str] | None = None) -> set[str]:
        """Erased customers among ``customer_ids`` (None: all of them)."""
        if customer_ids is None or len(customer_ids) > _FAST_MAX_IDS:
            return self.store.erased(customer_ids)
        return {r[0] for r in self._few(f"SELECT {c.CUSTOMER_ID} FROM erased", customer_ids)}

    def consent_overrides(
        self, customer_ids: Sequence[str] | None = None
    ) -> dict[str, ConsentOverride]:
        """Consent recorded online, per customer (None: all); see the wrapped store."""
        if customer_ids is None or len(customer_ids) > _FAST_MAX_IDS:
            return self.store.consent_overrides(customer_ids)
        q = f"SELECT {c.CUSTOMER_ID}, {c.CONSENT_EMAIL}, {c.CONSENT_ADS} FROM consent"
        return consent_rows(self._few(q, customer_ids))

    def _select(
        self,
        table: str,
        columns: tuple[str, ...],
        since: datetime,
        customer_ids: Sequence[str] | None,
    ) -> pd.DataFrame | None:
        if customer_ids is None or len(customer_ids) > _FAST_MAX_IDS:
            return None
        ids = [str(x) for x in dict.fromkeys(customer_ids)]
        if not ids:
            return self._none[columns]
        since_iso = pd.Timestamp(since).strftime("%Y-%m-%dT%H:%M:%S.%f")
        q = (
            f"SELECT {', '.join(columns)} FROM {table} WHERE {c.TS} > ? "
            f"AND {c.CUSTOMER_ID} IN ({', '.join('?' * len(ids))})"
        )
        rows = self._con().execute(q, (since_iso, *ids)).fetchall()
        if not rows:
            return self._none[columns]
        frame = pd.DataFrame(rows, columns=list(columns), dtype=object)
        frame[c.TS] = pd.to_datetime(frame[c.TS]).astype("datetime64[ns]")
        return frame

    def recent_sends(
        self, since: datetime, customer_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Sends with ``ts > since`` (naive UTC): ``customer_id, item_id, placement, ts``."""
        got = self._select("sends", _SEND_COLS, since, customer_ids)
        return got if got is not None else self.store.recent_sends(since, customer_ids)

    def recent_purchases(
        self, since: datetime, customer_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Purchases with ``ts > since`` (naive UTC): ``customer_id, item_id, ts``."""
        got = self._select("purchases", _PURCHASE_COLS, since, customer_ids)
        return got if got is not None else self.store.recent_purchases(since, customer_ids)


__all__ = ["FastStateReader"]
