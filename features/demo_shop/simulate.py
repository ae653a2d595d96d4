"""Day-by-day simulation of one block of demo-shop customers, vectorised with numpy.

For customer ``i`` on day ``d`` (``alive`` from the day after creation):

- engagement ``a_i(d)`` (:func:`~features.demo_shop.params.activity`);
- browse sessions ``~ Poisson(lam_i * season(d) * a_i(d) * boost_i(d))``, each converting
  with probability ``q_i``; a non-converting session abandons a cart with probability
  ``abandon_prob``, which boosts the intensity of the following days;
- on campaign days, consenting customers are sent the campaign with the campaign's target
  share; they open with ``open_p * (open_floor + (1 - open_floor) * a)``, click with
  ``click_p * click_factor(interest in the campaign category)``, and a click starts a session
  that converts with ``min(1, q * email_conv_mult)``;
- every purchase of consumable ``j`` schedules one replenishment attempt on
  ``day + max(1, round(cycle_j * cycle_mult_i * J))``, ``J ~ LogNormal(0, jitter_sigma)``;
  the attempt fires (a purchase of ``j``) with probability ``rho_i * a_i(day)``, unless a
  newer purchase of ``j`` has replaced it.

Sessions are then expanded to contract events (page/product views, carts, purchases,
returns, email opens/clicks, signups).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as c
from features.demo_shop.catalogue import Catalogue
from features.demo_shop.params import NEVER, PARAMS, ShopParams, activity, boost, click_factor

# session kinds
BROWSE, ABANDON, BROWSE_BUY, EMAIL_VISIT, EMAIL_BUY, REPLENISH = range(6)
CHANNELS = ("web", "app", "email", "store")
EVENT_CODES = c.CORE_EVENT_TYPES
_E = {name: k for k, name in enumerate(EVENT_CODES)}
_US_PER_DAY = 86_400 * 1_000_000

EVENTS_SCHEMA = pa.schema(
    [
        (c.CUSTOMER_ID, pa.string()),
        (c.TS, pa.timestamp("us")),
        (c.EVENT_TYPE, pa.string()),
        (c.ITEM_ID, pa.string()),
        (c.QUANTITY, pa.float64()),
        (c.VALUE, pa.float64()),
        (c.CHANNEL, pa.string()),
        (c.SESSION_ID, pa.string()),
        (c.CAMPAIGN_ID, pa.string()),
        (c.ORDER_ID, pa.string()),
    ]
)
SENDS_SCHEMA = pa.schema(
    [
        (c.CUSTOMER_ID, pa.string()),
        (c.TS, pa.timestamp("us")),
        (c.CAMPAIGN_ID, pa.string()),
        (c.ITEM_ID, pa.string()),
        (c.PLACEMENT, pa.string()),
    ]
)
ABANDONS_SCHEMA = pa.schema([("customer_index", pa.int64()), ("day", pa.int32())])


@dataclass(frozen=True)
class Campaigns:
    """The email campaign calendar (same for every block).

    Attributes
    ----------
    day : ndarray of int
        Send day of each campaign.
    category : ndarray of int
        Featured category (drives click probability).
    share : ndarray of float
        Probability that a consenting customer is targeted.
    send_sec : ndarray of int
        Send time, seconds after midnight.
    """

    day: np.ndarray
    category: np.ndarray
    share: np.ndarray
    send_sec: np.ndarray

    def ids(self) -> list[str]:
        """Campaign ids ``K0001`` ... in calendar order."""
        return [f"K{k + 1:04d}" for k in range(len(self.day))]

    def to_frame(self) -> pd.DataFrame:
        """Return the calendar as a DataFrame (for ``truth/campaigns.parquet``)."""
        return pd.DataFrame(
            {
                "campaign_id": self.ids(),
                "day": self.day,
                "category": self.category,
                "share": self.share,
                "send_sec": self.send_sec,
            }
        )


def build_campaigns(
    rng: np.random.Generator, days: int, n_categories: int, params: ShopParams = PARAMS
) -> Campaigns:
    """Draw the campaign calendar: one campaign every ``campaign_every_days`` days."""
    day = np.arange(2, days, params.campaign_every_days, dtype=np.int64)
    n = len(day)
    return Campaigns(
        day=day,
        category=rng.integers(0, n_categories, n),
        share=rng.uniform(0.5, 0.9, n),
        send_sec=rng.integers(8 * 3600, 10 * 3600, n),
    )


@dataclass(frozen=True)
class BlockOutput:
    """Arrow tables produced by one block."""

    events: pa.Table
    sends: pa.Table
    abandons: pa.Table
    event_counts: dict[str, int]


class _Acc:
    """Append-only lists of numpy chunks, concatenated at the end."""

    def __init__(self, *names: str):
        self.parts: dict[str, list[np.ndarray]] = {n: [] for n in names}

    def add(self, **arrays: np.ndarray) -> None:
        for k, v in arrays.items():
            self.parts[k].append(np.asarray(v))

    def get(self, name: str, dtype: type = np.int64) -> np.ndarray:
        parts = self.parts[name]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def simulate_block(
    rng: np.random.Generator,
    block: int,
    first: int,
    hidden: dict[str, np.ndarray],
    cat: Catalogue,
    campaigns: Campaigns,
    start: date,
    days: int,
    params: ShopParams = PARAMS,
) -> BlockOutput:
    """Simulate ``days`` days for one block of customers and build its event tables.

    Parameters
    ----------
    rng : numpy.random.Generator
        The block's generator (from the block's own SeedSequence).
    block : int
        Block number (prefix of session and order ids).
    first : int
        Global 0-based index of the block's first customer.
    hidden : dict of ndarray
        Hidden parameters of the block's customers
        (:class:`~features.demo_shop.profiles.CustomerBlock`).
    cat : Catalogue
        The catalogue.
    campaigns : Campaigns
        The campaign calendar.
    start : date
        Day 0.
    days : int
        Number of simulated days.
    params : ShopParams
        Global behaviour constants.

    Returns
    -------
    BlockOutput
        Events sorted by customer_id then ts, sends, and abandoned-cart days.
    """
    from features.demo_shop.params import season
    from features.demo_shop.profiles import interests_of

    n = len(hidden["lam"])
    created_day = hidden["created_day"]
    act_start = np.maximum(created_day + 1, 0)
    lam, q, tau, t0 = hidden["lam"], hidden["q"], hidden["tau"], hidden["t0"].astype(float)
    rho, cmult = hidden["rho"], hidden["cycle_mult"]
    interests = interests_of(hidden)
    icum = np.cumsum(interests, axis=1)
    consent = hidden["consent_email"].astype(bool)
    seas = season(np.arange(days), start)
    cdf_before = cat.pool_cdf(False)
    cdf_after = cat.pool_cdf(True)
    cons_col = np.full(cat.n_items, -1, dtype=np.int64)
    cons_col[cat.consumable] = np.arange(int(cat.consumable.sum()))
    latest = np.full((n, int(cat.consumable.sum())), -1, dtype=np.int32)
    dur_col = np.full(cat.n_items, -1, dtype=np.int64)
    dur_col[~cat.consumable] = np.arange(int((~cat.consumable).sum()))
    owned = np.zeros((n, int((~cat.consumable).sum())), dtype=bool)
    last_ab = np.full(n, -float(NEVER))
    camp_of_day = dict(zip(campaigns.day.tolist(), range(len(campaigns.day)), strict=True))
    pending: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}

    sess = _Acc("cust", "day", "kind", "camp")
    lines = _Acc("sess", "item")
    mail = _Acc("cust", "camp", "open", "click", "sess")
    aband = _Acc("cust", "day")
    n_sess = 0

    def draw_items(cust: np.ndarray, day: int) -> np.ndarray:
        m = len(cust)
        u = rng.random(m)
        category = np.minimum((u[:, None] > icum[cust]).sum(axis=1), icum.shape[1] - 1)
        durable = rng.random(m) >= cat.cons_share[category]
        cdf = cdf_before if day < cat.discontinue_day else cdf_after
        target = 2 * category + durable + rng.random(m)
        return np.minimum(np.searchsorted(cdf, target, side="right"), cat.n_items - 1)

    for d in range(days):
        alive = act_start <= d
        a = np.where(alive, activity(d, t0, tau), 0.0)
        rate = lam * seas[d] * a * boost(d, last_ab, params)
        count = rng.poisson(rate)
        idx = np.flatnonzero(count)
        k = count[idx]
        conv = rng.binomial(k, q[idx])
        nab = rng.binomial(k - conv, params.abandon_prob)
        plain = k - conv - nab
        last_ab[idx[nab > 0]] = d
        aband.add(cust=idx[nab > 0], day=np.full(int((nab > 0).sum()), d))
        new_cust = [np.repeat(idx, plain), np.repeat(idx, nab), np.repeat(idx, conv)]
        new_kind = [np.full(int(plain.sum()), BROWSE), np.full(int(nab.sum()), ABANDON)]
        new_kind.append(np.full(int(conv.sum()), BROWSE_BUY))
        new_camp = [np.full(int(k.sum()), -1)]

        ci = camp_of_day.get(d)
        if ci is not None:
            target = np.flatnonzero(consent & alive & (rng.random(n) < campaigns.share[ci]))
            p_open = hidden["open_p"][target] * (
                params.open_floor + (1 - params.open_floor) * a[target]
            )
            opened = rng.random(len(target)) < p_open
            p_click = hidden["click_p"][target] * click_factor(
                interests[target, campaigns.category[ci]]
            )
            clicked = opened & (rng.random(len(target)) < np.minimum(p_click, 1.0))
            p_conv = np.minimum(q[target] * params.email_conv_mult, 1.0)
            bought = clicked & (rng.random(len(target)) < p_conv)
            ncl = int(clicked.sum())
            base = n_sess + sum(len(x) for x in new_cust)
            sess_of_mail = np.full(len(target), -1)
            sess_of_mail[clicked] = base + np.arange(ncl)
            mail.add(
                cust=target,
                camp=np.full(len(target), ci),
                open=opened,
                click=clicked,
                sess=sess_of_mail,
            )
            new_cust.append(target[clicked])
            new_kind.append(np.where(bought[clicked], EMAIL_BUY, EMAIL_VISIT))
            new_camp.append(np.full(ncl, ci))

        due = pending.pop(d, None)
        if due:
            pc_, pi_, pl_ = (np.concatenate(x) for x in zip(*due, strict=True))
            valid = latest[pc_, cons_col[pi_]] == pl_
            fire = valid & (rng.random(len(pc_)) < rho[pc_] * a[pc_])
            rep_cust, rep_item = pc_[fire], pi_[fire]
        else:
            rep_cust = rep_item = np.zeros(0, dtype=np.int64)
        new_cust.append(rep_cust)
        new_kind.append(np.full(len(rep_cust), REPLENISH))

        day_cust = np.concatenate(new_cust)
        day_kind = np.concatenate(new_kind)
        n_new = len(day_cust)
        new_camp.append(np.full(n_new - sum(len(x) for x in new_camp), -1))
        if n_new == 0:
            continue
        sid = n_sess + np.arange(n_new)
        buying = np.flatnonzero((day_kind == BROWSE_BUY) | (day_kind == EMAIL_BUY))
        k_items = 1 + rng.poisson(params.basket_extra_mean, len(buying))
        basket_sess = np.repeat(buying, k_items)
        basket_item = draw_items(day_cust[basket_sess], d)
        basket_sess, basket_item = _no_durable_twice(
            rng, basket_sess, basket_item, day_cust, owned, dur_col, cat, d, cdf_before, cdf_after
        )
        emptied = np.setdiff1d(buying, basket_sess)
        day_kind[emptied] = BROWSE  # every durable drawn is owned already: no purchase
        sess.add(cust=day_cust, day=np.full(n_new, d), kind=day_kind, camp=np.concatenate(new_camp))
        rep_pos = np.flatnonzero(day_kind == REPLENISH)
        all_sess = np.concatenate([basket_sess, rep_pos])
        all_item = np.concatenate([basket_item, rep_item])
        lines.add(sess=sid[all_sess], item=all_item)
        n_sess += n_new

        is_cons = cat.consumable[all_item]
        if is_cons.any():
            pc_ = day_cust[all_sess[is_cons]]
            pi_ = all_item[is_cons]
            key = np.unique(pc_ * cat.n_items + pi_)
            pc_, pi_ = key // cat.n_items, key % cat.n_items
            latest[pc_, cons_col[pi_]] = d
            jitter = rng.lognormal(0.0, params.jitter_sigma, len(pc_))
            gap = np.maximum(1, np.rint(cat.cycle[pi_] * cmult[pc_] * jitter)).astype(np.int64)
            due_day = d + gap
            for dd in np.unique(due_day[due_day < days]):
                sel = due_day == dd
                pending.setdefault(int(dd), []).append(
                    (pc_[sel], pi_[sel], np.full(int(sel.sum()), d, dtype=np.int32))
                )

    return _expand(
        rng,
        block,
        first,
        hidden,
        cat,
        campaigns,
        start,
        days,
        params,
        sess,
        lines,
        mail,
        aband,
        cdf_before,
        cdf_after,
        icum,
    )


def _no_durable_twice(
    rng: np.random.Generator,
    sess: np.ndarray,
    item: np.ndarray,
    day_cust: np.ndarray,
    owned: np.ndarray,
    dur_col: np.ndarray,
    cat: Catalogue,
    day: int,
    cdf_before: np.ndarray,
    cdf_after: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated lines and make sure nobody buys a durable twice; marks new ones owned.

    An owned durable is redrawn from the same durable pool (so consumable probabilities are
    unchanged) up to 8 times; a line whose durable is still owned is dropped.
    """
    cdf = cdf_before if day < cat.discontinue_day else cdf_after
    cust = day_cust[sess]
    for _ in range(8):
        dur = ~cat.consumable[item]
        bad = np.flatnonzero(dur & owned[cust, np.maximum(dur_col[item], 0)])
        if len(bad) == 0:
            break
        pool = 2 * cat.category[item[bad]] + 1
        redraw = np.searchsorted(cdf, pool + rng.random(len(bad)), side="right")
        item[bad] = np.minimum(redraw, cat.n_items - 1)
    dur = ~cat.consumable[item]
    keep = ~(dur & owned[cust, np.maximum(dur_col[item], 0)])
    # one line per (session, item); a durable at most once per customer and day
    key_s = np.where(keep, sess * cat.n_items + item, -1)
    key_c = np.where(keep & dur, cust * cat.n_items + item, -1)
    first_s = np.zeros(len(item), dtype=bool)
    first_s[np.unique(key_s, return_index=True)[1]] = True
    first_c = np.zeros(len(item), dtype=bool)
    first_c[np.unique(key_c, return_index=True)[1]] = True
    keep &= first_s & (first_c | ~dur)
    sess, item = sess[keep], item[keep]
    new_dur = ~cat.consumable[item]
    owned[day_cust[sess[new_dur]], dur_col[item[new_dur]]] = True
    return sess, item


