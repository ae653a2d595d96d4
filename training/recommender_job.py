"""Train, evaluate and register the recommender (issue 6).

Time split on the shop's events: candidate sources are fitted on events before ``T``
and tested on target events in ``(T, T + test_days]``. The LambdaRank re-ranker is
trained on a *later* period than the sources it re-ranks: sources fitted before
``T_val = T - test_days`` and labels from ``(T_val, T]`` (half the validation users train
it, the other half decide whether it beats the blend and the best single source). Each
source alone, popularity and plain ALS are measured on the same test users.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from features import contract as c
from features.definitions import end_of_day
from features.shop import open_shop
from models.recommender.interactions import IdMap, id_map_from_shop, load_events
from models.recommender.next_best import NextBestOffers
from models.recommender.ranker import CandidateRanker
from training.ranking_metrics import ranking_report, recall_at_k
from training.registry import format_test_period
from training.result import TrainingResult

log = logging.getLogger(__name__)

MODEL = "recommender"
KS = (4, 10)
# Promotion metric: recall@10 of the final ranking on the test users (the share of each
# test user's target items in the ten offers, averaged); a tie keeps the champion.
PRIMARY_METRIC = "test_recall_at_10"


def target_matrix(
    events: pd.DataFrame, ids: IdMap, start: datetime, end: datetime, types: list[str]
) -> sparse.csr_matrix:
    """Binary customer × item matrix of target events with ``start < ts <= end``."""
    sel = events[
        (events[c.TS] > pd.Timestamp(start))
        & (events[c.TS] <= pd.Timestamp(end))
        & events[c.EVENT_TYPE].isin(types)
    ]
    u = ids.user_pos(sel[c.CUSTOMER_ID].to_numpy())
    i = ids.item_pos(sel[c.ITEM_ID].to_numpy())
    ok = (u >= 0) & (i >= 0)
    m = sparse.csr_matrix(
        (np.ones(ok.sum(), dtype=np.float32), (u[ok], i[ok])),
        shape=(ids.shape[0] + 1, ids.shape[1]),
    )
    m.data[:] = 1.0
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def evaluate_split(
    events: pd.DataFrame,
    ids: IdMap,
    items: pd.DataFrame | None,
    as_of: datetime,
    settings,
    *,
    test_days: int | None = None,
    target: list[str] | None = None,
    sources: tuple[str, ...] | None = None,
    overrides: dict | None = None,
) -> tuple[dict[str, float], NextBestOffers, str]:
    """Fit sources and ranker around ``as_of``, return (metrics, fitted offers, ranker kind)."""
    days = test_days or settings.recommender_test_days
    target = target or list(settings.recommender_target_events)
    overrides = dict(overrides or {})
    if sources:
        overrides["sources"] = sources
    t_val = as_of - timedelta(days=days)
    seed = settings.seed

    # 1. re-ranker on the validation period (sources fitted before T_val)
    val = NextBestOffers.from_settings(settings, **overrides).fit(events, ids, items, t_val)
    truth_val = target_matrix(events, ids, t_val, as_of, target)
    users_val = np.flatnonzero(truth_val.getnnz(axis=1) > 0)
    rng = np.random.default_rng(seed)
    rng.shuffle(users_val)
    half = len(users_val) // 2
    fit_users, sel_users = np.sort(users_val[:half]), np.sort(users_val[half:])
    metrics: dict[str, float] = {}
    chosen = CandidateRanker("blend")
    try:
        lr = val.fit_ranker(
            fit_users,
            truth_val,
            CandidateRanker(
                "lambdarank",
                n_estimators=settings.recommender_ranker_estimators,
                random_state=seed,
            ),
        )
    except ValueError as err:  # no positive candidate at all
        log.warning("LambdaRank not trained: %s", err)
        lr = None
    val_scores = {"blend": _recall(val, sel_users, truth_val, chosen)}
    if lr is not None:
        val_scores["lambdarank"] = _recall(val, sel_users, truth_val, lr)
    single = {
        name: recall_at_k(_source_recs(val, name, sel_users), truth_val[sel_users], 10)
        for name in val.models_
    }
    best_name = max(single, key=lambda k: single[k])
    best_single = single[best_name]
    metrics["val_blend_recall_at_10"] = val_scores["blend"]
    metrics["val_best_source_recall_at_10"] = best_single
    if lr is not None:
        metrics["val_lambdarank_recall_at_10"] = val_scores["lambdarank"]
    # keep the re-ranker only if it beats the best single source (and the blend) on
    # validation users it was not trained on; else the better of blend and that source
    if lr is not None and val_scores["lambdarank"] > max(best_single, val_scores["blend"]):
        chosen = lr
    elif best_single > val_scores["blend"]:
        chosen = CandidateRanker("blend", source_weights={s: float(s == best_name) for s in single})
        chosen.label = f"source:{best_name}"
    log.info("validation recall@10: %s, best single source %.4f", val_scores, best_single)

    # 2. test period: sources fitted before T, ranker from the validation period
    nbo = NextBestOffers.from_settings(settings, **overrides).fit(events, ids, items, as_of)
    nbo.ranker_ = chosen
    truth = target_matrix(events, ids, as_of, as_of + timedelta(days=days), target)
    users = np.flatnonzero(truth.getnnz(axis=1) > 0)
    t = truth[users]
    n_items = ids.shape[1]
    for name in nbo.models_:
        rep = ranking_report(_source_recs(nbo, name, users), t, n_items, KS)
        metrics.update({f"source_{name}_{k}": v for k, v in rep.items()})
    for name, key in (("popular", "popularity"), ("als", "als")):
        if name in nbo.models_:
            for k, v in ranking_report(_source_recs(nbo, name, users), t, n_items, KS).items():
                metrics[f"baseline_{key}_{k}"] = v
    final = nbo.recommend_positions(users, 10, ranker=chosen)
    metrics.update({f"test_{k}": v for k, v in ranking_report(final, t, n_items, KS).items()})
    if chosen.method == "lambdarank" or chosen.source_weights:
        blend = nbo.recommend_positions(users, 10, ranker=CandidateRanker("blend"))
        metrics["test_blend_recall_at_10"] = recall_at_k(blend, t, 10)
    metrics["n_test_users"] = float(len(users))
    return metrics, nbo, chosen.label or chosen.method


def champion_recall(
    champion: NextBestOffers,
    events: pd.DataFrame,
    ids: IdMap,
    as_of: datetime,
    days: int,
    target: list[str],
) -> float:
    """Recall@10 of a saved (champion) recommender on the holdout ``(as_of, as_of + days]``.

    The champion keeps its fitted sources and ranker; its customer histories are rebuilt
    from the events before ``as_of`` (:meth:`NextBestOffers.refresh`) and its buy-again
    source goes back to the cycle ratio (its repurchase scores were made at its own end
    of data), as the challenger is measured. Offers are matched to the target items by
    item id, so items the champion never saw are never hits for it.

    Parameters
    ----------
    champion : NextBestOffers
        Fitted on events before a cutoff no later than ``as_of``.
    events, ids : the challenger's events and id map
    as_of : datetime
        Test cutoff T (naive UTC).
    days : int
        Test period length (days).
    target : list of str
        Event types that count as hits.

    Returns
    -------
    float
        Mean recall@10 over the customers with a target event in the holdout.
    """
    nbo = champion.refresh(events, as_of)
    # no repurchase probabilities: every pair keeps the cycle-ratio score
    nbo = nbo.with_repurchase_scores(
        pd.DataFrame({c.CUSTOMER_ID: [], c.ITEM_ID: [], "p_week_1": [], "p_week_2": []})
    )
    truth = target_matrix(events, ids, as_of, as_of + timedelta(days=days), target)
    users = np.flatnonzero(truth.getnnz(axis=1) > 0)
    recs = nbo.recommend_positions(nbo.positions(ids.users[users]), 10)
    item_ids = nbo.ids_.items.to_numpy()[np.where(recs >= 0, recs, 0)]
    mapped = ids.item_pos(item_ids.ravel()).reshape(recs.shape)
    mapped[recs < 0] = -1
    return recall_at_k(mapped, truth[users], 10)


def _source_recs(nbo: NextBestOffers, name: str, users: np.ndarray) -> np.ndarray:
    model, mat = nbo._inputs()[name]
    exclude = nbo.history_ if nbo.exclude_history else None
    return model.recommend(users, mat, n=10, exclude=exclude)[0]


def _recall(nbo: NextBestOffers, users, truth, ranker) -> float:
    return recall_at_k(nbo.recommend_positions(users, 10, ranker=ranker), truth[users], 10)


def model_dir(settings) -> Path:
    """Folder of the last trained :class:`NextBestOffers`: ``<home>/models/recommender``
    (:func:`training.registry.model_dir`)."""
    from training.registry import model_dir as registry_model_dir

    return registry_model_dir(settings, MODEL)


def train_recommender(
    settings,
    data: Path | None = None,
    *,
    as_of: datetime | None = None,
    log_to_mlflow: bool = True,
    out: Path | None = None,
    use_repurchase_model: bool = True,
    force: bool = False,
) -> TrainingResult:
    """Train, evaluate, log and register the recommender on one shop.

    Parameters
    ----------
    settings : klantbeeld.settings.Settings
    data : Path, optional
        Shop folder or DuckDB file; default ``settings.resolved_data_dir``.
    as_of : datetime, optional
        Test period start T (naive UTC); default the last event minus ``test_days``.
        (``settings.train_as_of`` instead cuts the data: only events before it are read.)
    log_to_mlflow : bool, default True
        Log params, metrics and the model (:func:`training.log_run.log_training_run`),
        register ``klantbeeld-recommender`` as challenger and promote it to champion when
        its :data:`PRIMARY_METRIC` (``test_recall_at_10``) beats the champion's on the same
        test period (ties keep the champion).
    out : Path, optional
        Folder to save the served :class:`NextBestOffers` in; default :func:`model_dir`.
        The saved (and logged) object is the evaluated one (sources fitted before T,
        ranker chosen on validation) with its customer histories refreshed to the end
        of the data (:meth:`NextBestOffers.refresh`), so recently viewed items and
        purchase ages are current when it serves.
    use_repurchase_model : bool, default True
        When a repurchase-timing champion (item level) is registered, the served
        model's buy-again source ranks by its probability of a repurchase within two
        weeks, scored at the end of the data; else by the cycle ratio. The test metrics
        always use the cycle ratio (the champion may have seen the test period).
    force : bool
        Make the new version champion regardless of metrics.

    Returns
    -------
    TrainingResult
        ``ranker``, ``as_of`` (T), ``n_test`` (test users), ``model_dir`` and
        ``repurchase_model`` filled in; without MLflow ``run_id`` and ``version`` are None.
    """
    from training.requirements import profile_shop, require
    from training.window import training_window

    t0 = time.perf_counter()
    source = data or settings.resolved_data_dir
    shop = open_shop(
        source,
        lenient=settings.lenient,
        threads=settings.threads,
        backend=settings.feature_backend,
    )
    # with settings.train_as_of the shop is cut there: the test period ends at it
    shop, _ = training_window(shop, settings)
    require(MODEL, profile_shop(shop), str(source))
    ids = id_map_from_shop(shop)
    items = shop.items.to_pandas()
    events = load_events(shop)
    if events.empty:
        raise ValueError(f"data {shop.source} has no item events to learn from")
    days = settings.recommender_test_days
    last = events[c.TS].max().to_pydatetime()
    t = as_of or datetime.combine((last - timedelta(days=days)).date(), datetime.min.time())
    metrics, nbo, kind = evaluate_split(events, ids, items, t, settings)
    log.info("recommender test recall@10 %.4f (%s)", metrics[PRIMARY_METRIC], kind)
    end = pd.Timestamp(end_of_day(last))  # midnight after the last event
    nbo = nbo.refresh(events, end.to_pydatetime())
    repurchase_model = False
    if use_repurchase_model:
        pairs = _repurchase_pairs(settings, shop, end.to_pydatetime())
        if pairs is not None:
            nbo = nbo.with_repurchase_scores(pairs)
            repurchase_model = True
    saved = nbo.save(out if out is not None else model_dir(settings))
    facts: dict[str, Any] = {
        "as_of": t,
        "n_test": int(metrics["n_test_users"]),
        "ranker": kind,
        "model_dir": saved,
        "repurchase_model": repurchase_model,
    }
    test_end = t + timedelta(days=days)
    if not log_to_mlflow:
        return TrainingResult(
            model=MODEL,
            run_id=None,
            experiment_id=None,
            version=None,
            promoted=False,
            promotion_reason="not logged (log_to_mlflow=False)",
            metrics=metrics,
            test_period=format_test_period(t, test_end),
            tracking_uri=None,
            seconds=time.perf_counter() - t0,
            **facts,
        )
    from models.recommender.pyfunc import log_next_best_offers
    from training.log_run import log_training_run

    params = {k: v for k, v in nbo.get_params().items() if k != "event_weights"}
    params.update({f"weight_{k}": v for k, v in nbo.event_weights.items()})
    params.update({"ranker": kind, "as_of": t.isoformat()})
    example = nbo.ids_.users[:5].tolist()
    return log_training_run(
        MODEL,
        settings,
        test_start=t,
        test_end=test_end,
        params={k: str(v) for k, v in params.items()},
        metrics=metrics,
        log_model=lambda name: log_next_best_offers(nbo, example, name=name),
        primary_metric=PRIMARY_METRIC,
        force=force,
        started=t0,
        tags={"data": str(data or settings.resolved_data_dir)},
        score_champion=_champion_scorer(events, ids, t, settings),
        **facts,
    )


def _champion_scorer(
    events: pd.DataFrame, ids: IdMap, as_of: datetime, settings
) -> Callable[[Any], float | None]:
    """``score_champion`` of :func:`training.log_run.log_training_run`: the champion's
    recall@10 on this run's holdout (:func:`champion_recall`), or None when the champion
    was fitted on events at or after this run's test cutoff (it may have seen the holdout)."""

    def score(champion: Any) -> float | None:
        fitted_to = champion.run.data.params.get("as_of")
        if fitted_to is None or datetime.fromisoformat(fitted_to) > as_of:
            log.warning(
                "recommender champion v%s was fitted up to %s, after this test cutoff %s; "
                "not compared (use --force)",
                champion.version,
                fitted_to,
                as_of,
            )
            return None
        nbo = champion.load().unwrap_python_model().nbo
        return champion_recall(
            nbo,
            events,
            ids,
            as_of,
            settings.recommender_test_days,
            list(settings.recommender_target_events),
        )

    return score


def _repurchase_pairs(settings, shop, as_of: datetime) -> pd.DataFrame | None:
    """Item-level repurchase scores of the registered champion at ``as_of``, or None."""
    from klantbeeld.errors import NotTrainedError
    from training.tracking import is_local_store, tracking_uri

    uri = tracking_uri(settings)
    if is_local_store(uri) and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    from training.repurchase_scores import repurchase_table

    try:
        scores = repurchase_table(settings, as_of, shop=shop)
    except NotTrainedError:
        log.info("no repurchase-timing champion: buy again keeps the cycle ratio")
        return None
    if scores.level != "item":
        log.info(
            "repurchase-timing champion is %s level: buy again keeps the cycle ratio", scores.level
        )
        return None
    return scores.pairs
