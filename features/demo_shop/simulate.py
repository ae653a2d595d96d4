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
returns, email opens/clicks, signups) by :func:`features.demo_shop.events.expand_sessions`;
the campaign calendar is :mod:`features.demo_shop.campaigns`.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from features.demo_shop.campaigns import Campaigns
from features.demo_shop.catalogue import Catalogue
from features.demo_shop.events import (
    ABANDON,
    BROWSE,
    BROWSE_BUY,
    EMAIL_BUY,
    EMAIL_VISIT,
    REPLENISH,
    Acc,
    BlockOutput,
    expand_sessions,
)
from features.demo_shop.params import NEVER, PARAMS, ShopParams, activity, boost, click_factor


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

    sess = Acc("cust", "day", "kind", "camp")
    lines = Acc("sess", "item")
    mail = Acc("cust", "camp", "open", "click", "sess")
    aband = Acc("cust", "day")
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

    return expand_sessions(
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
