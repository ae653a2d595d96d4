"""Real-time conversion intent: rescore a customer from the champion within the POST.

:class:`OnlineIntent` holds, per API worker, the champion conversion-intent scorer, the
model inputs of every customer at the batch snapshot time T (the same frame batch scoring
scored: :func:`models.inputs.model_inputs` of :func:`features.snapshot.build_snapshot`)
and an :class:`serving.online_features.OnlineFeatures`. :meth:`OnlineIntent.rescore`
replaces a customer's session feature columns by their values now (history before T plus
the events posted since, ``ts < now``), scores the row with the champion, and stores
features, score and explanation in the online state (:class:`serving.online_store.OnlineStore`),
where ``GET /v1/customers/{id}/scores`` of every worker reads them. Columns that session
events do not change (orders, e-mail, replenishment, profile) keep their values at T.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import numpy as np
import pandas as pd

from features import contract as c
from klantbeeld.errors import NotTrainedError
from klantbeeld.settings import Settings
from models.base import TOP_DOWN, TOP_UP
from serving.online_features import OnlineFeatures, session_columns
from serving.online_store import NOT_SHOP_EVENTS, OnlineStore, ScoreUpdate

log = logging.getLogger(__name__)

INTENT = "conversion_intent"
#: Posted event types that never trigger a rescore: the API's own, not shop events.
NO_RESCORE_EVENT_TYPES: frozenset[str] = frozenset(NOT_SHOP_EVENTS)


@dataclass(frozen=True)
class Rescored:
    """What one :meth:`OnlineIntent.rescore` call did.

    Attributes
    ----------
    customers : int
        Customers rescored (known to the batch snapshot, not erased).
    changes : int
        Scores that changed (rows appended to the change log).
    seconds : float
    """

    customers: int
    changes: int
    seconds: float


class OnlineIntent:
    """Rescores conversion intent from session events (see module docstring).

    Parameters
    ----------
    features : OnlineFeatures
        Online feature engine over the shop, at the batch snapshot time.
    inputs : pandas.DataFrame
        Model inputs at T, one row per customer, indexed by ``customer_id``; kept as one
        float64 matrix of the scorer's features (``scorer.feature_names_``).
    scorer : models.base.Scorer
        The champion conversion-intent scorer.
    version : int or None
        Its registered version.
    store : OnlineStore
    as_of : str
        The batch scores' ``as_of`` label the online rows extend.
    batch_scores : dict of str to float
        Batch conversion-intent score per customer (the "before" of a first change).
    categories : sequence of str
        Category fragments of the snapshot's ``view_share_*`` columns.
    """

    def __init__(
        self,
        features: OnlineFeatures,
        inputs: pd.DataFrame,
        scorer: Any,
        version: int | None,
        store: OnlineStore,
        as_of: str,
        batch_scores: dict[str, float | None],
        categories: Sequence[str],
    ) -> None:
        self.features = features
        self.scorer = scorer
        self.version = version
        self.store = store
        self.as_of = as_of
        self.batch_scores = batch_scores
        #: Session columns refreshed online (those the snapshot has).
        self.columns = [col for col in session_columns(categories) if col in inputs.columns]
        self.names = [str(n) for n in scorer.feature_names_]
        self._row = {str(cid): i for i, cid in enumerate(inputs.index)}
        self._matrix = np.column_stack(
            [
                pd.to_numeric(inputs[n], errors="coerce").to_numpy(np.float64, na_value=np.nan)
                if n in inputs.columns
                else np.full(len(inputs), np.nan)
                for n in self.names
            ]
        ) if self.names else np.empty((len(inputs), 0))  # fmt: skip
        self._fresh_at = [j for j, n in enumerate(self.names) if n in self.columns]
        self._queue_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._pending: list[_Job] = []
        self._fresh_cols = [self.names[j] for j in self._fresh_at]

    def known(self, customer_ids: Sequence[str]) -> list[str]:
        """The customers of ``customer_ids`` in the batch snapshot, sorted, once each."""
        return sorted({str(x) for x in customer_ids if str(x) in self._row})

    def session_features(self, customer_ids: Sequence[str], t: datetime) -> pd.DataFrame:
        """Session columns of ``customer_ids`` at ``t`` (events posted online with
        ``ts < t`` included), indexed by ``customer_id``, dtypes as in the snapshot."""
        ids = self.known(customer_ids)
        events, _ = self.store.events_between(ids, self.features.as_of, t)
        return self._fresh(ids, events, t)

    def _fresh(self, ids: list[str], events: pd.DataFrame, t: datetime) -> pd.DataFrame:
        fresh = self.features.features_at(ids, events, t).set_index(c.CUSTOMER_ID)
        return fresh.loc[ids, self.columns]

    def rows_at(self, customer_ids: Sequence[str], t: datetime) -> pd.DataFrame:
        """The scorer's input rows at ``t``: the rows at T with the session columns as of
        ``t``; float64 columns ``scorer.feature_names_``, indexed by ``customer_id``."""
        ids = self.known(customer_ids)
        events, _ = self.store.events_between(ids, self.features.as_of, t)
        return self._rows(ids, self._fresh(ids, events, t))

    def _rows(self, ids: list[str], fresh: pd.DataFrame) -> pd.DataFrame:
        X = self._matrix[[self._row[cid] for cid in ids]]
        X[:, self._fresh_at] = fresh[self._fresh_cols].to_numpy(np.float64, na_value=np.nan)
        return pd.DataFrame(X, columns=self.names, index=pd.Index(ids, name=c.CUSTOMER_ID))

    def rescore(self, customer_ids: Sequence[str], now: datetime) -> Rescored:
        """Recompute and store the conversion-intent score of ``customer_ids`` at ``now``.

        Concurrent calls (the route runs in a thread pool) are combined: a call that finds
        another computing waits, then the next one computes for everything that queued
        meanwhile in one feature query and one transaction, at the latest ``now`` among
        them -- the query's cost hardly depends on the number of customers.

        Parameters
        ----------
        customer_ids : sequence of str
            Customers with new events; those unknown at T are skipped.
        now : datetime
            Evaluation instant (naive UTC): events with ``ts < now`` count.

        Returns
        -------
        Rescored
            ``customers`` of this call; ``changes`` and ``seconds`` of the combined run.
        """
        job = _Job(self.known(customer_ids), now)
        if not job.ids or now < self.features.as_of:
            return Rescored(0, 0, 0.0)
        with self._queue_lock:
            self._pending.append(job)
        with self._run_lock:
            if job.result is None and job.error is None:
                with self._queue_lock:
                    batch, self._pending = self._pending, []
                try:
                    done = self._rescore_now(
                        sorted({i for j in batch for i in j.ids}), max(j.now for j in batch)
                    )
                except BaseException as exc:
                    for j in batch:
                        j.error = exc
                else:
                    for j in batch:
                        j.result = Rescored(len(j.ids), done.changes, done.seconds)
        if job.error is not None:
            raise job.error
        return cast(Rescored, job.result)

    def _rescore_now(self, ids: list[str], now: datetime) -> Rescored:
        t0 = time.perf_counter()
        events, seqs = self.store.events_between(ids, self.features.as_of, now)
        fresh = self._fresh(ids, events, now)
        rows = self._rows(ids, fresh)
        p = self.scorer.predict_proba(rows)
        why = self.scorer.explain(rows, k=3)
        values = fresh.to_numpy(np.float64, na_value=np.nan)
        updates = [
            ScoreUpdate(
                customer_id=cid,
                model=INTENT,
                score=float(p[k]),
                model_version=self.version,
                top_up=list(why[TOP_UP].iloc[k]),
                top_down=list(why[TOP_DOWN].iloc[k]),
                features={col: _plain(v) for col, v in zip(self.columns, values[k], strict=True)},
                events_seq=seqs.get(cid, 0),
                at=now,
            )
            for k, cid in enumerate(ids)
        ]
        changes = self.store.write_scores(updates, self.as_of, self.batch_scores)
        return Rescored(len(updates), changes, time.perf_counter() - t0)


@dataclass
class _Job:
    """One caller's share of a combined rescore."""

    ids: list[str]
    now: datetime
    result: Rescored | None = None
    error: BaseException | None = None


