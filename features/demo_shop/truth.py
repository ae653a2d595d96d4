"""The oracle: true probabilities computed from a demo shop's hidden state.

Everything here reads ``<shop>/truth/`` (hidden parameters) plus the observable history
strictly before the cutoff, and integrates the very intensities the simulator
(:mod:`features.demo_shop.simulate`) drew from. Features and models must never call these;
they exist to measure how close a model gets to the best possible score.

State at a cutoff ``T`` (midnight UTC, day index ``t``): each customer's hidden parameters;
whether they already disengaged (``t0 < t``, then ``t0`` is known) or not (then
``t0 - t ~ Geometric(hazard)``, memoryless, integrated over exactly); the latest abandoned
cart before ``t``; for each consumable bought before ``t`` the day of its latest purchase,
with the pending replenishment attempt's day integrated over its posterior given that it
has not fired by ``t``; the campaign calendar (sends are drawn with the known target share).

Approximation (documented in ``docs/demo-shop.md``): events that happen inside the horizon
do not feed back — a cart abandoned inside the horizon does not raise the intensity of the
following horizon days in the oracle (the simulator does). For "any purchase" and "next
purchase of item j" nothing else feeds back before the purchase being predicted.

Each customer's probability depends only on that customer's own state, so
:func:`oracle_purchase_probability` and :func:`oracle_churn_probability` take
``customer_ids`` to compute a subset (the hidden table and the purchases are filtered in
DuckDB, the values equal the full oracle's rows) and ``events`` to read the purchases from
a table in memory (e.g. a customer sample's) instead of scanning ``<shop>/events/``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.special import ndtr

from features import contract as c
from features.demo_shop.params import GENERATOR, ShopParams, click_factor, season
from features.demo_shop.profiles import interests_of
from klantbeeld.errors import ConfigError


@dataclass(frozen=True)
class _Truth:
    params: ShopParams
    start: date
    days: int
    hidden: pd.DataFrame
    items: pd.DataFrame
    campaigns: pd.DataFrame
    root: Path


def _load(shop_dir: Path) -> _Truth:
    root = Path(shop_dir)
    try:
        meta = json.loads((root / "truth" / "params.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"shop_dir={root} is not a demo shop (no truth/params.json)") from exc
    if meta.get("generator") != GENERATOR:
        raise ConfigError(f"shop_dir={root} was not written by the demo shop generator")
    return _Truth(
        params=ShopParams(**meta["params"]),
        start=date.fromisoformat(meta["start"]),
        days=int(meta["days"]),
        hidden=pd.read_parquet(root / "truth" / "customers.parquet"),
        items=pd.read_parquet(root / "truth" / "items.parquet"),
        campaigns=pd.read_parquet(root / "truth" / "campaigns.parquet"),
        root=root,
    )


def _day(truth: _Truth, as_of: datetime | date) -> int:
    """Day index of the cutoff (as_of truncated to midnight UTC)."""
    as_day = as_of.date() if isinstance(as_of, datetime) else as_of
    t = (as_day - truth.start).days
    if t < 1:
        raise ValueError(f"as_of must be after the shop's first day {truth.start}, got {as_of}")
    return t


@dataclass
class _State:
    """Per-customer state at day t, for customers created before t."""

    cust: pd.DataFrame  # hidden rows of the population (positional order = customer index)
    amp: np.ndarray  # activity level at t (1 when still engaged)
    engaged: np.ndarray  # True when t0 >= t (future t0 is random)
    last_ab: np.ndarray


def _state(truth: _Truth, t: int, customer_ids: Sequence[str] | None = None) -> _State:
    """State at day t of the customers created before t (only ``customer_ids`` when given)."""
    hidden = truth.hidden
    keep = hidden["created_day"].to_numpy() < t
    if customer_ids is not None:
        keep &= hidden[c.CUSTOMER_ID].isin(np.asarray(customer_ids, dtype=object)).to_numpy()
    cust = hidden[keep].reset_index(drop=True)
    t0 = cust["t0"].to_numpy().astype(float)
    tau = cust["tau"].to_numpy()
    engaged = t0 >= t
    amp = np.where(engaged, 1.0, np.exp(-(t - t0) / tau))
    index = _index(cust[c.CUSTOMER_ID])
    query = (
        f"SELECT customer_index, max(day) AS day FROM read_parquet('{_q(truth, 'abandons')}') "
        f"WHERE day < {t}"
    )
    if customer_ids is None:
        ab = duckdb.execute(f"{query} GROUP BY 1").df()
    else:
        with duckdb.connect() as con:
            con.register("_kb_index", pa.table({"customer_index": index}))
            ab = con.execute(
                f"{query} AND customer_index IN (SELECT customer_index FROM _kb_index) GROUP BY 1"
            ).df()
    last_ab = np.full(len(cust), -1e9)
    pos = np.searchsorted(index, ab["customer_index"].to_numpy())
    ok = (pos < len(index)) & (index[np.minimum(pos, len(index) - 1)] == ab["customer_index"])
    last_ab[pos[ok]] = ab["day"].to_numpy()[ok]
    return _State(cust=cust, amp=amp, engaged=engaged, last_ab=last_ab)


def _q(truth: _Truth, name: str) -> str:
    return str(truth.root / "truth" / f"{name}.parquet").replace("'", "''")


def _index(customer_id: pd.Series) -> np.ndarray:
    return customer_id.str.slice(1).astype(np.int64).to_numpy() - 1


def _scenarios(state: _State, h: int) -> np.ndarray:
    """Weights (n, h + 1) of the disengagement scenarios k = t0 - t (k = h: none before t+h)."""
    hz = state.cust["hazard"].to_numpy()[:, None]
    k = np.arange(h + 1)[None, :]
    w = np.where(k < h, (1 - hz) ** k * hz, (1 - hz) ** h)
    return np.where(state.engaged[:, None], w, (k == 0).astype(float))


def _linear_by_scenario(w: np.ndarray, tau: np.ndarray, h: int) -> np.ndarray:
    """For every scenario k = 0..h, ``sum_d w[:, d] * a_k(d) / amp`` with d = 0..h-1 relative.

    ``a_k(d) = 1`` for ``d <= k`` and ``exp(-(d - k)/tau)`` after, so the sum splits into a
    prefix sum and a discounted suffix sum (computed once).
    """
    n = w.shape[0]
    d = np.arange(h)[None, :]
    prefix = np.concatenate([np.zeros((n, 1)), np.cumsum(w, axis=1)], axis=1)  # sum d < k
    disc = w * np.exp(-d / tau[:, None])
    suffix = np.concatenate(
        [np.cumsum(disc[:, ::-1], axis=1)[:, ::-1], np.zeros((n, 1))], axis=1
    )  # sum d >= k
    k = np.arange(h + 1)
    j = np.minimum(k + 1, h)  # days d <= k count fully: prefix over d < k + 1
    full = prefix[:, j]
    rest = np.exp(k[None, :] / tau[:, None]) * suffix[:, j]
    return full + rest


def _browse_weights(truth: _Truth, state: _State, t: int, h: int) -> np.ndarray:
    """Per-day converting-session intensity at full engagement, shape (n, h)."""
    cu = state.cust
    d = np.arange(t, t + h)
    seas = season(d, truth.start)
    gap = d[None, :] - state.last_ab[:, None]
    bst = 1.0 + truth.params.cart_boost * np.exp(-gap / truth.params.cart_boost_days)
    return (cu["lam"].to_numpy() * cu["q"].to_numpy())[:, None] * seas[None, :] * bst


def _email_terms(truth: _Truth, state: _State, t: int, h: int) -> list[tuple[int, np.ndarray]]:
    """(relative day, per-customer probability factor) of each campaign in [t, t+h).

    The probability that the campaign leads to a purchase session is
    ``factor * (open_floor + (1 - open_floor) * a(day))``.
    """
    cu = state.cust
    p = truth.params
    camp = truth.campaigns
    sel = camp[(camp["day"] >= t) & (camp["day"] < t + h)]
    interests = interests_of(cu)
    consent = cu["consent_email"].to_numpy().astype(float)
    p_conv = np.minimum(cu["q"].to_numpy() * p.email_conv_mult, 1.0)
    out = []
    for day, cat, share in zip(sel["day"], sel["category"], sel["share"], strict=True):
        p_click = np.minimum(cu["click_p"].to_numpy() * click_factor(interests[:, cat]), 1.0)
        out.append((int(day) - t, share * consent * cu["open_p"].to_numpy() * p_click * p_conv))
    return out


def _chain_pmf(g: np.ndarray, cycle: np.ndarray, sigma: float) -> np.ndarray:
    """P(gap = g days), g >= 1, for gap = max(1, rint(cycle * LogNormal(0, sigma)))."""
    g = np.asarray(g, dtype=float)
    lc = np.log(cycle)
    upper = ndtr((np.log(g + 0.5) - lc) / sigma)
    lower = np.where(g <= 1, 0.0, ndtr((np.log(np.maximum(g - 0.5, 1e-9)) - lc) / sigma))
    return np.where(g >= 1, upper - lower, 0.0)


@dataclass
class _Chains:
    rows: np.ndarray  # position of the customer in state.cust
    item_id: np.ndarray
    last: np.ndarray  # day of latest purchase before t
    cycle: np.ndarray  # median scheduled gap, days
    z: np.ndarray  # posterior normaliser (alive + dead mass)


def _pairs(
    truth: _Truth, state: _State, t: int, *, subset: bool = False, events: Any = None
) -> pd.DataFrame:
    """(row, item_id, last purchase day) for consumables bought before t.

    Reads the purchases of ``<shop>/events/``, or of ``events`` (a table DuckDB can
    register) when given; with ``subset`` only those of the customers in ``state``
    (filtered inside the query).
    """
    cut = datetime(truth.start.year, truth.start.month, truth.start.day) + timedelta(days=t)
    with duckdb.connect() as con:
        if events is None:
            ev = str(truth.root / c.EVENTS).replace("'", "''")
            source = f"read_parquet('{ev}/*.parquet')"
        else:
            con.register("_kb_events", events)
            source = "_kb_events"
        where = f"{c.EVENT_TYPE} = '{c.PURCHASE}' AND {c.TS} < TIMESTAMP '{cut.isoformat(sep=' ')}'"
        if subset:
            ids = state.cust[c.CUSTOMER_ID].to_numpy(dtype=object)
            con.register("_kb_ids", pa.table({c.CUSTOMER_ID: pa.array(ids, type=pa.string())}))
            where += f" AND {c.CUSTOMER_ID} IN (SELECT {c.CUSTOMER_ID} FROM _kb_ids)"
        last = con.execute(
            f"SELECT {c.CUSTOMER_ID} AS customer_id, {c.ITEM_ID} AS item_id, max({c.TS}) AS ts "
            f"FROM {source} WHERE {where} GROUP BY 1, 2"
        ).df()
    items = truth.items[truth.items["consumable"]]
    keep = [c.ITEM_ID, "cycle_days", "category_index", "popularity"]
    last = last.merge(items[keep], on=c.ITEM_ID)
    start = pd.Timestamp(truth.start)
    last["last"] = ((last["ts"] - start) // pd.Timedelta(days=1)).astype(np.int64)
    pos = pd.Series(np.arange(len(state.cust)), index=state.cust[c.CUSTOMER_ID].to_numpy())
    last["row"] = pos.reindex(last[c.CUSTOMER_ID].to_numpy()).to_numpy()
    last = last.dropna(subset=["row"])
    last["row"] = last["row"].astype(np.int64)
    return last.sort_values(["row", c.ITEM_ID], kind="stable").reset_index(drop=True)


def _chains(truth: _Truth, state: _State, pairs: pd.DataFrame, t: int) -> _Chains:
    """Posterior normaliser of each pending replenishment attempt at day t."""
    rows = pairs["row"].to_numpy()
    cu = state.cust
    cycle = pairs["cycle_days"].to_numpy() * cu["cycle_mult"].to_numpy()[rows]
    last = pairs["last"].to_numpy()
    sigma = truth.params.jitter_sigma
    rho = cu["rho"].to_numpy()[rows]
    t0 = cu["t0"].to_numpy().astype(float)[rows]
    tau = cu["tau"].to_numpy()[rows]
    elapsed = t - 1 - last  # days L+1 .. t-1 already passed
    # each attempt's sum stops at its own bound (6 sigma above its cycle), so its value
    # does not depend on which other customers are computed with it
    reach = np.minimum(np.ceil(cycle * np.exp(6 * sigma)) + 2, elapsed)
    dead = np.zeros(len(rows))
    for g in range(1, int(reach.max(initial=0)) + 1):
        m = g <= reach
        r = last[m] + g
        a_past = np.exp(-np.maximum(r - t0[m], 0) / tau[m])
        dead[m] += _chain_pmf(np.full(m.sum(), g), cycle[m], sigma) * (1 - rho[m] * a_past)
    alive = 1.0 - _lognormal_cdf_gap(elapsed, cycle, sigma)
    return _Chains(rows, pairs[c.ITEM_ID].to_numpy(), last, cycle, dead + alive)


def _lognormal_cdf_gap(g: np.ndarray, cycle: np.ndarray, sigma: float) -> np.ndarray:
    """P(gap <= g) for the rounded log-normal gap (0 for g < 1)."""
    g = np.asarray(g, dtype=float)
    return np.where(g >= 1, ndtr((np.log(np.maximum(g, 1) + 0.5) - np.log(cycle)) / sigma), 0.0)


def _chain_weights(ch: _Chains, state: _State, t: int, h: int, sigma: float) -> np.ndarray:
    """Per-day probability (at full engagement) that the attempt fires, shape (pairs, h)."""
    rho = state.cust["rho"].to_numpy()[ch.rows]
    g = (t + np.arange(h))[None, :] - ch.last[:, None]
    pmf = _chain_pmf(g, ch.cycle[:, None], sigma)
    return pmf * rho[:, None] / np.maximum(ch.z, 1e-300)[:, None]


def _no_purchase_probability(
    truth: _Truth,
    t: int,
    h: int,
    customer_ids: Sequence[str] | None = None,
    events: Any = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    state = _state(truth, t, customer_ids)
    n = len(state.cust)
    tau = state.cust["tau"].to_numpy()
    weights = _scenarios(state, h)
    log_surv = -state.amp[:, None] * _linear_by_scenario(
        _browse_weights(truth, state, t, h), tau, h
    )
    floor = truth.params.open_floor
    k = np.arange(h + 1)[None, :]
    for rel, factor in _email_terms(truth, state, t, h):
        a = state.amp[:, None] * np.exp(-np.maximum(rel - k, 0) / tau[:, None])
        log_surv += np.log1p(-np.minimum(factor[:, None] * (floor + (1 - floor) * a), 1.0))
    pairs = _pairs(truth, state, t, subset=customer_ids is not None, events=events)
    if len(pairs):
        ch = _chains(truth, state, pairs, t)
        fire = state.amp[ch.rows, None] * _linear_by_scenario(
            _chain_weights(ch, state, t, h, truth.params.jitter_sigma), tau[ch.rows], h
        )
        logs = np.log1p(-np.minimum(fire, 1.0 - 1e-12))
        acc = np.zeros((n, h + 1))
        np.add.at(acc, ch.rows, logs)
        log_surv += acc
    p_none = (weights * np.exp(log_surv)).sum(axis=1)
    return state.cust, np.clip(p_none, 0.0, 1.0)


def _oracle_no_purchase(
    shop_dir: Path,
    as_of: datetime,
    horizon_days: int,
    customer_ids: Sequence[str] | None,
    events: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Customer ids and their probability of no purchase in (T, T+H] (the two public
    oracles' shared body)."""
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be >= 1, got {horizon_days}")
    truth = _load(shop_dir)
    cust, p_none = _no_purchase_probability(
        truth, _day(truth, as_of), horizon_days, customer_ids, events
    )
    return cust[c.CUSTOMER_ID].to_numpy(), p_none


