"""Audiences for ad platforms: score threshold + consent, optionally as hashed identifiers.

ARCHITECTURE §6: no consent, no audience membership; exported identifiers are SHA-256 of
the normalised value -- the e-mail address trimmed and lower-cased, the phone number in
E.164 (``+<country code><number>``). Raw e-mail addresses and phone numbers are hashed
once when the index is built and then dropped; they are never logged or returned.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from typing import Literal

import numpy as np
import pandas as pd

from features import contract as c
from serving.api.scores import ScoreIndex

log = logging.getLogger(__name__)

Consent = Literal["ads", "email"]
CONSENT_COLUMNS: dict[str, str] = {"ads": c.CONSENT_ADS, "email": c.CONSENT_EMAIL}
EMAIL_SHA256 = "email_sha256"
PHONE_SHA256 = "phone_sha256"
_PHONE_PUNCT = re.compile(r"[\s\-./()]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def normalise_email(raw: object) -> str | None:
    """Trimmed, lower-cased e-mail address; None when missing or not an address."""
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return None
    s = str(raw).strip().lower()
    return s if _EMAIL.match(s) else None


def normalise_phone(raw: object, country_code: str = "31") -> str | None:
    """Phone number in E.164 (``+31612345678``); None when missing or not a number.

    Parameters
    ----------
    raw : object
        As entered: ``+31 6 1234 5678``, ``+31 (0)6-12345678``, ``0031612345678`` or the
        national form ``06-12345678`` (a leading 0 is replaced by ``country_code``).
    country_code : str
        Country calling code for national numbers, digits only (``31``: the Netherlands).

    Returns
    -------
    str or None
        ``+`` and 8-15 digits.
    """
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return None
    s = str(raw).strip().replace("(0)", "")
    s = _PHONE_PUNCT.sub("", s)
    if s.startswith("+"):
        digits = s[1:]
    elif s.startswith("00"):
        digits = s[2:]
    elif s.startswith("0"):
        digits = country_code + s[1:]
    else:
        digits = s
    if not digits.isdigit() or not 8 <= len(digits) <= 15 or digits.startswith("0"):
        return None
    return "+" + digits


def _csv_field(value: bytes) -> bytes:
    if b"," in value or b'"' in value or b"\n" in value or b"\r" in value:
        return b'"' + value.replace(b'"', b'""') + b'"'
    return value


def sha256_hex(value: str | None) -> str | None:
    """Lower-case hex SHA-256 of the UTF-8 value; None stays None."""
    return None if value is None else hashlib.sha256(value.encode("utf-8")).hexdigest()


class AudienceIndex:
    """Consent flags and hashed identifiers aligned with a :class:`ScoreIndex`.

    Parameters
    ----------
    customers : DataFrame
        ``customer_id`` and optional ``consent_email``, ``consent_ads`` (missing: no
        consent), ``email``, ``phone``.
    scores : ScoreIndex
        Batch scores; audiences are drawn from its customers.
    country_code : str
        Country calling code for national phone numbers.
    """

    def __init__(self, customers: pd.DataFrame, scores: ScoreIndex, country_code: str = "31"):
        self.scores = scores
        n = len(scores)
        rows = scores.positions(customers[c.CUSTOMER_ID].astype(str).to_numpy(dtype=object))
        ok = rows >= 0
        at = rows[ok]
        self.consent: dict[str, np.ndarray] = {}
        for key, col in CONSENT_COLUMNS.items():
            flags = np.zeros(n, dtype=bool)
            if col in customers.columns:
                vals = customers[col].astype("boolean").fillna(False).to_numpy(dtype=bool)
                flags[at] = vals[ok]
            self.consent[key] = flags
        self.email_hash = np.full(n, None, dtype=object)
        self.phone_hash = np.full(n, None, dtype=object)
        if c.EMAIL in customers.columns:
            emails = customers[c.EMAIL].to_numpy(dtype=object)[ok]
            self.email_hash[at] = [sha256_hex(normalise_email(v)) for v in emails]
        if c.PHONE in customers.columns:
            phones = customers[c.PHONE].to_numpy(dtype=object)[ok]
            self.phone_hash[at] = [sha256_hex(normalise_phone(v, country_code)) for v in phones]
        log.info("audience index: %d scored customers, %d in the customer table", n, len(at))

    def members(self, model: str, min_score: float, consent: Consent) -> np.ndarray:
        """Rows (sorted-id order) with ``score >= min_score`` and the consent given."""
        score = self.scores.score_array(model)
        with np.errstate(invalid="ignore"):
            keep = (score >= min_score) & self.consent[consent]
        return np.flatnonzero(keep)

    def csv_lines(self, rows: np.ndarray, hashed: bool, chunk: int = 20_000) -> Iterator[bytes]:
        """CSV (header first) of the member rows, in chunks of ``chunk`` lines.

        ``hashed=False``: one column ``customer_id``. ``hashed=True``: ``email_sha256,
        phone_sha256`` (empty when unknown); members with neither identifier are skipped.
        """
        if not hashed:
            yield f"{c.CUSTOMER_ID}\n".encode()
            for start in range(0, len(rows), chunk):
                ids = self.scores.ids[rows[start : start + chunk]]
                yield b"".join(_csv_field(b) + b"\n" for b in ids.tolist())
            return
        yield f"{EMAIL_SHA256},{PHONE_SHA256}\n".encode()
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            lines = [
                f"{e or ''},{p or ''}\n"
                for e, p in zip(self.email_hash[part], self.phone_hash[part], strict=True)
                if e is not None or p is not None
            ]
            yield "".join(lines).encode()


__all__ = [
    "AudienceIndex",
    "CONSENT_COLUMNS",
    "normalise_email",
    "normalise_phone",
    "sha256_hex",
]