def _plain(value: Any) -> float | None:
    v = float(value)
    return None if math.isnan(v) else v


def load_online_intent(settings: Settings, scores: Any) -> OnlineIntent:
    """Build the engine for the batch scores ``scores`` (a :class:`ScoreIndex`).

    Opens the shop (``settings.resolved_data_dir``), loads the registered champion of
    ``conversion_intent`` (``settings``' MLflow store), builds the snapshot at the scores'
    ``as_of`` and compiles the online feature query once (so the first event is fast).

    Raises
    ------
    NotTrainedError
        The scores have no ``as_of`` or no conversion-intent column, or there is no
        champion.
    """
    from features.shop import open_shop
    from features.snapshot import build_snapshot, normalize_as_of
    from models.inputs import model_inputs
    from training.batch_score import load_champions
    from training.tracking import configure_mlflow

    if scores.as_of is None or INTENT not in scores.models:
        raise NotTrainedError("the batch scores have no conversion_intent column to update")
    as_of = normalize_as_of(scores.as_of)
    configure_mlflow(settings)
    champions = load_champions([INTENT])
    if INTENT not in champions:
        raise NotTrainedError("no conversion_intent champion: run `klantbeeld train` first")
    version, scorer = champions[INTENT]
    shop = open_shop(settings.resolved_data_dir, lenient=settings.lenient, threads=settings.threads)
    snapshot = build_snapshot(shop, as_of)
    inputs = model_inputs(snapshot).set_index(c.CUSTOMER_ID)
    ids = [b.decode("utf-8") for b in np.asarray(scores.ids).tolist()]
    batch = dict(
        zip(ids, np.asarray(scores.score_array(INTENT), dtype=float).tolist(), strict=True)
    )
    batch_scores = {k: (None if math.isnan(v) else v) for k, v in batch.items()}
    categories = [
        s.name.removeprefix("view_share_")
        for s in snapshot.manifest
        if s.entity == "customer" and s.name.startswith("view_share_")
    ]
    store = OnlineStore(settings.resolved_state_file)
    engine = OnlineIntent(
        OnlineFeatures(shop, as_of), inputs, scorer, version, store, scores.as_of, batch_scores,
        categories,
    )  # fmt: skip
    if len(inputs):
        engine.session_features([str(inputs.index[0])], as_of)  # compiles the feature query
    return engine


__all__ = ["INTENT", "NO_RESCORE_EVENT_TYPES", "OnlineIntent", "Rescored", "load_online_intent"]
