"""Score plans: declarative points per action and attribute, with decay, point-in-time.

The "dynamic score models" marketers build by hand (lead scoring): e.g. +5 per product
view in the last 7 days, +20 per abandoned cart, -50 for obviously fake contact data.
A plan is declared in YAML (packaged ``serving/score_plans.yaml`` or
``KLANTBEELD_SCORE_PLANS_FILE``) and validated on load. Three kinds of rule:

- ``event``: ``points`` per event of that ``event_type`` in the ``window_days`` before T,
  each weighted by ``0.5 ** (age_days / half_life_days)`` (the plan's half-life; no
  decay when it is unset), capped at ``max_points`` per customer when given. The event
  ``abandoned_cart`` means an ``add_to_cart`` with no purchase by that customer after it
  (and before T).
- ``attribute``: ``points`` when the customer-table column equals ``equals``.
- ``fake_contact``: ``points`` when the e-mail or phone is obviously fake
  (:func:`serving.audiences.quality.quality_score` below 1).

Only events strictly before T count, so a plan's points at T are a feature like any
other (events at or after T never change them).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features import contract as c
from features.shop import Shop
from klantbeeld.errors import ConfigError
from serving.yaml_config import raise_problems, read_yaml, validate_named

log = logging.getLogger(__name__)

DEFAULT_SCORE_PLANS = "score_plans.yaml"
ABANDONED_CART = "abandoned_cart"
POINTS_SUFFIX = "_points"


class PlanRule(BaseModel):
    """One rule of a plan: exactly one of ``event``, ``attribute``, ``fake_contact``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    points: float
    event: str | None = Field(None, min_length=1)
    window_days: float | None = Field(None, gt=0, le=3650)
    max_points: float | None = Field(None, gt=0)
    attribute: str | None = Field(None, min_length=1)
    equals: bool | str | float | None = None
    fake_contact: bool | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> PlanRule:
        kinds = [self.event is not None, self.attribute is not None, bool(self.fake_contact)]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of 'event', 'attribute' or 'fake_contact: true'")
        if self.event is not None and self.window_days is None:
            raise ValueError(f"event rule {self.event!r} needs 'window_days'")
        if self.attribute is not None and self.equals is None:
            raise ValueError(f"attribute rule {self.attribute!r} needs 'equals'")
        if self.event is None and (self.window_days is not None or self.max_points is not None):
            raise ValueError("'window_days' and 'max_points' belong to event rules")
        return self


