"""The point-in-time check: events at or after T must not change the snapshot at T.

:func:`check_point_in_time` builds the snapshot at T on the shop and on the same shop
with every event and send at or after T removed (:func:`truncate_shop`) and raises
:class:`PointInTimeError` naming the columns that differ.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import pandas as pd

from features import contract as c
from klantbeeld.errors import KlantbeeldError
from models.inputs import model_inputs
from training.frames import SnapshotFn, default_snapshot


class PointInTimeError(KlantbeeldError):
    """A feature snapshot at T changed when events at or after T were removed (a leak)."""


def truncate_shop(shop: Any, as_of: datetime) -> Any:
    """The same shop with every event and send at or after ``as_of`` removed."""
    ts = pd.Timestamp(as_of).to_pydatetime()
    tag = f"{ts:%Y%m%d%H%M%S}"
    # named views (not bare filter expressions), so the result is a shop like any other
    ev = shop.con.create_view(
        f"_kb_events_before_{tag}", shop.events.filter(shop.events[c.TS] < ts), overwrite=True
    )
    sends = None
    if shop.sends is not None:
        sends = shop.con.create_view(
            f"_kb_sends_before_{tag}", shop.sends.filter(shop.sends[c.TS] < ts), overwrite=True
        )
    return dataclasses.replace(shop, events=ev, sends=sends)


def check_point_in_time(
    shop: Any,
    as_of: datetime,
    snapshot_fn: SnapshotFn = default_snapshot,
    reference: Any | None = None,
) -> None:
    """Raise :class:`PointInTimeError` if removing events at/after ``as_of`` changes the
    model inputs (:func:`models.inputs.model_inputs`) at ``as_of``; the message names the
    columns that changed.

    Parameters
    ----------
    reference : Snapshot, optional
        The snapshot of the full shop at ``as_of`` if already built.
    """
    full = reference if reference is not None else snapshot_fn(shop, as_of)
    cut = snapshot_fn(truncate_shop(shop, as_of), as_of)
    a, b = model_inputs(full), model_inputs(cut)
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        raise PointInTimeError(
            f"snapshot at {as_of:%Y-%m-%d} changes shape when later events are removed"
        )
    a = a.sort_values(c.CUSTOMER_ID, kind="stable").reset_index(drop=True)
    b = b.sort_values(c.CUSTOMER_ID, kind="stable").reset_index(drop=True)
    changed = []
    for col in a.columns:
        x, y = a[col], b[col]
        same = (x == y) | (x.isna() & y.isna())
        if not bool(same.fillna(False).all()):
            changed.append(col)
    if changed:
        raise PointInTimeError(
            f"features {changed} at {as_of:%Y-%m-%d} depend on events at or after the cutoff"
        )
