"""Reads and writes of the real-time scoring tables (:mod:`serving.online_schema`).

:class:`OnlineStore` works on the same SQLite file (WAL mode) as
:class:`serving.state.SQLiteStateStore`, so what one API worker writes, every other worker
reads at its next call. Writes are one transaction per batch of customers; a result
computed from fewer events (or at an earlier instant) than the row already stored -- two
workers rescoring the same customer at once -- never overwrites it. Reads of single
customers keep one connection per thread open (the per-request path).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from features import contract as c
from serving.online_schema import SCORE, log_change
from serving.state import CONSENT_UPDATE, EVENT_COLUMNS, SEND, SQLiteStateStore

_MAX_VARS = 500
#: Event types of the API's own (not data-contract events): never features.
NOT_SHOP_EVENTS = (SEND, CONSENT_UPDATE)
#: Columns of the event log read back for the online features: the data contract's event
#: columns, without what only the API's own events carry (placement, consent flags).
FEATURE_EVENT_COLUMNS = EVENT_COLUMNS[: EVENT_COLUMNS.index(c.PLACEMENT)]


def stamp(when: datetime) -> str:
    """``when`` (naive UTC) as the store's ISO text with microseconds."""
    return pd.Timestamp(when).strftime("%Y-%m-%dT%H:%M:%S.%f")


@dataclass(frozen=True)
class OnlineScore:
    """One model's online score of one customer (see :meth:`OnlineStore.scores_of`).

    Attributes
    ----------
    score : float or None
        Calibrated probability.
    model_version : int or None
    top_up, top_down : list of str
    scored_at : str
        Evaluation instant (ISO, naive UTC).
    """

    score: float | None
    model_version: int | None
    top_up: list[str]
    top_down: list[str]
    scored_at: str


@dataclass(frozen=True)
class ScoreUpdate:
    """A freshly computed online score of one customer, to be stored.

    Attributes
    ----------
    customer_id, model : str
    score : float
        Calibrated probability.
    model_version : int or None
    top_up, top_down : list of str
    features : dict of str to float or None
        Online session features (NaN as None).
    events_seq : int
        Highest event-log ``seq`` of the customer read for ``features``.
    at : datetime
        Evaluation instant (naive UTC).
    """

    customer_id: str
    model: str
    score: float
    model_version: int | None
    top_up: list[str]
    top_down: list[str]
    features: dict[str, float | None]
    events_seq: int
    at: datetime


@dataclass(frozen=True)
class Change:
    """One row of the change log (:mod:`serving.online_schema`)."""

    seq: int
    customer_id: str
    kind: str
    model: str | None
    before: float | None
    after: float | None
    as_of: str | None
    ts: str
    recorded_at: str = field(repr=False)


