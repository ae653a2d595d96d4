"""What the API serves from, loaded once per worker at startup.

:func:`load_artifacts` gathers the latest batch scores (:class:`ScoreIndex`, memory-mapped),
the rule context built from the shop, the served recommender (``NextBestOffers``, arrays
memory-mapped), the placements config, the online state store and the audience index.
A missing piece (no scores yet, no trained recommender, no shop) does not stop the service:
it is recorded in :attr:`Artifacts.problems`, ``GET /health`` reports it and the routes that
need it answer 503 with the reason. A broken placements file does stop it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from features import contract as c
from klantbeeld.errors import DataContractError, KlantbeeldError, NotTrainedError
from klantbeeld.settings import Settings
from serving.api.audience import AudienceIndex
from serving.api.scores import ScoreIndex, latest_scores_file
from serving.api.state_reader import FastStateReader
from serving.context import RecContext
from serving.next_best_offer import CandidateModel, RecipientResult, recommend_for
from serving.placements import Placement, PlacementConfig, placements_from_settings
from serving.state import SQLiteStateStore, StateStore

log = logging.getLogger(__name__)

SCORES = "scores"
SHOP = "shop"
RECOMMENDER = "recommender"
AUDIENCE = "audience"
_AUDIENCE_COLUMNS = (c.CUSTOMER_ID, c.CONSENT_EMAIL, c.CONSENT_ADS, c.EMAIL, c.PHONE)


class RecommendationService:
    """Next-best-offers per recipient over a fixed context, model, placements and state.

    Parameters
    ----------
    context : RecContext
        Customers (consent), items, history, carts, popularity.
    model : CandidateModel or None
        Fitted recommender; None serves the placements' popular fallback only.
    placements : PlacementConfig
    state : StateStore or None
        Online sends and purchases, read on every call.
    """

    def __init__(
        self,
        context: RecContext,
        model: CandidateModel | None,
        placements: PlacementConfig,
        state: StateStore | None,
    ) -> None:
        self.context = context
        self.model = model
        self.placements = placements
        self.state = state
        self._sized: dict[tuple[str, int], Placement] = {}

    def placement(self, name: str, n: int | None = None) -> Placement:
        """Placement ``name``, with ``n_items`` replaced by ``n`` when given.

        Raises
        ------
        ConfigError
            Unknown placement (the message lists the declared ones).
        """
        pl = self.placements.get(name)
        if n is None or n == pl.n_items:
            return pl
        key = (name, n)
        if key not in self._sized:
            self._sized[key] = pl.model_copy(
                update={"n_items": n, "max_candidates": max(pl.max_candidates, n)}
            )
        return self._sized[key]

    def recommend(
        self,
        customer_ids: Sequence[str],
        placement: str,
        *,
        n: int | None = None,
        now: datetime | None = None,
    ) -> list[RecipientResult]:
        """One :class:`RecipientResult` per distinct recipient, in input order.

        Unknown customers and customers without history get the popular fallback, or a
        not-eligible result (``unknown_customer``, ``no_email_consent``, ...) when the
        channel needs consent -- never an error.
        """
        return recommend_for(
            customer_ids,
            self.placement(placement, n),
            context=self.context,
            model=self.model,
            state=self.state,
            now=now,
        )

    def record_sends(
        self, results: Sequence[RecipientResult], placement: str, now: datetime
    ) -> int:
        """Record every returned item as sent at ``now``; returns the rows stored."""
        if self.state is None:
            raise NotTrainedError("no state store configured; sends cannot be recorded")
        rows = [(r.customer_id, i.item_id) for r in results for i in r.items]
        if not rows:
            return 0
        frame = pd.DataFrame(rows, columns=[c.CUSTOMER_ID, c.ITEM_ID])
        frame[c.PLACEMENT] = placement
        frame[c.TS] = pd.Timestamp(now)
        return self.state.record_sends(frame)


@dataclass
class Artifacts:
    """Everything the routes read; ``None`` where loading failed (see ``problems``).

    Attributes
    ----------
    settings : Settings
    placements : PlacementConfig
    state : StateStore
    scores : ScoreIndex or None
    recommender : RecommendationService or None
    audience : AudienceIndex or None
    problems : dict of str to str
        Component (``scores``, ``shop``, ``recommender``, ``audience``) -> why it is missing.
    loaded_in_s : float
        Seconds spent loading.
    """

    settings: Settings
    placements: PlacementConfig
    state: StateStore
    scores: ScoreIndex | None = None
    recommender: RecommendationService | None = None
    audience: AudienceIndex | None = None
    problems: dict[str, str] = field(default_factory=dict)
    loaded_in_s: float = 0.0

    def require(self, component: str) -> None:
        """Raise :class:`NotTrainedError` (HTTP 503) when ``component`` is not loaded."""
        if component in self.problems:
            raise NotTrainedError(f"{component} not available: {self.problems[component]}")


def load_artifacts(settings: Settings) -> Artifacts:
    """Load every artifact the API serves from (see module docstring).

    Parameters
    ----------
    settings : Settings
        Home folder (scores, models, cache), data folder, placements and state files.

    Returns
    -------
    Artifacts

    Raises
    ------
    ConfigError
        The placements file is invalid.
    """
    t0 = time.perf_counter()
    placements = placements_from_settings(settings)
    state = FastStateReader(SQLiteStateStore(settings.resolved_state_file))
    art = Artifacts(settings=settings, placements=placements, state=state)

    try:
        art.scores = ScoreIndex.open(latest_scores_file(settings), settings.home / "cache")
    except (KlantbeeldError, OSError) as exc:
        art.problems[SCORES] = str(exc)

    customers: pd.DataFrame | None = None
    context: RecContext | None = None
    try:
        from features.shop import open_shop
        from serving.context import build_context

        shop = open_shop(
            settings.resolved_data_dir, lenient=settings.lenient, threads=settings.threads
        )
        cols = [col for col in _AUDIENCE_COLUMNS if col in shop.customers.columns]
        customers = shop.customers.select(cols).to_pandas()
        context = build_context(shop)
    except DataContractError as exc:  # its examples may hold personal data: count only
        what = "; ".join(
            f"{v.table}{'.' + v.column if v.column else ''}: {v.message}" for v in exc.violations
        )
        art.problems[SHOP] = f"data in {exc.source} break the data contract: {what}"
    except (KlantbeeldError, OSError) as exc:
        art.problems[SHOP] = str(exc)

    model = None
    try:
        from serving.next_best_offer import load_next_best_offers

        model = load_next_best_offers(settings)
    except (KlantbeeldError, OSError) as exc:
        art.problems[RECOMMENDER] = str(exc)
    if context is not None and model is not None:
        art.recommender = RecommendationService(context, model, placements, state)
    elif RECOMMENDER not in art.problems:
        art.problems[RECOMMENDER] = "no rule context: " + art.problems.get(SHOP, "")

    if art.scores is not None and customers is not None:
        art.audience = AudienceIndex(customers, art.scores, settings.phone_default_region)
    else:
        missing = [k for k in (SCORES, SHOP) if k in art.problems]
        art.problems[AUDIENCE] = "needs " + " and ".join(missing)
    art.loaded_in_s = time.perf_counter() - t0
    log.info(
        "API artifacts loaded in %.1f s; missing: %s",
        art.loaded_in_s,
        sorted(art.problems) or "none",
    )
    return art


__all__ = ["Artifacts", "RecommendationService", "load_artifacts"]
