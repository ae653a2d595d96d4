"""Next-best-offers for a placement: candidates -> rank -> business rules -> content block.

:func:`recommend_for` answers per recipient (API, notebooks); :func:`recommend_frame` is the
vectorised batch path the export streams chunk by chunk. Candidates come from a fitted
recommender that follows :class:`CandidateModel` (``models.recommender.next_best.
NextBestOffers``) or from a ready candidates frame; with neither, every recipient gets the
placement's popular fallback. Unknown customers and customers without history never raise:
they get popular items of their segment / overall (when the channel needs no consent) or an
explicit not-eligible result (when it does: no consent is on record for them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from features import contract as c
from klantbeeld.errors import NotTrainedError
from klantbeeld.settings import Settings
from models.recommender.block import CandidateBlock
from serving.context import RecContext
from serving.placements import Placement, PlacementConfig, load_placements
from serving.rules import (
    CONTENT_BLOCK,
    ELIGIBLE,
    RANK,
    REASON,
    SCORE,
    SOURCE,
    RuleResult,
    apply_rules,
    candidate_block,
    eligibility,
    recipient_index,
)
from serving.state import StateStore

if TYPE_CHECKING:
    from models.recommender.next_best import NextBestOffers

log = logging.getLogger(__name__)

#: Registered model name of the recommender (``training.registry.registered_model_name``).
RECOMMENDER_MODEL = "recommender"
_NBO_ARTIFACT = "nbo"

#: Online state is queried per customer up to this many recipients; above, in one scan.
_STATE_PER_CUSTOMER_MAX = 5_000
#: Purchases recorded at run time are read from this many days before the context's ``now``.
STATE_PURCHASE_OVERLAP_DAYS = 7


class CandidateModel(Protocol):
    """What the rules need from a fitted recommender (``NextBestOffers``)."""

    def candidates(self, customer_ids: Sequence[str], n_per_source: int = 50) -> pd.DataFrame:
        """Candidates ``customer_id, item_id, score, source, reason`` for these customers."""
        ...

    def rank(self, candidates: pd.DataFrame) -> pd.DataFrame:
        """Final ``score`` per (customer, item), sorted per customer."""
        ...


@runtime_checkable
class BlockCandidateModel(Protocol):
    """A recommender that also gives ranked candidates as 2-D arrays (the batch path)."""

    def candidate_block(
        self,
        customer_ids: Sequence[str] | np.ndarray | pd.Index,
        n_per_source: int = 50,
        *,
        sources: Sequence[str] | None = None,
    ) -> CandidateBlock:
        """Ranked candidates of these customers, sources restricted to ``sources``."""
        ...


@dataclass(frozen=True)
class RecommendedItem:
    """One item for a recipient, with the content fields a template needs.

    Attributes
    ----------
    rank : int
        1 = best.
    item_id : str
    score : float
        Ranker score (higher is better); popularity share for fallback items.
    reason : str
        ``bought_before``, ``similar_to:<item_id>``, ``viewed``, ``popular_in:<segment>``,
        ``for_you`` or ``in_cart``.
    title, url, image_url : str or None
    price : float or None
        EUR.
    category : str
    """

    rank: int
    item_id: str
    score: float
    reason: str
    title: str | None
    url: str | None
    image_url: str | None
    price: float | None
    category: str | None


@dataclass(frozen=True)
class RecipientResult:
    """Recommendations for one recipient in one placement.

    Attributes
    ----------
    customer_id : str
    placement : str
    eligible : bool
        False: nothing may be sent/shown; ``reason`` says why (``no_email_consent``,
        ``unknown_customer``, ``empty_cart``, ``no_items``).
    reason : str or None
    content_block : str or None
        Best-matching content block (e.g. ``baking``), ``None`` when not eligible.
    items : list of RecommendedItem
        Ranked items (empty when not eligible).
    """

    customer_id: str
    placement: str
    eligible: bool
    reason: str | None
    content_block: str | None
    items: list[RecommendedItem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready)."""
        return asdict(self)


