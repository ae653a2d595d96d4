"""Tiny hand-made shops for the feature and label tests (written as Parquet to a tmp dir)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from features import contract as c

T = datetime(2024, 7, 1)
"""Snapshot time of the hand-worked fixture."""

ITEMS = pd.DataFrame(
    {
        c.ITEM_ID: ["coffee", "tea", "pan", "doll"],
        c.TITLE: ["Coffee beans", "Green tea", "Frying pan", "Rag doll"],
        c.CATEGORY: ["Kitchen & Food", "Kitchen & Food", "Cookware", "toys"],
        c.PRICE: [10.0, 5.0, 40.0, 20.0],
        c.REPURCHASABLE: [True, True, False, False],
        c.DURABLE: [False, False, True, True],
    }
)

CUSTOMERS = pd.DataFrame(
    {
        c.CUSTOMER_ID: ["a", "b", "c", "d", "e", "f", "z"],
        c.CREATED_AT: pd.to_datetime(
            [
                "2023-01-01",
                "2024-06-20",
                "2024-01-01",
                "2023-06-01",
                "2022-01-01",
                "2024-01-01",
                "2024-08-01",
            ]
        ),
        c.BIRTH_DATE: pd.to_datetime(
            [
                "1990-07-01",
                "2000-07-02",
                None,
                "1980-01-15",
                "1975-12-31",
                "2024-08-01",
                "1999-01-01",
            ]
        ).date,
        c.EMAIL: ["a@x.nl", "b@x.nl", None, "d@x.nl", "e@x.nl", "f@x.nl", "z@x.nl"],
    }
)


def ev(
    customer: str,
    ts: str,
    event_type: str,
    item: str | None = None,
    value: float | None = None,
    *,
    order: str | None = None,
    session: str | None = None,
    channel: str | None = "web",
    quantity: float | None = None,
) -> dict:
    """One event row of the contract's events table."""
    return {
        c.CUSTOMER_ID: customer,
        c.TS: pd.Timestamp(ts),
        c.EVENT_TYPE: event_type,
        c.ITEM_ID: item,
        c.QUANTITY: quantity if quantity is not None else (1.0 if item else None),
        c.VALUE: value,
        c.CHANNEL: channel,
        c.SESSION_ID: session,
        c.ORDER_ID: order,
    }


def hand_worked_events() -> pd.DataFrame:
    """Events of the hand-worked fixture (T = 2024-07-01 00:00).

    - a: orders 2024-01-01 10:06 (coffee 10 + pan 40), 2024-03-01 09:00 (coffee 10),
      2024-05-31 12:00 (coffee 12); four sessions, a cart abandoned on 2024-06-25;
      email opens/click; a return; an order at T and an open after T that must be
      ignored -> retention (first order 181.6 days before T, not overdue).
    - b: signed up 2024-06-20, views only -> acquisition.
    - c: one order 2024-06-15 (two tea lines of one order) -> activation.
    - d: orders 2023-06-10 and 2023-09-10 -> win_back (last order > 180 days ago).
    - e: orders 2023-01-01, 2024-05-01, 2024-05-31, 2024-06-30 -> retention.
    - f: orders 2024-04-01 and 2024-05-16 -> development (first order 90.5 days ago);
      birth date after T -> age NaN.
    - z: created after T -> not in the snapshot.
    """
    rows = [
        # customer a
        ev("a", "2024-01-01 10:00", c.PRODUCT_VIEW, "coffee", session="s1"),
        ev("a", "2024-01-01 10:05", c.ADD_TO_CART, "coffee", session="s1"),
        ev("a", "2024-01-01 10:06", c.PURCHASE, "coffee", 10.0, order="o1", session="s1"),
        ev("a", "2024-01-01 10:06", c.PURCHASE, "pan", 40.0, order="o1", session="s1"),
        ev(
            "a",
            "2024-03-01 09:00",
            c.PURCHASE,
            "coffee",
            10.0,
            order="o2",
            session="s2",
            channel="app",
        ),
        ev("a", "2024-05-31 12:00", c.PRODUCT_VIEW, "coffee", session="s3", channel="app"),
        ev(
            "a",
            "2024-05-31 12:00",
            c.PURCHASE,
            "coffee",
            12.0,
            order="o3",
            session="s3",
            channel="app",
        ),
        ev("a", "2024-06-10 08:00", c.RETURN, "pan", 40.0, order="o1", channel=None),
        ev("a", "2024-06-25 20:00", c.PRODUCT_VIEW, "doll", session="s4"),
        ev("a", "2024-06-25 20:01", c.ADD_TO_CART, "doll", session="s4"),
        ev("a", "2024-06-28 07:00", c.EMAIL_OPEN, channel="email"),
        ev("a", "2024-06-28 07:01", c.EMAIL_CLICK, channel="email"),
        ev("a", "2024-04-01 07:00", c.EMAIL_OPEN, channel="email"),
        # after T: must not count
        ev("a", "2024-07-01 00:00", c.PURCHASE, "coffee", 99.0, order="o4", session="s5"),
        ev("a", "2024-07-03 00:00", c.EMAIL_OPEN, channel="email"),
        # customer b
        ev("b", "2024-06-21 10:00", c.PAGE_VIEW, session="s6"),
        ev("b", "2024-06-21 10:01", c.PRODUCT_VIEW, "doll", session="s6"),
        ev("b", "2024-06-21 10:02", c.PRODUCT_VIEW, "pan", session="s6"),
        ev("b", "2024-06-21 10:03", c.PRODUCT_VIEW, "tea", session="s6"),
        ev("b", "2024-06-21 10:04", c.PRODUCT_VIEW, "doll", session="s6"),
        # customer c: one order with two tea lines
        ev("c", "2024-06-15 18:00", c.PURCHASE, "tea", 5.0, order="o5", session="s7"),
        ev("c", "2024-06-15 18:00", c.PURCHASE, "tea", 5.0, order="o5", session="s7"),
        # customer d: lapsed
        ev("d", "2023-06-10 12:00", c.PURCHASE, "tea", 5.0, order="o6"),
        ev("d", "2023-09-10 12:00", c.PURCHASE, "tea", 7.5, order="o7"),
        # customer e: a regular
        ev("e", "2023-01-01 12:00", c.PURCHASE, "coffee", 10.0, order="o8"),
        ev("e", "2024-05-01 12:00", c.PURCHASE, "coffee", 10.0, order="o9"),
        ev("e", "2024-05-31 12:00", c.PURCHASE, "coffee", 10.0, order="o10"),
        ev("e", "2024-06-30 12:00", c.PURCHASE, "coffee", 10.0, order="o11"),
        # customer f: a new repeat buyer
        ev("f", "2024-04-01 12:00", c.PURCHASE, "coffee", 10.0, order="o13", channel="app"),
        ev("f", "2024-05-16 12:00", c.PURCHASE, "coffee", 10.0, order="o14", channel="app"),
        # customer z: created after T, event after T
        ev("z", "2024-08-02 12:00", c.PURCHASE, "tea", 5.0, order="o12"),
    ]
    return pd.DataFrame(rows)


def write_shop(
    path: Path,
    events: pd.DataFrame,
    customers: pd.DataFrame = CUSTOMERS,
    items: pd.DataFrame = ITEMS,
) -> Path:
    """Write the three contract tables as Parquet files into ``path`` and return it."""
    path.mkdir(parents=True, exist_ok=True)
    customers.to_parquet(path / "customers.parquet", index=False)
    items.to_parquet(path / "items.parquet", index=False)
    events.to_parquet(path / "events.parquet", index=False)
    return path
