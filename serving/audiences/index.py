"""Consent flags, hashed identifiers and data quality aligned with a :class:`ScoreIndex`.

Raw e-mail addresses and phone numbers are normalised and hashed once, when the index is
built, and then dropped: they are never logged, stored or returned.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd

from features import contract as c
from serving.api.scores import ScoreIndex
from serving.audiences.identifiers import normalise_email, normalise_phone, sha256_hex
from serving.audiences.quality import quality_score

log = logging.getLogger(__name__)

Consent = Literal["ads", "email"]
CONSENT_COLUMNS: dict[str, str] = {"ads": c.CONSENT_ADS, "email": c.CONSENT_EMAIL}
#: Customers scoring below this data-quality score are kept out of exports.
MIN_QUALITY = 1.0


class AudienceIndex:
    """Per scored customer: consent, SHA-256 identifiers and a data-quality score.

    Parameters
    ----------
    customers : DataFrame
        ``customer_id`` and optional ``consent_email``, ``consent_ads`` (missing: no
        consent), ``email``, ``phone``.
    scores : ScoreIndex
        Batch scores; audiences are drawn from its customers (sorted-id row order).
    region : str
        ISO 3166 region for phone numbers written without a country code.

    Attributes
    ----------
    consent : dict of str to ndarray of bool
    email_hash : ndarray of object
        SHA-256 of the normalised e-mail address, None when missing or invalid.
    phone_hash_e164 : ndarray of object
        SHA-256 of ``+31612345678`` (Google Customer Match form).
    phone_hash_digits : ndarray of object
        SHA-256 of ``31612345678`` (Meta Custom Audiences form: country code, no ``+``).
    quality : ndarray of float
        Data-quality score in [0, 1] (:func:`serving.audiences.quality.quality_score`);
        0 for scored customers missing from the customer table.
    """

    def __init__(self, customers: pd.DataFrame, scores: ScoreIndex, region: str = "NL"):
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
        none = np.full(int(ok.sum()), None, dtype=object)
        emails = (
            [normalise_email(v) for v in customers[c.EMAIL].to_numpy(dtype=object)[ok]]
            if c.EMAIL in customers.columns
            else none.tolist()
        )
        phones = (
            [normalise_phone(v, region) for v in customers[c.PHONE].to_numpy(dtype=object)[ok]]
            if c.PHONE in customers.columns
            else none.tolist()
        )
        self.email_hash = np.full(n, None, dtype=object)
        self.phone_hash_e164 = np.full(n, None, dtype=object)
        self.phone_hash_digits = np.full(n, None, dtype=object)
        self.quality = np.zeros(n, dtype=np.float64)
        self.email_hash[at] = [sha256_hex(e) for e in emails]
        self.phone_hash_e164[at] = [sha256_hex(p) for p in phones]
        self.phone_hash_digits[at] = [sha256_hex(p[1:] if p else None) for p in phones]
        self.quality[at] = [quality_score(e, p) for e, p in zip(emails, phones, strict=True)]
        log.info("audience index: %d scored customers, %d in the customer table", n, len(at))

    def members(self, model: str, min_score: float, consent: Consent) -> np.ndarray:
        """Rows (sorted-id order) with ``score >= min_score`` and the consent given."""
        score = self.scores.score_array(model)
        with np.errstate(invalid="ignore"):
            keep = (score >= min_score) & self.consent[consent]
        return np.flatnonzero(keep)


__all__ = ["AudienceIndex", "CONSENT_COLUMNS", "Consent", "MIN_QUALITY"]
