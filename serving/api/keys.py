"""API keys with scopes, stored hashed in a small SQLite file (``home/api_keys.sqlite``).

A key reads ``kb_<key_id>_<secret>``: ``key_id`` (8 hex characters) finds the row, the
SHA-256 of the 32-byte random ``secret`` is compared with the stored digest in constant
time (:func:`hmac.compare_digest`). The plain key exists only in the output of
:meth:`KeyStore.create`; the file holds digests, never a usable key.

Readers keep the table in memory and reload it when the file's modification time changes,
so a key created or revoked by ``klantbeeld keys`` takes effect in running workers on
their next request without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from klantbeeld.errors import ConfigError

#: Every scope a key may carry.
SCOPES: tuple[str, ...] = (
    "scores:read",
    "recommendations:read",
    "events:write",
    "audiences:export",
    "admin",
)
PREFIX = "kb_"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    scopes TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    revoked TEXT
)
"""


@dataclass(frozen=True)
class KeyInfo:
    """One stored key, without its secret.

    Attributes
    ----------
    key_id : str
        Public part of the key (shown by ``keys list``, used by ``keys revoke``).
    scopes : frozenset[str]
        Scopes granted.
    label : str
        Free text given at creation.
    created : str
        ISO-8601 UTC creation time.
    revoked : str | None
        ISO-8601 UTC revocation time, ``None`` while active.
    """

    key_id: str
    scopes: frozenset[str]
    label: str
    created: str
    revoked: str | None


def parse_scopes(text: str | list[str]) -> frozenset[str]:
    """Validate a comma-separated scope list (or list of scopes).

    Parameters
    ----------
    text : str or list of str
        E.g. ``"scores:read,recommendations:read"``.

    Returns
    -------
    frozenset of str

    Raises
    ------
    ConfigError
        Empty, or naming a scope outside :data:`SCOPES`.
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    scopes = frozenset(p.strip() for p in parts if p.strip())
    unknown = sorted(scopes - set(SCOPES))
    if not scopes or unknown:
        got = ", ".join(unknown) or "none"
        raise ConfigError(f"scopes: expected one or more of {', '.join(SCOPES)}; got {got}")
    return scopes


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """The API key table of one SQLite file.

    Parameters
    ----------
    path : Path
        SQLite file; created (with its folder) on the first write.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._rows: dict[str, tuple[str, frozenset[str]]] = {}

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=10.0)
        con.execute(_SCHEMA)
        return con

    def create(self, scopes: frozenset[str], label: str = "") -> str:
        """Store a new key and return it in plain text (the only time it is shown).

        Parameters
        ----------
        scopes : frozenset of str
            From :func:`parse_scopes`.
        label : str
            Who or what the key is for.

        Returns
        -------
        str
            ``kb_<key_id>_<secret>``.
        """
        scopes = parse_scopes(sorted(scopes))
        secret = secrets.token_urlsafe(32)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._connect() as con:
            while True:
                key_id = secrets.token_hex(4)
                cur = con.execute(
                    "INSERT OR IGNORE INTO api_keys (key_id, digest, scopes, label, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (key_id, _digest(secret), ",".join(sorted(scopes)), label, now),
                )
                if cur.rowcount == 1:
                    break
        con.close()
        return f"{PREFIX}{key_id}_{secret}"

    def list(self) -> list[KeyInfo]:
        """Every stored key (active and revoked), oldest first, without secrets."""
        if not self.path.exists():
            return []
        with self._connect() as con:
            rows = con.execute(
                "SELECT key_id, scopes, label, created, revoked FROM api_keys ORDER BY created"
            ).fetchall()
        con.close()
        return [KeyInfo(r[0], frozenset(r[1].split(",")), r[2], r[3], r[4]) for r in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key by its id; returns False when no active key has that id."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._connect() as con:
            cur = con.execute(
                "UPDATE api_keys SET revoked = ? WHERE key_id = ? AND revoked IS NULL",
                (now, key_id),
            )
        con.close()
        return cur.rowcount == 1

    def _refresh(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._rows, self._mtime = {}, None
            return
        if mtime == self._mtime:
            return
        with self._lock:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10.0)
            try:
                rows = con.execute(
                    "SELECT key_id, digest, scopes FROM api_keys WHERE revoked IS NULL"
                ).fetchall()
            except sqlite3.OperationalError:
                rows = []
            finally:
                con.close()
            self._rows = {r[0]: (r[1], frozenset(r[2].split(","))) for r in rows}
            self._mtime = mtime

    def scopes_of(self, key: str) -> frozenset[str] | None:
        """Scopes of an active key, ``None`` for a malformed, unknown or revoked key.

        Parameters
        ----------
        key : str
            The ``X-API-Key`` header value.

        Returns
        -------
        frozenset of str or None
        """
        if not key.startswith(PREFIX):
            return None
        key_id, sep, secret = key[len(PREFIX) :].partition("_")
        if not sep:
            return None
        self._refresh()
        row = self._rows.get(key_id)
        # Compare against a dummy digest for unknown ids too: same work either way.
        stored = row[0] if row else _digest("")
        ok = hmac.compare_digest(stored, _digest(secret))
        return row[1] if (row and ok) else None


__all__ = ["PREFIX", "SCOPES", "KeyInfo", "KeyStore", "parse_scopes"]
