"""Normalising and hashing the identifiers that ad platforms match on.

E-mail: trimmed and lower-cased. Phone: parsed with the ``phonenumbers`` library (Google's
libphonenumber metadata) in a default region for numbers written without a country code,
kept only when it is a valid number, and written in E.164 (``+31612345678``). The values are
hashed with SHA-256 (lower-case hex, no salt), as Google Customer Match and Meta Custom
Audiences expect.
"""

from __future__ import annotations

import hashlib
import math
import re

import phonenumbers

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _missing(raw: object) -> bool:
    return raw is None or (isinstance(raw, float) and math.isnan(raw)) or str(raw).strip() == ""


def normalise_email(raw: object) -> str | None:
    """Trimmed, lower-cased e-mail address.

    Parameters
    ----------
    raw : object
        As entered (``"  Ann@Example.COM "``); None/NaN/empty allowed.

    Returns
    -------
    str or None
        ``"ann@example.com"``; None when missing or not shaped like ``local@domain.tld``.
    """
    if _missing(raw):
        return None
    s = str(raw).strip().lower()
    return s if _EMAIL.match(s) else None


def normalise_phone(raw: object, region: str = "NL") -> str | None:
    """Phone number in E.164 (``+31612345678``), or None when it is not a valid number.

    Parameters
    ----------
    raw : object
        As entered: ``"06-12 34 56 78"``, ``"+31 6 1234 5678"``, ``"0031 6 12345678"``,
        ``"+31 (0)6 12345678"``. None/NaN/empty allowed.
    region : str
        ISO 3166 region (``"NL"``, ``"BE"``) for numbers written without a country code.

    Returns
    -------
    str or None
        E.164 form; None when missing, unparsable or not a valid number in its region.
    """
    if _missing(raw):
        return None
    text = str(raw).strip()
    if text.startswith("00"):  # international prefix used in most of Europe
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def sha256_hex(value: str | None) -> str | None:
    """Lower-case hex SHA-256 of the UTF-8 value; None stays None."""
    return None if value is None else hashlib.sha256(value.encode("utf-8")).hexdigest()


__all__ = ["normalise_email", "normalise_phone", "sha256_hex"]
