"""Audience membership with the online consent changes and erasures applied.

:class:`serving.api.audience.AudienceIndex` holds the consent flags of the customer table
as loaded at startup. A ``consent_update`` posted to ``/v1/events`` and an erasure
(``DELETE /v1/customers/{id}``) must count for the very next export, so the audience
route passes the members through :func:`online_members`, which reads both from the state
store (all workers write the same SQLite file).
"""

from __future__ import annotations

import numpy as np

from serving.api.audience import CONSENT_COLUMNS, AudienceIndex, Consent
from serving.state import OnlineStateStore


def online_members(
    audience: AudienceIndex,
    model: str,
    min_score: float,
    consent: Consent,
    state: OnlineStateStore,
) -> np.ndarray:
    """Rows (sorted-id order) with ``score >= min_score`` and ``consent`` as it is now.

    Parameters
    ----------
    audience : AudienceIndex
    model : str
        Scored model.
    min_score : float
        Probability threshold (inclusive).
    consent : {"ads", "email"}
    state : OnlineStateStore
        Online consent (the latest per channel wins over the customer table) and the
        erasure list (erased customers are never members).

    Returns
    -------
    ndarray of int64
    """
    overrides = state.consent_overrides()
    erased = state.erased()
    if not overrides and not erased:
        return audience.members(model, min_score, consent)
    col = CONSENT_COLUMNS[consent]
    flags = audience.consent[consent].copy()
    given = [(cid, getattr(o, col)) for cid, o in overrides.items() if getattr(o, col) is not None]
    if given:
        rows = audience.scores.positions([cid for cid, _ in given])
        values = np.array([v for _, v in given], dtype=bool)
        known = rows >= 0
        flags[rows[known]] = values[known]
    if erased:
        rows = audience.scores.positions(sorted(erased))
        flags[rows[rows >= 0]] = False
    score = audience.scores.score_array(model)
    with np.errstate(invalid="ignore"):
        keep = (score >= min_score) & flags
    return np.flatnonzero(keep)


__all__ = ["online_members"]