def _expand(
    rng: np.random.Generator,
    block: int,
    first: int,
    hidden: dict[str, np.ndarray],
    cat: Catalogue,
    campaigns: Campaigns,
    start: date,
    days: int,
    params: ShopParams,
    sess: _Acc,
    lines: _Acc,
    mail: _Acc,
    aband: _Acc,
    cdf_before: np.ndarray,
    cdf_after: np.ndarray,
    icum: np.ndarray,
) -> BlockOutput:
    """Turn simulated sessions, lines and mails into contract event rows."""
    s_cust, s_day, s_kind = sess.get("cust"), sess.get("day"), sess.get("kind")
    l_sess, l_item = lines.get("sess"), lines.get("item")
    m_cust, m_camp, m_sess = mail.get("cust"), mail.get("camp"), mail.get("sess")
    m_open, m_click = mail.get("open", bool), mail.get("click", bool)
    n_s = len(s_cust)
    t_start = (
        np.datetime64(datetime(start.year, start.month, start.day), "us").astype(np.int64).item()
    )

    # channels and start times
    buying = (s_kind == BROWSE_BUY) | (s_kind == REPLENISH)
    store = buying & (rng.random(n_s) < hidden["store_p"][s_cust])
    app = rng.random(n_s) < hidden["app_p"][s_cust]
    is_mail = (s_kind == EMAIL_VISIT) | (s_kind == EMAIL_BUY)
    chan = np.where(store, 3, np.where(is_mail, 2, np.where(app, 1, 0)))
    hour = np.where(
        store,
        rng.uniform(9.0, 20.0, n_s),
        np.clip(rng.normal(19.0, 3.5, n_s), 0.1, 22.0),
    )
    start_sec = (hour * 3600).astype(np.int64)
    step = rng.integers(15, 120, n_s)

    # mails: opens and clicks (and the start of click sessions)
    m_day = campaigns.day[m_camp]
    open_sec = campaigns.send_sec[m_camp] + np.minimum(
        rng.exponential(3 * 3600, len(m_cust)).astype(np.int64), 10 * 3600
    )
    click_sec = open_sec + rng.integers(20, 1800, len(m_cust))
    has_sess = m_sess >= 0
    start_sec[m_sess[has_sess]] = click_sec[has_sess] + 5

    # per-session counts
    n_page = np.where(store, 0, (rng.random(n_s) < params.landing_page_prob).astype(np.int64))
    n_extra = np.where(
        store, 0, np.where(buying | is_mail, rng.poisson(0.15, n_s), 1 + rng.poisson(0.15, n_s))
    )
    n_extra = np.where(s_kind == ABANDON, np.maximum(n_extra, 1), n_extra)
    # every online session leaves at least one event
    n_extra = np.where(s_kind == EMAIL_VISIT, np.maximum(n_extra, 1 - n_page), n_extra)
    n_lines = np.bincount(l_sess, minlength=n_s)
    web_buy = ~store & ((s_kind == BROWSE_BUY) | (s_kind == EMAIL_BUY) | (s_kind == REPLENISH))
    remove = web_buy & (n_extra > 0) & (rng.random(n_s) < 0.12)

    qty_line = np.where(cat.consumable[l_item], 1 + rng.poisson(0.5, len(l_item)), 1).astype(float)
    price = cat.items[c.PRICE].to_numpy()

    cols: dict[str, list[np.ndarray]] = {
        k: []
        for k in (
            "cust",
            "ts",
            "etype",
            "item",
            "qty",
            "val",
            "chan",
            "sess",
            "camp",
            "order",
            "key",
        )
    }

    def emit(cust, ts, etype, item, qty, val, chan_, sess_, camp, order, key) -> None:  # noqa: ANN001
        m = len(cust)
        for name, v in (
            ("cust", cust),
            ("ts", ts),
            ("etype", np.broadcast_to(etype, m)),
            ("item", np.broadcast_to(item, m)),
            ("qty", np.broadcast_to(qty, m).astype(float)),
            ("val", np.broadcast_to(val, m).astype(float)),
            ("chan", np.broadcast_to(chan_, m)),
            ("sess", np.broadcast_to(sess_, m)),
            ("camp", np.broadcast_to(camp, m)),
            ("order", np.broadcast_to(order, m)),
            ("key", np.broadcast_to(key, m)),
        ):
            cols[name].append(np.asarray(v))

    def ts_of(sidx: np.ndarray, pos: np.ndarray) -> np.ndarray:
        sec = start_sec[sidx] + pos * step[sidx]
        return t_start + s_day[sidx] * _US_PER_DAY + sec * 1_000_000

    nan = np.nan
    # page views
    sp = np.repeat(np.arange(n_s), n_page)
    pos = np.arange(len(sp)) - np.repeat(np.cumsum(n_page) - n_page, n_page)
    emit(s_cust[sp], ts_of(sp, pos), _E[c.PAGE_VIEW], -1, nan, nan, chan[sp], sp, -1, -1, 0)

    # extra product views (items drawn from interests)
    se = np.repeat(np.arange(n_s), n_extra)
    extra_item = _draw(rng, s_cust[se], s_day[se], cat, icum, cdf_before, cdf_after)
    epos = np.arange(len(se)) - np.repeat(np.cumsum(n_extra) - n_extra, n_extra)
    first_extra = np.full(n_s, -1)
    first_extra[se[epos == 0]] = extra_item[epos == 0]
    base_v = n_page + n_lines
    emit(
        s_cust[se], ts_of(se, n_page[se] + n_lines[se] + epos), _E[c.PRODUCT_VIEW], extra_item,
        nan, nan, chan[se], se, -1, -1, 0,
    )  # fmt: skip

    # basket lines: view, add to cart, purchase (store: purchase only)
    order = np.argsort(l_sess, kind="stable")
    l_sess, l_item, qty_line = l_sess[order], l_item[order], qty_line[order]
    lpos = np.arange(len(l_sess)) - np.repeat(np.cumsum(n_lines) - n_lines, n_lines)
    web = ~store[l_sess]
    ws = l_sess[web]
    emit(
        s_cust[ws], ts_of(ws, n_page[ws] + lpos[web]), _E[c.PRODUCT_VIEW], l_item[web],
        nan, nan, chan[ws], ws, -1, -1, 0,
    )  # fmt: skip
    cart_pos = base_v + n_extra
    emit(
        s_cust[ws], ts_of(ws, cart_pos[ws] + lpos[web]), _E[c.ADD_TO_CART], l_item[web],
        qty_line[web], nan, chan[ws], ws, -1, -1, 0,
    )  # fmt: skip
    # abandoned carts and add-then-remove
    ab = np.flatnonzero((s_kind == ABANDON) | remove)
    emit(
        s_cust[ab], ts_of(ab, cart_pos[ab] + n_lines[ab]), _E[c.ADD_TO_CART], first_extra[ab],
        1.0, nan, chan[ab], ab, -1, -1, 0,
    )  # fmt: skip
    rm = np.flatnonzero(remove)
    emit(
        s_cust[rm], ts_of(rm, cart_pos[rm] + n_lines[rm] + 1), _E[c.REMOVE_FROM_CART],
        first_extra[rm], 1.0, nan, chan[rm], rm, -1, -1, 0,
    )  # fmt: skip
    buy_pos = np.where(store, 0, cart_pos + n_lines + 2)
    p_ts = ts_of(l_sess, buy_pos[l_sess])
    p_val = np.round(price[l_item] * qty_line, 2)
    emit(
        s_cust[l_sess], p_ts, _E[c.PURCHASE], l_item, qty_line, p_val, chan[l_sess], l_sess,
        -1, l_sess, lpos,
    )  # fmt: skip

    # returns
    r_p = np.where(
        cat.consumable[l_item], params.return_prob_consumable, params.return_prob_durable
    )
    ret = np.flatnonzero(rng.random(len(l_item)) < r_p)
    r_ts = p_ts[ret] + rng.integers(3 * 86_400, 30 * 86_400, len(ret)) * 1_000_000
    keep = r_ts < t_start + days * _US_PER_DAY
    ret, r_ts = ret[keep], r_ts[keep]
    emit(
        s_cust[l_sess[ret]], r_ts, _E[c.RETURN], l_item[ret], qty_line[ret], p_val[ret],
        chan[l_sess[ret]], -1, -1, l_sess[ret], 0,
    )  # fmt: skip

    # email opens and clicks
    op = np.flatnonzero(m_open)
    emit(
        m_cust[op], t_start + m_day[op] * _US_PER_DAY + open_sec[op] * 1_000_000,
        _E[c.EMAIL_OPEN], -1, nan, nan, 2, -1, m_camp[op], -1, 0,
    )  # fmt: skip
    cl = np.flatnonzero(m_click)
    emit(
        m_cust[cl], t_start + m_day[cl] * _US_PER_DAY + click_sec[cl] * 1_000_000,
        _E[c.EMAIL_CLICK], -1, nan, nan, 2, -1, m_camp[cl], -1, 0,
    )  # fmt: skip

    # signups
    cd = hidden["created_day"]
    su = np.flatnonzero(cd >= 0)
    su_ts = t_start + cd[su] * _US_PER_DAY + hidden["created_sec"][su] * 1_000_000
    su_chan = np.where(rng.random(len(su)) < hidden["app_p"][su], 1, 0)
    emit(su, su_ts, _E[c.SIGNUP], -1, nan, nan, su_chan, -1, -1, -1, 0)

    ev = {k: np.concatenate(v) for k, v in cols.items()}
    srt = np.lexsort((ev["key"], ev["etype"], ev["ts"], ev["cust"]))
    ev = {k: v[srt] for k, v in ev.items()}
    events = _events_table(ev, first, block, cat, campaigns)

    sends = _sends_table(m_cust, m_camp, campaigns, first, t_start)
    ab_cust, ab_day = aband.get("cust"), aband.get("day")
    abandons = pa.table(
        {"customer_index": ab_cust + first, "day": ab_day.astype(np.int32)},
        schema=ABANDONS_SCHEMA,
    )
    counts = np.bincount(ev["etype"], minlength=len(EVENT_CODES))
    return BlockOutput(
        events=events,
        sends=sends,
        abandons=abandons,
        event_counts={name: int(counts[k]) for k, name in enumerate(EVENT_CODES)},
    )