def oracle_purchase_probability(
    shop_dir: Path,
    as_of: datetime,
    horizon_days: int,
    *,
    customer_ids: Sequence[str] | None = None,
    events: Any = None,
) -> pd.DataFrame:
    """True probability that each customer makes at least one purchase in (T, T+H].

    Parameters
    ----------
    shop_dir : Path
        A folder written by :func:`~features.demo_shop.generate_demo_shop`.
    as_of : datetime or date
        Cutoff T, naive UTC; truncated to midnight.
    horizon_days : int
        Horizon H in days (>= 1).
    customer_ids : sequence of str, optional
        Compute only these customers (ids that are unknown or created on or after T are
        absent from the result). Each customer's probability depends only on their own
        state, so the rows equal the full oracle's.
    events : pyarrow.Table or pandas.DataFrame, optional
        The observable events to read the purchases from instead of
        ``<shop_dir>/events/`` (columns ``customer_id``, ``item_id``, ``ts``,
        ``event_type``; other columns are ignored). It must hold every purchase before T
        of the customers computed, e.g. a customer sample's events with
        ``customer_ids`` inside the sample; reading it instead of the folder saves the
        scan of the whole shop's events.

    Returns
    -------
    pandas.DataFrame
        ``customer_id``, ``p_purchase`` (probability) for every customer created before T
        (and in ``customer_ids`` when given), ordered by customer_id.
    """
    ids, p_none = _oracle_no_purchase(shop_dir, as_of, horizon_days, customer_ids, events)
    return pd.DataFrame({c.CUSTOMER_ID: ids, "p_purchase": 1 - p_none})


