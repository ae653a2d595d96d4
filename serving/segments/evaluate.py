"""Evaluate segments on the latest scores, feature snapshot and customer attributes.

The segment table has one row per customer of the customer table: ``customer_id``, the
contract attributes, the customer-level features of the newest snapshot under
``<home>/features`` (NaN for customers absent from it) and each model's batch score from
the newest ``<home>/scores`` file, named after the model (``churn``, ``conversion_intent``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import contract as c
from klantbeeld.errors import ConfigError, NotTrainedError
from klantbeeld.settings import Settings
from serving.segments.config import Segment
from serving.segments.expressions import RuleError, evaluate
from serving.segments.rfm import add_rfm
from serving.segments.schema import ATTRIBUTES, DAYS_TO_NEXT_PURCHASE

log = logging.getLogger(__name__)

SCORE_SUFFIX = "_score"
#: Repurchase timing's expected days to the next order, named for rules (in-market segments).
EXPECTED_DAYS = "repurchase_timing_expected_days"


def latest_snapshot(settings: Settings) -> Path:
    """Newest ``<features_dir>/as_of=*/customer.parquet``.

    Raises
    ------
    NotTrainedError
        No snapshot (run ``klantbeeld features`` first).
    """
    files = sorted(Path(settings.features_dir).glob("as_of=*/customer.parquet"))
    if not files:
        raise NotTrainedError(
            f"no feature snapshot under {settings.features_dir}; run `klantbeeld features` first"
        )
    return files[-1]


def segment_table(
    customers: pd.DataFrame, features: pd.DataFrame | None, scores: pd.DataFrame | None
) -> pd.DataFrame:
    """Join attributes, features and scores on ``customer_id`` (customer table rows kept).

    Parameters
    ----------
    customers : DataFrame
        ``customer_id`` and any contract attributes.
    features : DataFrame or None
        Customer-level snapshot (``customer_id`` + feature columns).
    scores : DataFrame or None
        Batch scores (``customer_id`` + ``<model>_score`` columns; others ignored).

    Returns
    -------
    DataFrame
        One row per customer, columns named as the rule language names them.
    """
    cols = [c.CUSTOMER_ID, *(a for a in ATTRIBUTES if a in customers.columns)]
    table = customers[cols].copy()
    table[c.CUSTOMER_ID] = table[c.CUSTOMER_ID].astype(str)
    if features is not None:
        feats = features.drop(columns=[x for x in cols[1:] if x in features.columns])
        table = table.merge(
            feats.assign(**{c.CUSTOMER_ID: feats[c.CUSTOMER_ID].astype(str)}),
            on=c.CUSTOMER_ID,
            how="left",
        )
    if scores is not None:
        score_cols = {
            s: s[: -len(SCORE_SUFFIX)] for s in scores.columns if s.endswith(SCORE_SUFFIX)
        }
        if EXPECTED_DAYS in scores.columns:
            score_cols[EXPECTED_DAYS] = DAYS_TO_NEXT_PURCHASE
        sc = scores[[c.CUSTOMER_ID, *score_cols]].rename(columns=score_cols)
        sc[c.CUSTOMER_ID] = sc[c.CUSTOMER_ID].astype(str)
        table = table.merge(sc, on=c.CUSTOMER_ID, how="left")
    return add_rfm(table)


def load_segment_table(settings: Settings) -> pd.DataFrame:
    """:func:`segment_table` from the shop, the newest snapshot and the newest scores.

    Raises
    ------
    NotTrainedError
        Neither a snapshot nor a scores file exists.
    """
    from features.shop import open_shop
    from serving.api.scores import latest_scores_file

    shop = open_shop(settings.resolved_data_dir, lenient=settings.lenient, threads=settings.threads)
    cols = [x for x in (c.CUSTOMER_ID, *ATTRIBUTES) if x in shop.customers.columns]
    customers = shop.customers.select(cols).to_pandas()
    features = scores = None
    try:
        features = pd.read_parquet(latest_snapshot(settings))
    except NotTrainedError as exc:
        log.warning("segments without features: %s", exc)
    try:
        scores = pd.read_parquet(latest_scores_file(settings))
    except NotTrainedError as exc:
        log.warning("segments without scores: %s", exc)
    if features is None and scores is None:
        raise NotTrainedError("segments need a feature snapshot or batch scores; found neither")
    return segment_table(customers, features, scores)


@dataclass(frozen=True)
class SegmentReport:
    """Sizes and pairwise overlaps of segments on one table.

    Attributes
    ----------
    n_customers : int
    sizes : dict of str to int
    overlap : DataFrame
        Customers in both segments (row, column); the diagonal holds the sizes.
    """

    n_customers: int
    sizes: dict[str, int]
    overlap: pd.DataFrame


def evaluate_segments(segments: dict[str, Segment], table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Membership mask of every segment over the rows of ``table``.

    A segment with a ``score`` keeps only rows whose score reaches its threshold
    (:meth:`Segment.threshold` over every scored row of ``table``).

    Raises
    ------
    ConfigError
        A rule names a column the table lacks (e.g. a model without scores), naming the
        segment and the rule.
    """
    out: dict[str, np.ndarray] = {}
    for name, seg in segments.items():
        try:
            mask = evaluate(seg.tree, table)
        except RuleError as exc:
            raise ConfigError(f"segment {name!r}, rule {seg.rule!r}: {exc}") from None
        if seg.score is not None:
            if seg.score not in table.columns:
                raise ConfigError(f"segment {name!r}: no batch scores of {seg.score!r}")
            score = table[seg.score].to_numpy(dtype=np.float64, na_value=np.nan)
            with np.errstate(invalid="ignore"):
                mask = mask & (score >= seg.threshold(score))
        out[name] = mask
    return out


def segment_report(masks: dict[str, np.ndarray]) -> SegmentReport:
    """Sizes and the overlap matrix of the segment masks (all of one length)."""
    names = list(masks)
    m = np.column_stack([masks[n] for n in names]).astype(np.int64) if names else np.zeros((0, 0))
    overlap = pd.DataFrame(m.T @ m, index=names, columns=names)
    return SegmentReport(
        n_customers=int(m.shape[0]),
        sizes={n: int(masks[n].sum()) for n in names},
        overlap=overlap,
    )


__all__ = [
    "SegmentReport",
    "evaluate_segments",
    "latest_snapshot",
    "load_segment_table",
    "segment_report",
    "segment_table",
]