class ScorePlan(BaseModel):
    """A named plan: its rules and the half-life (days) of event points."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    half_life_days: float | None = Field(None, gt=0, le=3650)
    rules: tuple[PlanRule, ...] = Field(min_length=1)


def parse_score_plans(data: Any, source: str) -> dict[str, ScorePlan]:
    """Validate parsed YAML (``{"score_plans": {name: fields}}``).

    Raises
    ------
    ConfigError
        Every problem, as ``<file>: score plan '<name>', field '<loc>': <message>``.
    """
    out, problems = validate_named(data, "score_plans", "score plan", ScorePlan, source)
    raise_problems(problems, "score plans", source)
    return out


def load_score_plans(path: str | Path | None = None) -> dict[str, ScorePlan]:
    """Read and validate a score-plans YAML file (default: the packaged one).

    Raises
    ------
    ConfigError
        Missing file, invalid YAML (with line and column) or a bad plan.
    """
    data, source = read_yaml(path, DEFAULT_SCORE_PLANS, "score plans")
    return parse_score_plans(data, source)


def _event_points(shop: Shop, as_of: datetime, rule: PlanRule, half_life: float | None) -> Any:
    """Ibis expression: customer_id, points of one event rule (events strictly before T)."""
    e = shop.events
    start = as_of - timedelta(days=rule.window_days or 0.0)
    before = e.filter(e[c.TS] < as_of)
    if rule.event == ABANDONED_CART:
        buys = before.filter(before[c.EVENT_TYPE] == c.PURCHASE)
        last = buys.group_by(c.CUSTOMER_ID).aggregate(last_buy=buys[c.TS].max())
        carts = before.filter(before[c.EVENT_TYPE] == c.ADD_TO_CART, before[c.TS] >= start)
        carts = carts.left_join(last, c.CUSTOMER_ID)
        rows = carts.filter(carts.last_buy.isnull() | (carts[c.TS] > carts.last_buy))
    else:
        rows = before.filter(before[c.EVENT_TYPE] == rule.event, before[c.TS] >= start)
    if half_life is None:
        weight: Any = ibis.literal(1.0)
    else:
        age_days = (ibis.literal(as_of).epoch_seconds() - rows[c.TS].epoch_seconds()) / 86_400.0
        weight = ibis.literal(0.5) ** (age_days / half_life)
    return rows.group_by(c.CUSTOMER_ID).aggregate(points=(weight * rule.points).sum())


def compute_score_plans(
    shop: Shop, as_of: datetime, plans: dict[str, ScorePlan], region: str = "NL"
) -> pd.DataFrame:
    """Points of every plan for every customer at ``as_of`` (events strictly before it).

    Parameters
    ----------
    shop : Shop
    as_of : datetime
        Snapshot time T, naive UTC.
    plans : dict of str to ScorePlan
    region : str
        ISO region for phone numbers without a country code (fake-contact rules).

    Returns
    -------
    DataFrame
        ``customer_id`` (every customer, sorted) and ``<plan>_points`` (float64) per plan.

    Raises
    ------
    ConfigError
        An attribute rule names a column the customer table lacks.
    """
    from serving.audiences.identifiers import normalise_email, normalise_phone
    from serving.audiences.quality import quality_score

    customers = shop.customers.to_pandas()
    customers[c.CUSTOMER_ID] = customers[c.CUSTOMER_ID].astype(str)
    out = pd.DataFrame({c.CUSTOMER_ID: sorted(customers[c.CUSTOMER_ID])})
    by_id = customers.set_index(c.CUSTOMER_ID).reindex(out[c.CUSTOMER_ID])
    fake: pd.Series | None = None
    for name, plan in plans.items():
        total = pd.Series(0.0, index=out[c.CUSTOMER_ID])
        for k, rule in enumerate(plan.rules):
            if rule.event is not None:
                got = _event_points(shop, as_of, rule, plan.half_life_days).to_pandas()
                pts = got.set_index(c.CUSTOMER_ID)["points"].astype(float)
                if rule.max_points is not None:
                    pts = pts.clip(upper=rule.max_points)
                total = total.add(pts.reindex(total.index).fillna(0.0))
            elif rule.attribute is not None:
                if rule.attribute not in by_id.columns:
                    raise ConfigError(
                        f"score plan {name!r}, rule {k + 1}: attribute {rule.attribute!r} is not "
                        f"a column of the customer table"
                    )
                hit = by_id[rule.attribute].astype(object).eq(rule.equals).fillna(False)
                total = total + hit.astype(float).to_numpy() * rule.points
            else:
                if fake is None:
                    email = by_id.get(c.EMAIL, pd.Series(None, index=by_id.index))
                    phone = by_id.get(c.PHONE, pd.Series(None, index=by_id.index))
                    fake = pd.Series(
                        [
                            quality_score(normalise_email(e), normalise_phone(p, region)) < 1.0
                            for e, p in zip(email, phone, strict=True)
                        ],
                        index=by_id.index,
                    )
                total = total + fake.astype(float).to_numpy() * rule.points
        out[f"{name}{POINTS_SUFFIX}"] = total.to_numpy(dtype=float)
    log.info("score plans %s for %d customers at %s", list(plans), len(out), as_of)
    return out


__all__ = [
    "ABANDONED_CART",
    "PlanRule",
    "ScorePlan",
    "compute_score_plans",
    "load_score_plans",
    "parse_score_plans",
]
