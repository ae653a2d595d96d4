"""Audience delta feed: who entered or left an audience since a cursor of the change log.

The change log (:mod:`serving.online_schema`) records every online score change, every
effective change of online ads consent and every erasure. For the customers in the rows
after a cursor, :func:`audience_changes` puts together their state *at the cursor* (the
``before`` of their first row after it; batch values where no row says otherwise) and
their state *now* (latest online score, current consent, erasure list), runs the audience
export's own selection (:func:`serving.audiences.export.select_members`: score threshold,
ads consent, plausible contact data, an identifier, the deterministic holdout) on both,
and reports the differences. The threshold is the one the export applies to the batch
scores, held fixed, so customers whose rows did not change keep their membership and a
retargeting audience can be trimmed during the day from these deltas alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from serving.audiences.definitions import AudienceDefinition
from serving.audiences.export import select_members
from serving.audiences.index import AudienceIndex
from serving.online_schema import CONSENT_ADS, ERASURE, SCORE
from serving.online_store import Change


@dataclass(frozen=True)
class Member:
    """A customer who entered or left, with the hashed identifiers of the export.

    Attributes
    ----------
    customer_id : str
    email_sha256, phone_sha256 : str or None
        SHA-256 of the normalised e-mail / E.164 phone (the Google layout); None when
        unknown or when the customer was erased.
    reason : str
        ``score``, ``consent`` or ``erasure``: which kind of row changed the membership.
    """

    customer_id: str
    email_sha256: str | None
    phone_sha256: str | None
    reason: str


@dataclass(frozen=True)
class AudienceDelta:
    """Result of :func:`audience_changes`.

    Attributes
    ----------
    threshold : float
        Score threshold applied (probability), as the export applies it to batch scores.
    entered, left : list of Member
    cursor : int
        Cursor after the last change-log row read (pass it as ``since`` next time).
    rows_read : int
    """

    threshold: float
    entered: list[Member]
    left: list[Member]
    cursor: int
    rows_read: int


class _Scores:
    """The part of :class:`serving.api.scores.ScoreIndex` that ``select_members`` reads."""

    def __init__(self, ids: np.ndarray, model: str, scores: np.ndarray) -> None:
        self.ids = ids
        self.models = [model]
        self._scores = scores

    def score_array(self, model: str) -> np.ndarray:
        return self._scores


class _Rows:
    """Some rows of an :class:`AudienceIndex`, with their scores and ads consent replaced."""

    def __init__(
        self, index: Any, rows: np.ndarray, model: str, scores: np.ndarray, ads: np.ndarray
    ) -> None:
        self.scores = _Scores(index.scores.ids[rows], model, scores)
        self.consent = {"ads": ads, "email": index.consent["email"][rows]}
        self.quality = index.quality[rows]
        self.email_hash = index.email_hash[rows]
        self.phone_hash_e164 = index.phone_hash_e164[rows]


def audience_changes(
    base: Any,
    current: Any,
    definition: AudienceDefinition,
    holdout_share: float,
    changes: Sequence[Change],
    online_scores: dict[str, float | None],
    cursor: int,
    as_of: str | None = None,
) -> AudienceDelta:
    """Customers who entered or left ``definition``'s audience in ``changes``.

    Parameters
    ----------
    base : AudienceIndex
        Batch scores and the customer table's consent (as loaded).
    current : AudienceIndex
        ``base`` with the online consent and erasures applied
        (:func:`serving.api.audience_online.online_audience`).
    definition : AudienceDefinition
    holdout_share : float
        ``settings.audience_holdout_share``.
    changes : sequence of Change
        Change-log rows after ``cursor``, oldest first.
    online_scores : dict of str to float or None
        Latest online score of ``definition.score`` per customer in ``changes``.
    cursor : int
        The cursor the rows follow.
    as_of : str, optional
        The batch scores' ``as_of``: score rows extending another batch are skipped.

    Returns
    -------
    AudienceDelta
        Customers not in the batch scores are left out (they are in no export).
    """
    batch = np.asarray(base.scores.score_array(definition.score), dtype=np.float64)
    threshold = definition.threshold(batch)  # what select_members applies to the batch
    fixed = definition.model_copy(
        update={"min_score": threshold, "keep_expected_conversions": None}
    )
    first: dict[str, dict[str, Change]] = {}
    for ch in changes:
        if ch.kind == SCORE and (ch.model != definition.score or ch.as_of != as_of):
            continue
        first.setdefault(ch.customer_id, {}).setdefault(ch.kind, ch)
    ids = sorted(first)
    pos = base.scores.positions(ids) if ids else np.empty(0, dtype=np.int64)
    known = [(cid, int(p)) for cid, p in zip(ids, pos, strict=True) if p >= 0]
    rows = np.array([p for _, p in known], dtype=np.int64)
    before_s, now_s, before_ads = [], [], []
    for cid, p in known:
        kinds = first[cid]
        score_now = online_scores.get(cid, batch[p])
        now_s.append(np.nan if score_now is None else score_now)
        s = kinds.get(SCORE)
        before_s.append(score_now if s is None else (np.nan if s.before is None else s.before))
        a = kinds.get(CONSENT_ADS)
        if a is not None:  # consent at the cursor: the value this change replaced
            before_ads.append(bool(base.consent["ads"][p] if a.before is None else a.before))
        elif ERASURE in kinds:  # erasure deleted the customer's earlier rows: table consent
            before_ads.append(bool(base.consent["ads"][p]))
        else:  # unchanged since the cursor
            before_ads.append(bool(current.consent["ads"][p]))
    end = changes[-1].seq if changes else cursor
    if not known:
        return AudienceDelta(threshold, [], [], end, len(changes))
    was = _members(base, rows, fixed, holdout_share, np.array(before_s), np.array(before_ads))
    now_ads = current.consent["ads"][rows]
    now = _members(base, rows, fixed, holdout_share, np.array(now_s, dtype=np.float64), now_ads)
    entered: list[Member] = []
    left: list[Member] = []
    for k, (cid, p) in enumerate(known):
        if was[k] == now[k]:
            continue
        kinds = first[cid]
        reason = "erasure" if ERASURE in kinds else "consent" if CONSENT_ADS in kinds else "score"
        erased = reason == "erasure"
        member = Member(
            cid,
            None if erased else base.email_hash[p],
            None if erased else base.phone_hash_e164[p],
            reason,
        )
        (entered if now[k] else left).append(member)
    return AudienceDelta(threshold, entered, left, end, len(changes))


def _members(
    index: Any,
    rows: np.ndarray,
    definition: AudienceDefinition,
    holdout_share: float,
    scores: np.ndarray,
    ads: np.ndarray,
) -> np.ndarray:
    """Membership (bool per entry of ``rows``) under the export's selection."""
    sub = _Rows(index, rows, definition.score, scores.astype(np.float64), ads.astype(bool))
    sel = select_members(cast(AudienceIndex, sub), definition, holdout_share)
    out = np.zeros(len(rows), dtype=bool)
    out[sel.rows] = True
    return out


__all__ = ["AudienceDelta", "Member", "audience_changes"]