def _draw(
    rng: np.random.Generator,
    cust: np.ndarray,
    day: np.ndarray,
    cat: Catalogue,
    icum: np.ndarray,
    cdf_before: np.ndarray,
    cdf_after: np.ndarray,
) -> np.ndarray:
    """Draw one item per row from the customer's interests (viewed, not bought)."""
    m = len(cust)
    u = rng.random(m)
    category = np.minimum((u[:, None] > icum[cust]).sum(axis=1), icum.shape[1] - 1)
    durable = rng.random(m) >= cat.cons_share[category]
    target = 2 * category + durable + rng.random(m)
    before = np.searchsorted(cdf_before, target, side="right")
    after = np.searchsorted(cdf_after, target, side="right")
    return np.minimum(np.where(day < cat.discontinue_day, before, after), cat.n_items - 1)


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Format non-negative ints as ``<prefix><zero-padded>``; negative numbers become null."""
    num = pa.array(numbers, mask=numbers < 0)
    text = pc.utf8_lpad(pc.cast(num, pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), text, "")


def _take(names: list[str] | tuple[str, ...], codes: np.ndarray) -> pa.Array:
    """Map integer codes to strings; negative codes become null."""
    idx = pa.array(np.where(codes < 0, 0, codes), mask=codes < 0)
    return pa.array(list(names), pa.string()).take(idx)


def _events_table(
    ev: dict[str, np.ndarray], first: int, block: int, cat: Catalogue, campaigns: Campaigns
) -> pa.Table:
    sess = np.where(ev["sess"] >= 0, block * 10**9 + ev["sess"], -1)
    order = np.where(ev["order"] >= 0, block * 10**9 + ev["order"], -1)
    qty = ev["qty"]
    val = ev["val"]
    arrays = [
        _ids("C", ev["cust"] + first + 1, 7),
        pa.array(ev["ts"], pa.timestamp("us")),
        _take(list(EVENT_CODES), ev["etype"]),
        _take(cat.items[c.ITEM_ID].tolist(), ev["item"]),
        pa.array(qty, pa.float64(), mask=np.isnan(qty)),
        pa.array(val, pa.float64(), mask=np.isnan(val)),
        _take(CHANNELS, ev["chan"]),
        _ids("S", sess, 12),
        _take(campaigns.ids(), ev["camp"]),
        _ids("O", order, 12),
    ]
    return pa.Table.from_arrays(arrays, schema=EVENTS_SCHEMA)


def _sends_table(
    m_cust: np.ndarray, m_camp: np.ndarray, campaigns: Campaigns, first: int, t_start: int
) -> pa.Table:
    order = np.lexsort((m_camp, m_cust))
    m_cust, m_camp = m_cust[order], m_camp[order]
    ts = t_start + campaigns.day[m_camp] * _US_PER_DAY + campaigns.send_sec[m_camp] * 1_000_000
    n = len(m_cust)
    return pa.Table.from_arrays(
        [
            _ids("C", m_cust + first + 1, 7),
            pa.array(ts, pa.timestamp("us")),
            _take(campaigns.ids(), m_camp),
            pa.nulls(n, pa.string()),
            pa.array(np.full(n, "newsletter"), pa.string()),
        ],
        schema=SENDS_SCHEMA,
    )