def oracle_churn_probability(
    shop_dir: Path,
    as_of: datetime,
    horizon_days: int = 90,
    *,
    customer_ids: Sequence[str] | None = None,
    events: Any = None,
) -> pd.DataFrame:
    """True probability that each customer makes no purchase in (T, T+H].

    Parameters (``customer_ids`` and ``events`` included) and ordering as
    :func:`oracle_purchase_probability`; returns columns ``customer_id``, ``p_churn``
    (probability).
    """
    ids, p_none = _oracle_no_purchase(shop_dir, as_of, horizon_days, customer_ids, events)
    return pd.DataFrame({c.CUSTOMER_ID: ids, "p_churn": p_none})


def true_repurchase_cycles(shop_dir: Path) -> pd.DataFrame:
    """True replenishment cycle of every (customer, consumable) pair bought in the shop.

    Returns
    -------
    pandas.DataFrame
        ``customer_id``, ``item_id``, ``cycle_days`` (median of the scheduled gap between
        two purchases of the item, days = item median cycle x customer multiplier) and
        ``mean_cycle_days`` (its mean, ``cycle_days * exp(sigma^2 / 2)``). The observed gap
        is shorter when the item is also bought in an ordinary session first, and much
        longer when the customer lets the replenishment lapse.
    """
    truth = _load(shop_dir)
    ev = str(truth.root / c.EVENTS).replace("'", "''")
    pairs = duckdb.execute(
        f"SELECT DISTINCT {c.CUSTOMER_ID} AS customer_id, {c.ITEM_ID} AS item_id "
        f"FROM read_parquet('{ev}/*.parquet') WHERE {c.EVENT_TYPE} = '{c.PURCHASE}'"
    ).df()
    items = truth.items[truth.items["consumable"]][[c.ITEM_ID, "cycle_days"]]
    pairs = pairs.merge(items, on=c.ITEM_ID).merge(
        truth.hidden[[c.CUSTOMER_ID, "cycle_mult"]], on=c.CUSTOMER_ID
    )
    pairs["cycle_days"] = pairs["cycle_days"] * pairs["cycle_mult"]
    pairs["mean_cycle_days"] = pairs["cycle_days"] * np.exp(truth.params.jitter_sigma**2 / 2)
    out = pairs[[c.CUSTOMER_ID, c.ITEM_ID, "cycle_days", "mean_cycle_days"]]
    return out.sort_values([c.CUSTOMER_ID, c.ITEM_ID], kind="stable").reset_index(drop=True)


