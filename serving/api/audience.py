"""The API's audience index: re-exported from :mod:`serving.audiences` (one code path)."""

from __future__ import annotations

from serving.audiences.identifiers import normalise_email, normalise_phone, sha256_hex
from serving.audiences.index import CONSENT_COLUMNS, AudienceIndex, Consent

__all__ = [
    "AudienceIndex",
    "CONSENT_COLUMNS",
    "Consent",
    "normalise_email",
    "normalise_phone",
    "sha256_hex",
]