class OnlineStore:
    """Online features, scores and the change log in the state store's SQLite file.

    Parameters
    ----------
    path : str or Path
        The state store's SQLite file (``settings.resolved_state_file``).
    timeout_s : float
        Seconds to wait for another writer's lock.
    """

    def __init__(self, path: str | Path, timeout_s: float = 10.0) -> None:
        self.state = SQLiteStateStore(path, timeout_s)
        self.path = self.state.path
        self._local = threading.local()
        self.state.count_events()  # creates the file and every table

    def _read(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=self.state.timeout_s, check_same_thread=False)
            con.isolation_level = None  # autocommit: every read sees the latest commit
            self._local.con = con
        return con

    def _in(self, base: str, ids: Sequence[str], params: tuple = ()) -> list[tuple]:
        rows: list[tuple] = []
        con = self._read()
        for i in range(0, len(ids), _MAX_VARS):
            part = list(ids[i : i + _MAX_VARS])
            marks = ", ".join("?" * len(part))
            rows += con.execute(base.format(ids=marks), (*params, *part)).fetchall()
        return rows

    def events_between(
        self, customer_ids: Sequence[str], start: datetime, end: datetime
    ) -> tuple[pd.DataFrame, dict[str, int]]:
        """Posted shop events of ``customer_ids`` with ``start <= ts < end``, and the
        highest event-log ``seq`` per customer (any ``ts``; 0 without events).

        Shop events are every type but the API's own ``send`` and ``consent_update``
        (sends are the sends table's, not events, in the data contract).

        Returns
        -------
        (pandas.DataFrame, dict)
            :data:`FEATURE_EVENT_COLUMNS` (``ts`` datetime64[us]); customer -> seq.
        """
        ids = sorted({str(x) for x in customer_ids})
        cols = ", ".join(FEATURE_EVENT_COLUMNS)
        rows = self._in(
            f"SELECT {cols} FROM events WHERE {c.TS} >= ? AND {c.TS} < ? "
            f"AND {c.EVENT_TYPE} NOT IN (?, ?) AND {c.CUSTOMER_ID} IN ({{ids}})",
            ids,
            (stamp(start), stamp(end), *NOT_SHOP_EVENTS),
        )
        seqs = self._in(
            f"SELECT {c.CUSTOMER_ID}, max(seq) FROM events WHERE {c.CUSTOMER_ID} IN ({{ids}}) "
            f"GROUP BY {c.CUSTOMER_ID}",
            ids,
        )
        frame = pd.DataFrame(rows, columns=list(FEATURE_EVENT_COLUMNS), dtype=object)
        frame[c.TS] = pd.to_datetime(frame[c.TS], format="ISO8601").astype("datetime64[us]")
        for col in (c.QUANTITY, c.VALUE):
            frame[col] = pd.to_numeric(frame[col]).astype("float64")
        seq = dict.fromkeys(ids, 0) | {str(cid): int(n) for cid, n in seqs}
        return frame, seq

    def write_scores(
        self, updates: Sequence[ScoreUpdate], as_of: str, batch: Mapping[str, float | None]
    ) -> int:
        """Store online features and scores; log every score that changed (one transaction).

        Parameters
        ----------
        updates : sequence of ScoreUpdate
        as_of : str
            Batch snapshot time the online values extend (the scores file's ``as_of``).
        batch : mapping of customer id to float or None
            Batch score of each customer: the "before" of its first online change.

        Returns
        -------
        int
            Change-log rows written. Updates of erased customers, and updates older than
            the stored row (fewer events read, or an earlier instant), are skipped.
        """
        written = 0
        with self.state._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                for u in updates:
                    written += self._write_one(con, u, as_of, batch.get(u.customer_id))
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        return written

    @staticmethod
    def _write_one(con: sqlite3.Connection, u: ScoreUpdate, as_of: str, batch: float | None) -> int:
        cid, at = u.customer_id, stamp(u.at)
        if con.execute(f"SELECT 1 FROM erased WHERE {c.CUSTOMER_ID} = ?", (cid,)).fetchone():
            return 0
        row = con.execute(
            f"SELECT score, as_of, events_seq, scored_at FROM online_scores "
            f"WHERE {c.CUSTOMER_ID} = ? AND model = ?",
            (cid, u.model),
        ).fetchone()
        previous = batch
        if row is not None and row[1] == as_of:
            if (row[2], row[3]) > (u.events_seq, at):
                return 0  # a newer result is stored already
            previous = row[0]
        con.execute(
            "INSERT OR REPLACE INTO online_scores (customer_id, model, as_of, score, "
            "model_version, top_up, top_down, scored_at, events_seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cid,
                u.model,
                as_of,
                u.score,
                u.model_version,
                json.dumps(u.top_up),
                json.dumps(u.top_down),
                at,
                u.events_seq,
            ),
        )
        con.execute(
            "INSERT OR REPLACE INTO online_features (customer_id, as_of, computed_at, "
            "events_seq, features) VALUES (?, ?, ?, ?, ?)",
            (cid, as_of, at, u.events_seq, json.dumps(u.features, allow_nan=False)),
        )
        same = previous is not None and math.isclose(previous, u.score, rel_tol=0, abs_tol=0)
        if same:
            return 0
        return int(log_change(con, cid, SCORE, previous, u.score, at, u.model, as_of))

    def scores_of(
        self, customer_ids: Sequence[str], model: str, as_of: str | None
    ) -> dict[str, OnlineScore]:
        """Online scores of ``model`` extending the batch at ``as_of``, per customer."""
        rows = self._in(
            f"SELECT {c.CUSTOMER_ID}, score, model_version, top_up, top_down, scored_at "
            f"FROM online_scores WHERE model = ? AND as_of = ? AND {c.CUSTOMER_ID} IN ({{ids}})",
            [str(x) for x in customer_ids],
            (model, as_of),
        )
        return {
            str(cid): OnlineScore(score, version, json.loads(up), json.loads(down), at)
            for cid, score, version, up, down, at in rows
        }

    def customer_scores(self, customer_id: str, as_of: str | None) -> dict[str, OnlineScore]:
        """Every model's online score of one customer extending the batch at ``as_of``."""
        rows = (
            self._read()
            .execute(
                "SELECT model, score, model_version, top_up, top_down, scored_at "
                f"FROM online_scores WHERE {c.CUSTOMER_ID} = ? AND as_of = ?",
                (customer_id, as_of),
            )
            .fetchall()
        )
        return {
            str(m): OnlineScore(score, version, json.loads(up), json.loads(down), at)
            for m, score, version, up, down, at in rows
        }

    def features_of(self, customer_id: str, as_of: str | None) -> dict[str, float | None] | None:
        """Online session features of one customer extending the batch at ``as_of``."""
        row = (
            self._read()
            .execute(
                f"SELECT features FROM online_features WHERE {c.CUSTOMER_ID} = ? AND as_of = ?",
                (customer_id, as_of),
            )
            .fetchone()
        )
        return None if row is None else json.loads(row[0])

    def changes_after(self, cursor: int, limit: int | None = None) -> list[Change]:
        """Change-log rows with ``seq > cursor``, oldest first (at most ``limit``)."""
        q = (
            f"SELECT seq, {c.CUSTOMER_ID}, kind, model, before, after, as_of, ts, recorded_at "
            "FROM changes WHERE seq > ? ORDER BY seq"
        )
        params: tuple = (cursor,)
        if limit is not None:
            q += " LIMIT ?"
            params = (cursor, limit)
        return [Change(*row) for row in self._read().execute(q, params).fetchall()]

    def cursor_at(self, when: datetime | None) -> int:
        """Cursor of the feed at ``when``: the last ``seq`` recorded at or before it
        (``None``: the latest); 0 when nothing was."""
        if when is None:
            row = self._read().execute("SELECT max(seq) FROM changes").fetchone()
        else:
            row = (
                self._read()
                .execute("SELECT max(seq) FROM changes WHERE recorded_at <= ?", (stamp(when),))
                .fetchone()
            )
        return int(row[0] or 0)


__all__ = ["Change", "OnlineScore", "OnlineStore", "ScoreUpdate", "stamp"]
