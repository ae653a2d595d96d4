"""Expansion of simulated demo-shop sessions into contract event rows (Arrow tables).

The day-by-day simulation (:mod:`features.demo_shop.simulate`) records sessions (customer,
day, kind, campaign), basket lines (session, item) and mails (customer, campaign, opened,
clicked, click session) in :class:`Acc` accumulators; :func:`expand_sessions` turns them
into page/product views, carts, purchases, returns, email opens/clicks and signups, sorted
by customer then timestamp, plus the sends and abandoned-cart tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features import contract as c
from features.demo_shop.campaigns import Campaigns
from features.demo_shop.catalogue import Catalogue
from features.demo_shop.params import ShopParams

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
class BlockOutput:
    """Arrow tables produced by one block."""

    events: pa.Table
    sends: pa.Table
    abandons: pa.Table
    event_counts: dict[str, int]


class Acc:
    """Append-only lists of numpy chunks, concatenated at the end."""

    def __init__(self, *names: str):
        self.parts: dict[str, list[np.ndarray]] = {n: [] for n in names}

    def add(self, **arrays: np.ndarray) -> None:
        """Append one chunk per named array."""
        for k, v in arrays.items():
            self.parts[k].append(np.asarray(v))

    def get(self, name: str, dtype: type = np.int64) -> np.ndarray:
        """Return the chunks of ``name`` concatenated as ``dtype`` (empty when none)."""
        parts = self.parts[name]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def expand_sessions(
    rng: np.random.Generator,
    block: int,
    first: int,
    hidden: dict[str, np.ndarray],
    cat: Catalogue,
    campaigns: Campaigns,
    start: date,
    days: int,
    params: ShopParams,
    sess: Acc,
    lines: Acc,
    mail: Acc,
    aband: Acc,
    cdf_before: np.ndarray,
    cdf_after: np.ndarray,
    icum: np.ndarray,
) -> BlockOutput:
    """Turn simulated sessions, lines and mails into contract event rows.

    Parameters
    ----------
    rng : numpy.random.Generator
        The block's generator, continued from the simulation (channels, times, views).
    block, first, hidden, cat, campaigns, start, days, params :
        As for :func:`features.demo_shop.simulate.simulate_block`.
    sess : Acc
        ``cust`` (block-local index), ``day``, ``kind`` (session kind), ``camp`` (campaign
        index or -1) per session, in session-id order.
    lines : Acc
        ``sess`` (session id), ``item`` (item index) per basket line.
    mail : Acc
        ``cust``, ``camp``, ``open``, ``click``, ``sess`` (click session or -1) per send.
    aband : Acc
        ``cust``, ``day`` per abandoned cart.
    cdf_before, cdf_after : ndarray
        Item-pool CDFs before and after the discontinuation day.
    icum : ndarray of shape (n, categories)
        Cumulative interests of the block's customers.

    Returns
    -------
    BlockOutput
        Events sorted by customer_id then ts, sends, and abandoned-cart days.
    """
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
