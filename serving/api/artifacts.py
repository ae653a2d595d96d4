"""What the API serves from, loaded once per worker at startup.

:func:`load_artifacts` gathers the latest batch scores (:class:`ScoreIndex`, memory-mapped),
the rule context built from the shop, the served recommender (``NextBestOffers``, arrays
memory-mapped), the placements config, the online state store and the audience index.
A missing piece (no scores yet, no trained recommender, no shop) does not stop the service:
it is recorded in :attr:`Artifacts.problems`, ``GET /health`` reports it, ``GET /v1/ready``
answers 503 with the reason and the routes that need it answer 503 too -- except
recommendations, which without a loaded recommender (missing or corrupt) serve every
recipient the placement's popular fallback, flagged ``fallback: true``. A corrupt
artifact never stops the service; a broken placements file does (a configuration error).
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
from serving.api.email_index import EmailIndex
from serving.api.model_info import ModelInfo, served_models
from serving.api.scores import ScoreIndex, latest_scores_file
from serving.api.state_reader import FastStateReader
from serving.context import RecContext
from serving.nbo_online import OnlineNextBestOffers
from serving.next_best_offer import CandidateModel, RecipientResult
from serving.online_overrides import online_view
from serving.placements import Placement, PlacementConfig, placements_from_settings
from serving.state import OnlineStateStore, SQLiteStateStore

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
        state: OnlineStateStore | None,
    ) -> None:
        self.context = context
        self.model = model
        self.placements = placements
        self.state = state
        self._sized: dict[tuple[str, int], Placement] = {}
        self._online = OnlineNextBestOffers(context, model, placements)  # tables, built once

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
        channel needs consent -- never an error. Consent changed through
        ``POST /v1/events`` counts at once, and an erased customer is answered as an
        unknown one (:func:`serving.online_overrides.online_view`).
        """
        view = online_view(customer_ids, self.context, self.state)
        results = self._online.recommend(
            view.customer_ids,
            self.placement(placement, n),
            context=view.context,
            state=self.state,
            now=now,
        )
        return view.restore(results)

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
    state : OnlineStateStore
    scores : ScoreIndex or None
    recommender : RecommendationService or None
    audience : AudienceIndex or None
    emails : EmailIndex or None
        Hashed e-mail address -> customer id (from the shop's customer table).
    models : list of ModelInfo
        Model versions served (``klantbeeld_model_info`` at ``GET /metrics``).
    problems : dict of str to str
        Component (``scores``, ``shop``, ``recommender``, ``audience``) -> why it is missing.
    loaded_in_s : float
        Seconds spent loading.
    """

    settings: Settings
    placements: PlacementConfig
    state: OnlineStateStore
    scores: ScoreIndex | None = None
    recommender: RecommendationService | None = None
    audience: AudienceIndex | None = None
    emails: EmailIndex | None = None
    models: list[ModelInfo] = field(default_factory=list)
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
    except Exception as exc:  # a corrupt file: serve without it, never crash at start-up
        art.problems[SCORES] = _unreadable("scores file", exc)

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
        art.emails = EmailIndex(customers)
        context = build_context(shop)
    except DataContractError as exc:  # its examples may hold personal data: count only
        what = "; ".join(
            f"{v.table}{'.' + v.column if v.column else ''}: {v.message}" for v in exc.violations
        )
        art.problems[SHOP] = f"data in {exc.source} break the data contract: {what}"
    except (KlantbeeldError, OSError) as exc:
        art.problems[SHOP] = str(exc)
    except Exception as exc:
        art.problems[SHOP] = _unreadable("shop data", exc, quote=False)

    model = None
    try:
        from serving.next_best_offer import load_next_best_offers

        model = load_next_best_offers(settings)
    except (KlantbeeldError, OSError) as exc:
        art.problems[RECOMMENDER] = str(exc)
    except Exception as exc:
        art.problems[RECOMMENDER] = _unreadable("recommender artifact", exc)
    if context is not None:
        # without a model every recipient gets the placement's popular fallback (flagged)
        try:
            art.recommender = RecommendationService(context, model, placements, state)
        except Exception as exc:  # its candidate tables cannot be built: the fallback
            art.problems[RECOMMENDER] = _unreadable("recommender candidate tables", exc)
            art.recommender = RecommendationService(context, None, placements, state)
    elif RECOMMENDER not in art.problems:
        art.problems[RECOMMENDER] = "no rule context: " + art.problems.get(SHOP, "")

    art.models = served_models(settings, art.scores, with_recommender=model is not None)
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


def _unreadable(what: str, exc: Exception, quote: bool = True) -> str:
    """Reason for an artifact that raised an unexpected error while loading.

    ``quote=False`` leaves the error's message out (shop data may hold personal data);
    it goes to the log either way only as the error class.
    """
    log.error("%s could not be loaded: %s", what, type(exc).__name__)
    text = f"{what} unreadable ({type(exc).__name__}"
    return text + (f": {exc})" if quote else "; see the data and the server log)")


__all__ = ["Artifacts", "RecommendationService", "load_artifacts"]
