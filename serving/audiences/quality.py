"""Data-quality score of a customer's contact data: obviously fake values score low.

Marketers' systems fill up with placeholder contact data (``test@test.com``, ``0612345678``,
``0600000000``). Such values would only waste ad spend and pollute match rates, so a
customer with an obviously fake e-mail address or phone number is kept out of audience
exports and counted in the export report. The checks work on the *normalised* values
(see :mod:`serving.audiences.identifiers`).
"""

from __future__ import annotations

import re

import phonenumbers

#: Local parts and domains that people type when they do not want to give an address.
FAKE_EMAIL_LOCAL = frozenset(
    {
        "test",
        "testing",
        "tester",
        "fake",
        "none",
        "no",
        "noreply",
        "no-reply",
        "nomail",
        "asdf",
        "qwerty",
        "abc",
        "xxx",
        "foo",
        "bar",
        "dummy",
        "nobody",
        "na",
        "n.a",
        "geen",
    }
)
FAKE_EMAIL_DOMAINS = frozenset(
    {
        "test.com",
        "test.nl",
        "fake.com",
        "none.com",
        "nomail.com",
        "mailinator.com",
        "asdf.com",
        "domain.com",
        "email.com",
        "abc.com",
        "xxx.com",
    }
)
#: Digit runs that give a national number away as typed, not real (0612345678, 0687654321).
_SEQUENCES = ("12345678", "23456789", "98765432", "87654321")
_REPEAT = re.compile(r"(\d)\1{5,}")  # six or more of the same digit in a row
#: Score deducted per obviously fake identifier; a customer scores 1.0 with none.
PENALTY = 0.5


def fake_email(email: str | None) -> bool:
    """True when a normalised e-mail address is obviously a placeholder.

    Parameters
    ----------
    email : str or None
        Output of :func:`~serving.audiences.identifiers.normalise_email`.

    Returns
    -------
    bool
        ``test@test.com``, ``asdf@gmail.com``, ``x@example.com``, ``aaaa@b.nl`` (one
        character repeated) -> True; None -> False (missing is not fake).
    """
    if email is None:
        return False
    local, _, domain = email.partition("@")
    return (
        local in FAKE_EMAIL_LOCAL
        or domain in FAKE_EMAIL_DOMAINS
        or (len(local) >= 3 and len(set(local)) == 1)
        or domain.split(".")[0] == local  # test@test.nl, info@info.com
    )


def fake_phone(e164: str | None) -> bool:
    """True when an E.164 phone number is obviously a placeholder.

    Parameters
    ----------
    e164 : str or None
        Output of :func:`~serving.audiences.identifiers.normalise_phone`.

    Returns
    -------
    bool
        True when the national significant number holds an ascending or descending run of
        eight digits (``+31612345678``), six or more equal digits in a row
        (``+31600000000``), or no more than two distinct digits after its first
        (``+31611111111``); None -> False.
    """
    if e164 is None:
        return False
    nsn = _national_number(e164)
    return (
        any(s in nsn for s in _SEQUENCES)
        or _REPEAT.search(nsn) is not None
        or len(set(nsn[1:])) <= 2
    )


def _national_number(e164: str) -> str:
    """Digits after the country calling code (calling codes are prefix-free, 1-3 digits)."""
    digits = e164.lstrip("+")
    for k in (1, 2, 3):
        if int(digits[:k]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return digits[k:]
    return digits


def quality_score(email: str | None, phone: str | None) -> float:
    """Data-quality score of one customer's contact data, in [0, 1].

    Parameters
    ----------
    email, phone : str or None
        Normalised e-mail address and E.164 phone number.

    Returns
    -------
    float
        1.0 minus :data:`PENALTY` per obviously fake identifier (missing ones cost nothing).
    """
    return 1.0 - PENALTY * (int(fake_email(email)) + int(fake_phone(phone)))


__all__ = ["FAKE_EMAIL_DOMAINS", "FAKE_EMAIL_LOCAL", "fake_email", "fake_phone", "quality_score"]
