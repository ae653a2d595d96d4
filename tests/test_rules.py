"""Business rules: exact outcomes on a tiny shop whose right answers are known by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from serving.content_blocks import best_content_block
from serving.context import RecContext
from serving.next_best_offer import recommend_for
from serving.placements import Placement, PriceBand, PurchasedRule, Rules, load_placements
from serving.rules import apply_rules, candidate_block, cap_per_group, keep_not_purchased
from serving.state import SQLiteStateStore

NOW = datetime(2026, 3, 1, 12, 0)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


ITEMS = pd.DataFrame(
    {
        "item_id": [
            "pram",
            "bib",
            "flour",
            "sugar",
            "mixer",
            "g5",
            "g15",
            "g40",
            "g25",
            "toy",
            "old",
        ],
        "title": [
            "Pram",
            "Bib",
            "Flour",
            "Sugar",
            "Mixer",
            "Card",
            "Mug",
            "Vase",
            "Book",
            "Doll",
            "Top",
        ],
        "category": ["baby", "baby", "baking", "baking", "kitchen"]
        + ["gifts"] * 4
        + ["toys", "toys"],
        "price": [250.0, 4.0, 2.5, 1.5, 80.0, 5.0, 15.0, 40.0, 25.0, 20.0, 9.0],
        "url": [f"https://shop.example/p/{i}" for i in range(11)],
        "image_url": [f"https://img.example/{i}.jpg" for i in range(11)],
        "active": [True] * 10 + [False],
        "durable": [True, False, False, False, True] + [False] * 6,
        "repurchasable": [False, False, True, True] + [False] * 7,
    }
)
CUSTOMERS = pd.DataFrame(
    {
        "customer_id": ["ann", "bob", "cas", "dee", "eve", "fay", "new", "p1", "p2", "p3"],
        "consent_email": [True, True, True, False, True, True, True, True, True, True],
        "consent_ads": [False] * 10,
    }
)


def _events() -> pd.DataFrame:
    rows = [
        # ann bought the pram 400 days ago (durable) and a bib 400 days ago (ordinary item).
        ("ann", ago(400), "purchase", "pram"),
        ("ann", ago(400), "purchase", "bib"),
        # bob buys flour every 30 days (own cycle 30, 2 gaps); last purchase 15 days ago.
        ("bob", ago(75), "purchase", "flour"),
        ("bob", ago(45), "purchase", "flour"),
        ("bob", ago(15), "purchase", "flour"),
        # cas buys flour every 10 days (3 gaps) -> item median cycle = median of the own cycles
        # of the customers with 2+ orders = median(bob 30, cas 10) = 20.
        ("cas", ago(50), "purchase", "flour"),
        ("cas", ago(40), "purchase", "flour"),
        ("cas", ago(30), "purchase", "flour"),
        ("cas", ago(20), "purchase", "flour"),
        # eve bought flour once, 15 days ago: no own cycle -> item cycle 20 days.
        ("eve", ago(15), "purchase", "flour"),
        # dee looks at baking a lot (no consent though).
        ("dee", ago(5), "product_view", "sugar"),
        # fay: mixer in cart 1 day ago (open); g15 added 2 days ago, then bought -> closed.
        ("fay", ago(1), "add_to_cart", "mixer"),
        ("fay", ago(2), "add_to_cart", "g15"),
        ("fay", ago(1.5), "purchase", "g15"),
        # popularity in the last 30 days (distinct buyers): flour 3 (bob, cas at 20 days,
        # eve), g5 3, toy 2, g15 1 (fay), g40 1.
        ("p1", ago(3), "purchase", "g5"),
        ("p2", ago(3), "purchase", "g5"),
        ("p3", ago(3), "purchase", "g5"),
        ("p1", ago(4), "purchase", "toy"),
        ("p2", ago(4), "purchase", "toy"),
        ("p3", ago(6), "purchase", "g40"),
    ]
    return pd.DataFrame(rows, columns=["customer_id", "ts", "event_type", "item_id"])


SENDS = pd.DataFrame(
    {
        "customer_id": ["ann", "ann", "ann"],
        "ts": [ago(3), ago(8), ago(7)],
        "campaign_id": ["w9", "w8", "w8"],
        "item_id": ["g25", "g40", "toy"],
        "placement": ["newsletter", "newsletter", "web_for_you"],
    }
)


@pytest.fixture(scope="module")
def ctx() -> RecContext:
    return RecContext.from_events(NOW, CUSTOMERS, ITEMS, _events(), SENDS)


def placement(**rules) -> Placement:
    base = {
        "exclude_purchased": PurchasedRule(days=90),
        "exclude_sent_days": None,
        "max_per_category": None,
    }
    base.update(rules)
    return Placement(
        name="test",
        channel="web",
        n_items=10,
        candidate_sources=["als", "item_knn", "buy_again"],
        fallback="none",
        rules=Rules(**base),
    )


def cands(customer: str, items: list[str], reason: str = "for_you") -> pd.DataFrame:
    n = len(items)
    return pd.DataFrame(
        {
            "customer_id": [customer] * n,
            "item_id": items,
            "score": np.linspace(1.0, 0.5, n),
            "source": ["als"] * n,
            "reason": [reason] * n,
        }
    )


def rules_on(frame: pd.DataFrame, customers, p: Placement, context: RecContext, **kw):
    """``apply_rules`` over a frame of candidates, converted as ``recommend_frame`` does."""
    block = candidate_block(frame, context, sources=p.candidate_sources)
    return apply_rules(block, customers, p, context, **kw)


def items_for(result, customer: str) -> list[str]:
    recs = result.recs
    return recs.loc[recs["customer_id"] == customer, "item_id"].tolist()


def test_durable_bought_long_ago_never_returns_but_ordinary_item_does(ctx):
    res = rules_on(cands("ann", ["pram", "bib", "toy"]), ["ann"], placement(), ctx)
    # pram: durable, bought 400 days ago -> never; bib: ordinary, 400 > 90 days -> back.
    assert items_for(res, "ann") == ["bib", "toy"]


def test_durable_excluded_even_when_rule_days_is_zero(ctx):
    res = rules_on(
        cands("ann", ["pram"]), ["ann"], placement(exclude_purchased=PurchasedRule(days=0)), ctx
    )
    assert items_for(res, "ann") == []


@pytest.mark.parametrize(
    ("days_after_now", "expected"),
    [
        (0, []),  # bob: 15 days since last flour, own window [24, 60] days -> too early
        (9, ["flour"]),  # 24 days: window opens
        (45, ["flour"]),  # 60 days: still inside
        (46, []),  # 61 days: window closed
    ],
)
def test_consumable_returns_only_inside_own_repurchase_window(ctx, days_after_now, expected):
    res = rules_on(
        cands("bob", ["flour"], "bought_before"),
        ["bob"],
        placement(),
        ctx,
        now=NOW + timedelta(days=days_after_now),
    )
    assert items_for(res, "bob") == expected


def test_consumable_uses_item_cycle_without_own_history(ctx):
    # eve bought flour once, 15 days ago; item median cycle is 20 days -> window [16, 40].
    assert ctx.items.set_index("item_id").loc["flour", "cycle_days"] == 20.0
    res = rules_on(cands("eve", ["flour"]), ["eve"], placement(), ctx)
    assert items_for(res, "eve") == []  # 15 days < 0.8 * 20
    later = rules_on(cands("eve", ["flour"]), ["eve"], placement(), ctx, now=NOW + timedelta(6))
    assert items_for(later, "eve") == ["flour"]  # 21 days: inside the window
    late = rules_on(cands("eve", ["flour"]), ["eve"], placement(), ctx, now=NOW + timedelta(26))
    assert items_for(late, "eve") == []  # 41 days > 2.0 * 20


def test_keep_not_purchased_vector_matches_rules(ctx):
    cust = ctx.customer_codes(["ann", "ann", "bob", "eve", "new"])
    item = ctx.item_codes(["pram", "bib", "flour", "flour", "pram"])
    keep = keep_not_purchased(cust, item, ctx, PurchasedRule(days=90), ctx.now_ns)
    assert keep.tolist() == [False, True, False, False, True]  # eve: 15 days < 0.8 * 20
    later = keep_not_purchased(
        cust, item, ctx, PurchasedRule(days=90), ctx.now_ns + 6 * 86_400 * 10**9
    )
    assert later.tolist() == [False, True, False, True, True]  # eve: 21 days, inside


def test_recent_send_excluded_for_seven_days_then_back(ctx):
    p = placement(exclude_sent_days=7)
    res = rules_on(cands("ann", ["g25", "g40", "toy", "g5"]), ["ann"], p, ctx)
    # g25 sent 3 days ago -> out; g40 sent 8 days ago -> in; toy sent exactly 7 days ago -> in.
    assert items_for(res, "ann") == ["g40", "toy", "g5"]


def test_send_scope_same_placement_only(ctx):
    p = placement(exclude_sent_days=10, sent_same_placement_only=True)
    p = p.model_copy(update={"name": "web_for_you"})
    res = rules_on(cands("ann", ["g25", "g40", "toy"]), ["ann"], p, ctx)
    # Only the web_for_you send (toy, 7 days ago) counts.
    assert items_for(res, "ann") == ["g25", "g40"]


def test_sends_recorded_at_run_time_are_excluded(ctx, tmp_path):
    store = SQLiteStateStore(tmp_path / "state.sqlite")
    store.record_sends(
        pd.DataFrame(
            {"customer_id": ["bob"], "item_id": ["g40"], "ts": [ago(1)], "placement": ["x"]}
        )
    )
    p = placement(exclude_sent_days=7)
    out = recommend_for(
        ["bob"], p, context=ctx, candidates=cands("bob", ["g40", "toy"]), state=store
    )
    assert [i.item_id for i in out[0].items] == ["toy"]


def test_purchase_recorded_at_run_time_is_excluded(ctx, tmp_path):
    store = SQLiteStateStore(tmp_path / "state.sqlite")
    store.record_purchases(
        pd.DataFrame({"customer_id": ["eve"], "item_id": ["mixer"], "ts": [NOW]})
    )
    out = recommend_for(
        ["eve"], placement(), context=ctx, candidates=cands("eve", ["mixer", "g40"]), state=store
    )
    assert [i.item_id for i in out[0].items] == ["g40"]  # mixer is durable and now bought


def test_no_email_consent_gives_not_eligible_result_not_error(ctx):
    newsletter = load_placements().get("newsletter")
    out = recommend_for(
        ["dee", "ann"], newsletter, context=ctx, candidates=cands("dee", ["g40", "toy"])
    )
    assert (out[0].customer_id, out[0].eligible, out[0].reason, out[0].items) == (
        "dee",
        False,
        "no_email_consent",
        [],
    )
    assert out[0].content_block is None
    assert out[1].eligible is True and out[1].reason is None


def test_unknown_customer_not_eligible_on_email_but_gets_popular_on_web(ctx):
    newsletter = load_placements().get("newsletter")
    web = load_placements().get("web_for_you")
    mail = recommend_for(["stranger"], newsletter, context=ctx)
    assert (mail[0].eligible, mail[0].reason, mail[0].items) == (False, "unknown_customer", [])
    shown = recommend_for(["stranger"], web, context=ctx)[0]
    assert shown.eligible is True
    # Popular overall in the last 30 days (distinct buyers; ties in catalogue order).
    assert [i.item_id for i in shown.items] == ["flour", "g5", "toy", "g15", "g40"]
    assert {i.reason for i in shown.items} == {"popular_in:all"}
    assert shown.items[0].score == pytest.approx(3 / 10)
    assert shown.content_block == "general"


def test_customer_without_history_gets_fallback_and_no_error(ctx):
    web = load_placements().get("web_for_you")
    out = recommend_for(["new"], web, context=ctx, candidates=cands("ann", ["g40"]))[0]
    assert out.eligible and [i.item_id for i in out.items] == ["flour", "g5", "toy", "g15", "g40"]
    assert [i.rank for i in out.items] == list(range(1, len(out.items) + 1))


def test_fallback_fills_from_segment_first(ctx):
    p = placement().model_copy(update={"fallback": "popular", "n_items": 3})
    res = rules_on(cands("cas", ["g40"]), ["cas"], p, ctx)
    recs = res.recs
    # cas: model item g40 first; segment = baking (flour weight 12) -> flour is in its
    # window? last flour 20 days ago, own cycle 10 -> window [8, 20]: yes; then overall g5.
    assert recs["item_id"].tolist() == ["g40", "flour", "g5"]
    assert recs["reason"].tolist() == ["for_you", "popular_in:baking", "popular_in:all"]


def test_max_per_category_holds(ctx):
    p = placement(max_per_category=2)
    res = rules_on(cands("eve", ["g5", "g15", "g40", "g25", "toy"]), ["eve"], p, ctx)
    assert items_for(res, "eve") == ["g5", "g15", "toy"]
    assert res.recs.groupby("category").size().max() == 2


def test_cap_per_group_counts_in_row_order():
    keys = np.array([1, 2, 1, 1, 2, 1])
    assert cap_per_group(keys, 2).tolist() == [True, True, True, False, True, False]
    exempt = np.array([False, False, False, False, False, True])
    assert cap_per_group(keys, 2, exempt).tolist() == [True, True, True, False, True, True]


def test_price_band_holds(ctx):
    p = placement(price_band=PriceBand(min=10, max=30))
    res = rules_on(cands("eve", ["g5", "g15", "g40", "g25", "toy", "pram"]), ["eve"], p, ctx)
    assert items_for(res, "eve") == ["g15", "g25", "toy"]


def test_inactive_items_excluded(ctx):
    res = rules_on(cands("eve", ["old", "toy"]), ["eve"], placement(), ctx)
    assert items_for(res, "eve") == ["toy"]
    off = rules_on(cands("eve", ["old"]), ["eve"], placement(exclude_unavailable=False), ctx)
    assert items_for(off, "eve") == ["old"]


def test_out_of_stock_column_excludes_items():
    items = ITEMS.assign(stock=[1, 0] + [5] * 9)
    c2 = RecContext.from_events(NOW, CUSTOMERS, items, _events())
    res = rules_on(cands("eve", ["pram", "bib", "toy"]), ["eve"], placement(), c2)
    assert items_for(res, "eve") == ["pram", "toy"]


def test_cart_items_first_for_cart_abandonment(ctx):
    cart = load_placements().get("cart_abandonment")
    out = recommend_for(
        ["fay", "eve"],
        cart,
        context=ctx,
        candidates=pd.concat([cands("fay", ["g40", "mixer"]), cands("eve", ["g40"])]),
    )
    fay, eve = out
    assert [(i.item_id, i.reason) for i in fay.items][:2] == [
        ("mixer", "in_cart"),
        ("g40", "for_you"),
    ]
    assert "g15" not in [i.item_id for i in fay.items]  # added, then bought: not open
    assert (eve.eligible, eve.reason) == (False, "empty_cart")


def test_cart_closed_by_purchase_recorded_at_run_time(ctx, tmp_path):
    store = SQLiteStateStore(tmp_path / "s.sqlite")
    store.record_purchases(
        pd.DataFrame({"customer_id": ["fay"], "item_id": ["mixer"], "ts": [NOW]})
    )
    cart = load_placements().get("cart_abandonment")
    out = recommend_for(["fay"], cart, context=ctx, state=store)[0]
    assert (out.eligible, out.reason) == (False, "empty_cart")


def test_same_item_from_two_sources_appears_once_with_best_score(ctx):
    c = pd.concat(
        [
            cands("eve", ["toy", "g40"]),
            pd.DataFrame(
                {
                    "customer_id": ["eve"],
                    "item_id": ["g40"],
                    "score": [2.0],
                    "source": ["item_knn"],
                    "reason": ["similar_to:toy"],
                }
            ),
        ]
    )
    res = rules_on(c, ["eve"], placement(), ctx)
    assert res.recs[["item_id", "reason", "rank"]].values.tolist() == [
        ["g40", "similar_to:toy", 1],
        ["toy", "for_you", 2],
    ]


def test_sources_not_in_placement_are_dropped(ctx):
    c = cands("eve", ["toy"]).assign(source="recently_viewed")
    res = rules_on(c, ["eve"], placement(), ctx)
    assert items_for(res, "eve") == []
    assert res.recipients.loc[0, ["eligible", "reason"]].tolist() == [False, "no_items"]


def test_returned_items_carry_content_fields(ctx):
    out = recommend_for(["eve"], placement(), context=ctx, candidates=cands("eve", ["toy"]))
    item = out[0].items[0]
    assert (item.rank, item.item_id, item.title, item.price, item.category) == (
        1,
        "toy",
        "Doll",
        20.0,
        "toys",
    )
    assert item.url == "https://shop.example/p/9" and item.image_url == "https://img.example/9.jpg"
    assert item.score == 1.0 and item.reason == "for_you"


def test_n_items_and_ranks(ctx):
    p = placement().model_copy(update={"n_items": 2})
    res = rules_on(cands("eve", ["toy", "g40", "g25"]), ["eve"], p, ctx)
    assert res.recs[["item_id", "rank"]].values.tolist() == [["toy", 1], ["g40", 2]]


def test_content_block_from_category_affinity(ctx):
    web = load_placements().get("web_for_you")
    out = recommend_for(["cas", "fay", "ann"], web, context=ctx)
    # cas: flour x4 purchases (baking 12); fay: mixer cart (kitchen 2 -> baking block) vs
    # g15 added and bought (gifts 2 + 3) -> small_gifts; ann: only purchases 400 days ago,
    # outside the 365-day affinity window -> default block.
    assert [r.content_block for r in out] == ["baking", "small_gifts", "general"]


def test_best_content_block_pure_function():
    aff = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c"],
            "category": ["baking", "toys", "toys", "garden"],
            "weight": [1.0, 2.0, 5.0, 4.0],
        }
    )
    got = best_content_block(aff, {"baking": ["baking"], "toys": ["toys", "baby"]}, "general")
    assert got.to_dict() == {"a": "toys", "b": "toys", "c": "general"}


def test_batch_equals_single(ctx):
    web = load_placements().get("web_for_you")
    c = pd.concat([cands("eve", ["toy", "g40"]), cands("bob", ["flour", "g25"])])
    batch = recommend_for(["eve", "bob", "zz"], web, context=ctx, candidates=c)
    single = [recommend_for([x], web, context=ctx, candidates=c)[0] for x in ["eve", "bob", "zz"]]
    assert batch == single


def test_build_context_from_shop_matches_pandas_path(tmp_path, ctx):
    from features.shop import open_shop
    from serving.context import build_context

    CUSTOMERS.assign(created_at=pd.Timestamp("2024-01-01")).to_parquet(
        tmp_path / "customers.parquet"
    )
    ITEMS.to_parquet(tmp_path / "items.parquet")
    _events().to_parquet(tmp_path / "events.parquet")
    SENDS.to_parquet(tmp_path / "sends.parquet")
    built = build_context(open_shop(tmp_path, now=NOW), NOW)

    def norm(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        out = frame.sort_values(keys).reset_index(drop=True)
        return out.astype({k: object for k in keys})

    key = ["customer_id", "item_id"]
    for name, keys in [
        ("purchases", key),
        ("carts", key),
        ("affinity", ["customer_id", "category"]),
        ("popularity", ["item_id"]),
        ("sends", [*key, "placement"]),
    ]:
        a, b = norm(getattr(built, name), keys), norm(getattr(ctx, name), keys)
        pd.testing.assert_frame_equal(a, b[a.columns], check_dtype=False, obj=name)
    assert built.items.set_index("item_id")["cycle_days"].dropna().to_dict() == {"flour": 20.0}
    web = load_placements().get("web_for_you")
    ids = ["ann", "bob", "cas", "fay", "stranger"]
    assert recommend_for(ids, web, context=built) == recommend_for(ids, web, context=ctx)


def test_candidate_block_keeps_the_best_row_per_pair_in_score_order(ctx):
    frame = pd.DataFrame(
        {
            "customer_id": ["eve", "ann", "eve", "eve", "eve", "eve", "ann", None],
            "item_id": ["toy", "bib", "g40", "toy", "nope", "g25", "g5", "toy"],
            "score": [0.5, 0.9, 0.7, 0.8, 0.95, np.nan, 0.9, 1.0],
            "source": ["als", "als", "item_knn", "als", "als", "als", "popular", "als"],
            "reason": ["for_you", None, "similar_to:toy", "viewed", "x", "x", "x", "x"],
        }
    )
    block = candidate_block(frame, ctx, sources=["als", "item_knn"])
    got = block.to_frame()
    # eve: toy's 0.8 row beats its 0.5 row; "nope" is not in the catalogue, g25 has no
    # finite score; ann's popular row is not a listed source; the row without id is gone
    assert got[["customer_id", "item_id", "score", "source", "reason"]].values.tolist() == [
        ["eve", "toy", 0.8, "als", "viewed"],
        ["eve", "g40", 0.7, "item_knn", "similar_to:toy"],
        ["ann", "bib", 0.9, "als", "for_you"],
    ]
    assert block.item_index is ctx.item_index
    empty = candidate_block(None, ctx)
    assert len(empty) == 0 and empty.items.shape == (0, 0)
    res = apply_rules(empty, ["eve"], placement(), ctx)
    assert res.recipients.loc[0, ["eligible", "reason"]].tolist() == [False, "no_items"]


def test_candidate_block_ties_keep_input_order_and_ids_compare_as_text(ctx):
    frame = pd.DataFrame(
        {
            "customer_id": ["eve", "eve", "eve"],
            "item_id": ["g5", "toy", "g15"],
            "score": [1.0, 1.0, 1.0],
        }
    )
    assert candidate_block(frame, ctx).to_frame()["item_id"].tolist() == ["g5", "toy", "g15"]
    mixed = pd.DataFrame({"customer_id": [7, "7"], "item_id": ["toy", "toy"], "score": [1, 2]})
    block = candidate_block(mixed, ctx)
    assert block.customer_ids.tolist() == ["7"] and block.score.tolist() == [[2.0]]


def test_apply_rules_takes_only_a_candidate_block(ctx):
    with pytest.raises(TypeError, match="candidate_block"):
        apply_rules(cands("eve", ["toy"]), ["eve"], placement(), ctx)