def oracle_repurchase_distribution(
    shop_dir: Path, as_of: datetime, weeks: int = 12
) -> pd.DataFrame:
    """True distribution of the week of the next purchase of each consumable bought before T.

    Parameters
    ----------
    shop_dir : Path
        A demo shop folder.
    as_of : datetime or date
        Cutoff T (truncated to midnight UTC).
    weeks : int, default 12
        Number of weekly bins after T.

    Returns
    -------
    pandas.DataFrame
        One row per (customer, consumable item) with a purchase before T: ``customer_id``,
        ``item_id``, ``p_week_1`` .. ``p_week_<weeks>`` (probability that the next
        purchase of the item falls in days ``(T + 7(w-1), T + 7w]``), ``p_none`` (no purchase
        within ``7 * weeks`` days) and ``expected_days`` (median days from T to the next
        purchase; ``inf`` when ``p_none > 0.5``).
    """
    if weeks < 1:
        raise ValueError(f"weeks must be >= 1, got {weeks}")
    truth = _load(shop_dir)
    t = _day(truth, as_of)
    h = 7 * weeks
    state = _state(truth, t)
    pairs = _pairs(truth, state, t)
    cols = [f"p_week_{w}" for w in range(1, weeks + 1)]
    if pairs.empty:
        return pd.DataFrame(columns=[c.CUSTOMER_ID, c.ITEM_ID, *cols, "p_none", "expected_days"])
    ch = _chains(truth, state, pairs, t)
    rows = ch.rows
    cu = state.cust
    tau = cu["tau"].to_numpy()[rows]
    amp = state.amp[rows]
    weights = _scenarios(state, h)[rows]

    # probability that one purchase session includes the item: 1 - (1 - pi) e^{-m pi}
    item_pop = pairs["popularity"].to_numpy()
    cat_idx = pairs["category_index"].to_numpy()
    cons = truth.items[truth.items["consumable"]]
    pool_total = cons.groupby("category_index")["popularity"].sum()
    share = truth.items.groupby("category_index")["cons_share"].first()
    interests = interests_of(cu)[rows, cat_idx]
    pool = pool_total.reindex(cat_idx).to_numpy()
    pi = interests * share.reindex(cat_idx).to_numpy() * item_pop / pool
    in_basket = 1 - (1 - pi) * np.exp(-truth.params.basket_extra_mean * pi)

    browse = _browse_weights(truth, state, t, h)[rows] * in_basket[:, None]
    chain = _chain_weights(ch, state, t, h, truth.params.jitter_sigma)
    email = _email_terms(truth, state, t, h)
    floor = truth.params.open_floor
    surv = np.zeros((len(rows), h))  # mixture of P(no purchase of the item by end of day d)
    d = np.arange(h)[None, :]
    for k in range(h + 1):
        a = amp[:, None] * np.exp(-np.maximum(d - k, 0) / tau[:, None])
        log_s = -np.cumsum(browse * a, axis=1)
        fired = np.cumsum(chain * a, axis=1)
        log_s += np.log1p(-np.minimum(fired, 1.0 - 1e-12))
        for rel, factor in email:
            p = factor[rows] * in_basket * (floor + (1 - floor) * a[:, rel])
            log_s[:, rel:] += np.log1p(-np.minimum(p, 1.0))[:, None]
        surv += weights[:, k, None] * np.exp(log_s)
    ends = surv[:, 6::7]
    before = np.concatenate([np.ones((len(rows), 1)), ends[:, :-1]], axis=1)
    out = pd.DataFrame({c.CUSTOMER_ID: cu[c.CUSTOMER_ID].to_numpy()[rows], c.ITEM_ID: ch.item_id})
    probs = np.clip(before - ends, 0.0, 1.0)
    for w, name in enumerate(cols):
        out[name] = probs[:, w]
    out["p_none"] = np.clip(ends[:, -1], 0.0, 1.0)
    # median: first day whose end-of-day survival drops to <= 0.5, linearly interpolated
    below = surv <= 0.5
    first = np.where(below.any(axis=1), below.argmax(axis=1), -1)
    s_prev = np.where(first > 0, surv[np.arange(len(rows)), np.maximum(first - 1, 0)], 1.0)
    s_at = surv[np.arange(len(rows)), np.maximum(first, 0)]
    frac = np.where(s_prev > s_at, (s_prev - 0.5) / np.maximum(s_prev - s_at, 1e-12), 1.0)
    out["expected_days"] = np.where(first >= 0, first + frac, np.inf)
    return out
