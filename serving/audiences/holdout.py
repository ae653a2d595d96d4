"""Deterministic random holdout: a fixed share of each audience that is never exported.

Membership depends only on the customer id and the audience name (SHA-256 of
``"<audience>\\x1f<customer_id>"``, first 8 bytes read as an unsigned integer and scaled to
[0, 1)), so the same customer stays in (or out of) the holdout of an audience on every
run, on every machine, while different audiences get independent holdouts. Comparing the
conversions of holdout members with those of exported members later measures the uplift.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def holdout_draw(customer_ids: Sequence[str], audience: str) -> np.ndarray:
    """Uniform [0, 1) number per customer, fixed by (audience, customer id).

    Parameters
    ----------
    customer_ids : sequence of str
    audience : str
        Audience name; part of the hash so audiences get independent holdouts.

    Returns
    -------
    ndarray of float64, shape (len(customer_ids),)
    """
    prefix = audience.encode("utf-8") + b"\x1f"
    out = np.empty(len(customer_ids), dtype=np.float64)
    for k, cid in enumerate(customer_ids):
        digest = hashlib.sha256(prefix + str(cid).encode("utf-8")).digest()
        out[k] = int.from_bytes(digest[:8], "big") / 2.0**64
    return out


def in_holdout(customer_ids: Sequence[str], audience: str, share: float) -> np.ndarray:
    """Boolean mask: which customers belong to the audience's holdout.

    Parameters
    ----------
    customer_ids : sequence of str
    audience : str
    share : float
        Expected share of the audience held out, in [0, 1).

    Returns
    -------
    ndarray of bool, shape (len(customer_ids),)

    Raises
    ------
    ValueError
        ``share`` outside [0, 1).
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must be in [0, 1), got {share}")
    return holdout_draw(customer_ids, audience) < share


__all__ = ["holdout_draw", "in_holdout"]