def load_next_best_offers(
    settings: Settings, *, path: str | Path | None = None, alias: str | None = "champion"
) -> NextBestOffers:
    """Load the recommender that serving should use.

    Order: ``path`` when given; else the registered ``klantbeeld-recommender@<alias>``
    (its ``nbo`` artifact, downloaded once to ``<home>/cache/recommender-v<version>``);
    else the last trained model in ``<home>/models/recommender`` (written by
    :func:`training.recommender_job.train_recommender` even when MLflow logging is off).
    A local MLflow store that does not exist yet is not created.

    Parameters
    ----------
    settings : Settings
        Home folder and MLflow store.
    path : str or Path, optional
        A :meth:`NextBestOffers.save` folder to load instead.
    alias : str or None, default "champion"
        Registry alias to look for; None skips the registry.

    Returns
    -------
    NextBestOffers
        Dense arrays memory-mapped.

    Raises
    ------
    NotTrainedError
        Nothing trained: no registered version with the alias and no local model.
    """
    from models.recommender.next_best import NextBestOffers
    from training.registry import model_dir, registered_folder

    if path is not None:
        p = Path(path)
        if not (p / "params.json").is_file():
            raise NotTrainedError(f"path {p} holds no saved recommender (no params.json)")
        return NextBestOffers.load(p)
    if alias is not None:
        folder = registered_folder(settings, RECOMMENDER_MODEL, alias, _NBO_ARTIFACT)
        if folder is not None:
            return NextBestOffers.load(folder)
    local = model_dir(settings, RECOMMENDER_MODEL)
    if (local / "params.json").is_file():
        log.info("loading the last trained recommender from %s", local)
        return NextBestOffers.load(local)
    where = f"no klantbeeld-{RECOMMENDER_MODEL}@{alias} in the MLflow store and " if alias else ""
    raise NotTrainedError(
        f"no trained recommender: {where}no model in {local}; "
        "run `klantbeeld train recommender` first"
    )


def resolve_placement(
    placement: str | Placement, placements: PlacementConfig | None = None
) -> Placement:
    """Placement object from a name (looked up in ``placements``, default the packaged file)."""
    if isinstance(placement, Placement):
        return placement
    return (placements or load_placements()).get(placement)


