"""Audience membership with the online consent changes and erasures applied.

:class:`serving.api.audience.AudienceIndex` holds the consent flags of the customer table
as loaded at startup. A ``consent_update`` posted to ``/v1/events`` and an erasure
(``DELETE /v1/customers/{id}``) must count for the very next export, so every audience
route first passes its index through :func:`online_audience`, which reads both from the
state store (all workers write the same SQLite file) and returns an index whose consent
flags are the current ones -- erased customers without any consent, so they are never
members of any audience, hashed or not.
"""

from __future__ import annotations

import copy

import numpy as np

from serving.api.audience import CONSENT_COLUMNS, AudienceIndex
from serving.state import OnlineStateStore


def online_audience(audience: AudienceIndex, state: OnlineStateStore) -> AudienceIndex:
    """``audience`` with online consent and erasures applied (itself when there are none).

    Parameters
    ----------
    audience : AudienceIndex
    state : OnlineStateStore
        Online consent (per channel, the latest update wins over the customer table) and
        the erasure list.

    Returns
    -------
    AudienceIndex
        A shallow copy with copied consent arrays, or ``audience`` unchanged.
    """
    overrides = state.consent_overrides()
    erased = state.erased()
    if not overrides and not erased:
        return audience
    consent: dict[str, np.ndarray] = {}
    for key, col in CONSENT_COLUMNS.items():
        flags = audience.consent[key].copy()
        given = [(cid, getattr(o, col)) for cid, o in overrides.items()]
        given = [(cid, v) for cid, v in given if v is not None]
        if given:
            rows = audience.scores.positions([cid for cid, _ in given])
            values = np.array([v for _, v in given], dtype=bool)
            flags[rows[rows >= 0]] = values[rows >= 0]
        if erased:
            rows = audience.scores.positions(sorted(erased))
            flags[rows[rows >= 0]] = False
        consent[key] = flags
    view = copy.copy(audience)
    view.consent = consent
    return view


__all__ = ["online_audience"]
