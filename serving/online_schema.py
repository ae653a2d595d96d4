"""Tables of the online state that real-time rescoring writes (same SQLite file as
:mod:`serving.state`, created with it).

``online_features``: the latest online session features per customer (JSON object of
column -> value, NaN as null), with the batch snapshot time they extend (``as_of``), the
instant they were evaluated at and the highest event-log ``seq`` they read.
``online_scores``: the latest online score per customer and model, same bookkeeping.
``changes``: the change log behind ``GET /v1/audiences/{name}/changes`` -- one row per
score change (``kind = 'score'``, ``before``/``after`` probabilities), per effective change
of online ads consent (``kind = 'consent_ads'``, 0/1; ``before`` NULL: none recorded
online before) and per erasure (``kind = 'erasure'``); ``seq`` is the feed's cursor.
"""

from __future__ import annotations

import sqlite3

from features import contract as c

SCORE = "score"
CONSENT_ADS = "consent_ads"
ERASURE = "erasure"
#: Tables holding rows of one customer (deleted on erasure).
ONLINE_TABLES = ("online_features", "online_scores", "changes")

ONLINE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS online_features (
    {c.CUSTOMER_ID} TEXT PRIMARY KEY,
    as_of TEXT NOT NULL,
    computed_at TEXT NOT NULL,
    events_seq INTEGER NOT NULL,
    features TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS online_scores (
    {c.CUSTOMER_ID} TEXT NOT NULL,
    model TEXT NOT NULL,
    as_of TEXT NOT NULL,
    score REAL,
    model_version INTEGER,
    top_up TEXT NOT NULL,
    top_down TEXT NOT NULL,
    scored_at TEXT NOT NULL,
    events_seq INTEGER NOT NULL,
    PRIMARY KEY ({c.CUSTOMER_ID}, model)
);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    {c.CUSTOMER_ID} TEXT NOT NULL,
    kind TEXT NOT NULL,
    model TEXT,
    before REAL,
    after REAL,
    as_of TEXT,
    ts TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_recorded ON changes (recorded_at);
"""


def ads_consent(con: sqlite3.Connection, customer_id: str) -> int | None:
    """Online ads consent of ``customer_id`` (1/0), None when none was recorded online."""
    row = con.execute(
        f"SELECT {c.CONSENT_ADS} FROM consent WHERE {c.CUSTOMER_ID} = ?", (customer_id,)
    ).fetchone()
    return None if row is None else row[0]


def log_change(
    con: sqlite3.Connection,
    customer_id: str,
    kind: str,
    before: float | None,
    after: float | None,
    ts: str,
    model: str | None = None,
    as_of: str | None = None,
) -> bool:
    """Append one row to ``changes`` inside the caller's transaction.

    Parameters
    ----------
    con : sqlite3.Connection
        Connection with an open write transaction.
    customer_id : str
    kind : str
        :data:`SCORE`, :data:`CONSENT_ADS` or :data:`ERASURE`.
    before, after : float or None
        Score (probability) or consent (0/1) before and after; a consent row is written
        only when ``after`` is known and differs from ``before``.
    ts : str
        Effective time (ISO, naive UTC): the event's ``ts``, the scoring instant.
    model, as_of : str, optional
        Scored model and the batch snapshot time its score extends (score rows).

    Returns
    -------
    bool
        Whether a row was written. ``recorded_at`` is the server's clock (UTC).
    """
    if kind == CONSENT_ADS and (after is None or before == after):
        return False
    con.execute(
        f"INSERT INTO changes ({c.CUSTOMER_ID}, kind, model, before, after, as_of, ts, "
        "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%f000', 'now'))",
        (customer_id, kind, model, before, after, as_of, ts),
    )
    return True


__all__ = [
    "ads_consent",
    "log_change",
    "CONSENT_ADS",
    "ERASURE",
    "ONLINE_SCHEMA",
    "ONLINE_TABLES",
    "SCORE",
]