def state_overlay(
    state: StateStore | None,
    recipients: Sequence[str],
    placement: Placement,
    context: RecContext,
    now: datetime,
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Sends and purchases recorded online for ``recipients`` that the rules must see.

    Sends since ``now - placement.rules.exclude_sent_days`` (None when that rule is off)
    and purchases since ``context.now - STATE_PURCHASE_OVERLAP_DAYS``; ``(None, None)``
    without a state store. Above ``_STATE_PER_CUSTOMER_MAX`` recipients one scan.
    """
    if state is None:
        return None, None
    ids = None if len(recipients) > _STATE_PER_CUSTOMER_MAX else list(recipients)
    sends = None
    days = placement.rules.exclude_sent_days
    if days is not None:
        sends = state.recent_sends(now - timedelta(days=days), ids)
    since = context.now - timedelta(days=STATE_PURCHASE_OVERLAP_DAYS)
    purchases = state.recent_purchases(since, ids)
    return sends, purchases


def recommend_frame(
    customers: Sequence[str] | np.ndarray | pd.Index,
    placement: str | Placement,
    *,
    context: RecContext,
    model: CandidateModel | None = None,
    candidates: pd.DataFrame | None = None,
    placements: PlacementConfig | None = None,
    state: StateStore | None = None,
    now: datetime | None = None,
) -> RuleResult:
    """Vectorised next-best-offers for many recipients (the batch path).

    Parameters
    ----------
    customers : sequence of str
        Recipients, in output order.
    placement : str or Placement
        Placement name (looked up in ``placements``) or object.
    context : RecContext
        Customers, items, purchase and send history (see :mod:`serving.context`).
    model : CandidateModel, optional
        Fitted recommender; asked only for recipients who may receive the placement.
        One that also has ``candidate_block`` (:class:`BlockCandidateModel`, e.g.
        ``NextBestOffers``) is asked for 2-D arrays instead of a long frame.
    candidates : DataFrame, optional
        Ready ranked candidates (``customer_id, item_id, score[, source, reason]``); used
        instead of ``model``.
    placements : PlacementConfig, optional
        Where placement names are looked up; default the packaged placements.
    state : StateStore, optional
        Online state (sends and purchases recorded at run time).
    now : datetime, optional
        Reference instant (naive UTC); default ``context.now``.

    Returns
    -------
    RuleResult
    """
    pl = resolve_placement(placement, placements)
    recipients = recipient_index(customers)
    when = now if now is not None else context.now
    ranked: pd.DataFrame | CandidateBlock | None = candidates
    if candidates is None and model is not None:
        ok, _ = eligibility(context.customer_codes(recipients), pl, context)
        asked = recipients[ok]
        if len(asked) and isinstance(model, BlockCandidateModel):
            ranked = model.candidate_block(
                asked, n_per_source=pl.n_per_source, sources=pl.candidate_sources
            )
        elif len(asked):
            raw = model.candidates(list(asked), n_per_source=pl.n_per_source)
            if SOURCE in raw.columns:
                raw = raw[raw[SOURCE].isin(pl.candidate_sources)]
            ranked = model.rank(raw) if len(raw) else raw
    sends, purchases = state_overlay(state, list(recipients), pl, context, when)
    return apply_rules(
        ranked
        if isinstance(ranked, CandidateBlock)
        else candidate_block(ranked, context, sources=pl.candidate_sources),
        recipients,
        pl,
        context,
        now=now,
        recent_sends=sends,
        recent_purchases=purchases,
    )


def recommend_for(
    customers: Sequence[str],
    placement: str | Placement,
    *,
    context: RecContext,
    model: CandidateModel | None = None,
    candidates: pd.DataFrame | None = None,
    placements: PlacementConfig | None = None,
    state: StateStore | None = None,
    now: datetime | None = None,
) -> list[RecipientResult]:
    """Next-best-offers per recipient: one :class:`RecipientResult` per distinct customer.

    Same parameters as :func:`recommend_frame`. Unknown customers and customers without
    history get the placement's popular fallback (or, on a channel that needs consent, a
    not-eligible result with reason ``unknown_customer``) -- never an error.

    Returns
    -------
    list of RecipientResult
        In the order of ``customers`` (duplicates dropped).
    """
    pl = resolve_placement(placement, placements)
    result = recommend_frame(
        customers,
        pl,
        context=context,
        model=model,
        candidates=candidates,
        placements=placements,
        state=state,
        now=now,
    )
    return to_recipient_results(result, pl.name)


def to_recipient_results(result: RuleResult, placement: str) -> list[RecipientResult]:
    """Turn the frames of a :class:`RuleResult` into per-recipient objects.

    ``result.recs`` holds each recipient's items as one contiguous run of rows, in the
    order of ``result.recipients``; columns are read once as Python lists (missing values
    as ``None``), not row by row.
    """
    rec = result.recs
    ids = rec[c.CUSTOMER_ID].to_numpy(dtype=object)
    n = len(ids)
    keys = (RANK, c.ITEM_ID, SCORE, REASON, c.TITLE, c.URL, c.IMAGE_URL, c.PRICE, c.CATEGORY)
    cols = {key: _column(rec, key) for key in keys}
    ranks = [int(v) for v in cols[RANK]]
    items_of = [str(v) for v in cols[c.ITEM_ID]]
    scores = [float(v) for v in cols[SCORE]]
    reasons = [str(v) for v in cols[REASON]]
    prices = [None if v is None else float(v) for v in cols[c.PRICE]]
    titles, urls, images, cats = cols[c.TITLE], cols[c.URL], cols[c.IMAGE_URL], cols[c.CATEGORY]
    out: list[RecipientResult] = []
    start = 0
    for r in result.recipients.itertuples(index=False):
        cid = getattr(r, c.CUSTOMER_ID)
        end = start
        while end < n and ids[end] == cid:
            end += 1
        items = [
            RecommendedItem(
                rank=ranks[i],
                item_id=items_of[i],
                score=scores[i],
                reason=reasons[i],
                title=titles[i],
                url=urls[i],
                image_url=images[i],
                price=prices[i],
                category=cats[i],
            )
            for i in range(start, end)
        ]
        start = end
        reason = getattr(r, REASON)
        block = getattr(r, CONTENT_BLOCK)
        out.append(
            RecipientResult(
                customer_id=str(cid),
                placement=placement,
                eligible=bool(getattr(r, ELIGIBLE)),
                reason=None if _missing(reason) else str(reason),
                content_block=None if _missing(block) else str(block),
                items=items,
            )
        )
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _column(frame: pd.DataFrame, key: str) -> list[Any]:
    """Column ``key`` of ``frame`` as a list with ``None`` for missing values (all ``None``
    when the column is absent)."""
    if key not in frame.columns:
        return [None] * len(frame)
    values = frame[key]
    missing = values.isna().to_numpy()
    if not missing.any():
        return values.tolist()
    return [None if m else v for v, m in zip(values.tolist(), missing.tolist(), strict=True)]


__all__ = [
    "BlockCandidateModel",
    "CandidateModel",
    "load_next_best_offers",
    "RecipientResult",
    "RecommendedItem",
    "recommend_for",
    "recommend_frame",
    "resolve_placement",
    "state_overlay",
    "to_recipient_results",
]
