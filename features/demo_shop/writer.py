"""Generate a demo shop folder: simulate block by block and write Parquet atomically."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import contract as c
from features.demo_shop.campaigns import build_campaigns
from features.demo_shop.catalogue import CATEGORY_NAMES, Catalogue, build_catalogue
from features.demo_shop.events import ABANDONS_SCHEMA, EVENT_CODES, SENDS_SCHEMA
from features.demo_shop.params import BLOCK_SIZE, GENERATOR, GENERATOR_VERSION, PARAMS
from features.demo_shop.profiles import draw_customers
from features.demo_shop.simulate import simulate_block
from klantbeeld.errors import ConfigError

log = logging.getLogger(__name__)

CUSTOMERS_SCHEMA = pa.schema(
    [
        (c.CUSTOMER_ID, pa.string()),
        (c.CREATED_AT, pa.timestamp("us")),
        (c.EMAIL, pa.string()),
        (c.PHONE, pa.string()),
        (c.BIRTH_DATE, pa.date32()),
        (c.GENDER, pa.string()),
        (c.POSTCODE, pa.string()),
        (c.CITY, pa.string()),
        (c.CONSENT_EMAIL, pa.bool_()),
        (c.CONSENT_ADS, pa.bool_()),
    ]
)
ITEMS_SCHEMA = pa.schema(
    [
        (c.ITEM_ID, pa.string()),
        (c.TITLE, pa.string()),
        (c.CATEGORY, pa.string()),
        (c.BRAND, pa.string()),
        (c.PRICE, pa.float64()),
        (c.URL, pa.string()),
        (c.IMAGE_URL, pa.string()),
        (c.ACTIVE, pa.bool_()),
        (c.REPURCHASABLE, pa.bool_()),
        (c.DURABLE, pa.bool_()),
    ]
)
_PARQUET = {"compression": "zstd", "use_dictionary": True}


@dataclass(frozen=True)
class DemoShopSummary:
    """What :func:`generate_demo_shop` wrote.

    Attributes
    ----------
    n_customers, n_items, n_events, n_sends : int
        Row counts of the customers, items, events and sends tables.
    start, end : date
        Simulated period ``[start, end)`` (UTC days).
    path : Path
        The shop folder.
    event_counts : dict[str, int]
        Number of events per event type.
    """

    n_customers: int
    n_items: int
    n_events: int
    n_sends: int
    start: date
    end: date
    path: Path
    event_counts: dict[str, int] = field(default_factory=dict)


def is_demo_shop(path: Path) -> bool:
    """True when ``path`` holds a shop written by :func:`generate_demo_shop`."""
    marker = Path(path) / "truth" / "params.json"
    try:
        return json.loads(marker.read_text()).get("generator") == GENERATOR
    except (OSError, ValueError):
        return False


def generate_demo_shop(
    out: Path,
    n_customers: int = 50_000,
    seed: int = 42,
    end: date = date(2026, 11, 1),
    days: int = 730,
    show_progress: bool = False,
    *,
    n_items: int = 600,
) -> DemoShopSummary:
    """Simulate a synthetic shop and write it, with its hidden truth, to ``out``.

    Parameters
    ----------
    out : Path
        Target folder. Must be absent, empty, or a previous demo shop (which is replaced).
        Written as ``customers.parquet``, ``items.parquet``, ``events/part-NNNNN.parquet``
        (one part per block of 20,000 customers, rows sorted by customer_id then ts),
        ``sends.parquet``, ``truth/`` (hidden parameters, for the oracle only) and
        ``README.txt``. Everything goes to a temporary sibling folder first and is renamed
        into place, so a failed run leaves the previous contents intact.
    n_customers : int, default 50,000
        Number of customers (ids ``C0000001`` ...).
    seed : int, default 42
        Seed; the same seed gives byte-identical files.
    end : date, default 2026-11-01
        First day after the simulated period (events are strictly before it, UTC).
    days : int, default 730
        Length of the simulated period in days.
    show_progress : bool, default False
        Show a tqdm progress bar over blocks.
    n_items : int, default 600
        Catalogue size (keyword only).

    Returns
    -------
    DemoShopSummary

    Raises
    ------
    ConfigError
        ``out`` is a file, or a non-empty folder that is not a demo shop.
    ValueError
        ``n_customers``, ``days`` or ``n_items`` out of range.
    """
    out = Path(out)
    if not 1 <= n_customers <= 9_999_999:
        raise ValueError(f"n_customers must be in 1..9,999,999, got {n_customers}")
    if not 60 <= days <= 3650:
        raise ValueError(f"days must be in 60..3650, got {days}")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not is_demo_shop(out))):
        raise ConfigError(
            f"out={out} exists and is not an empty folder or a previous demo shop; "
            "refusing to overwrite it"
        )
    start = end - timedelta(days=days)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        summary = _write(tmp, out, n_customers, seed, start, end, days, n_items, show_progress)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "demo shop written to %s: %d customers, %d items, %d events, %d sends",
        out,
        summary.n_customers,
        summary.n_items,
        summary.n_events,
        summary.n_sends,
    )
    return summary


def _swap_into_place(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _write(
    tmp: Path,
    out: Path,
    n_customers: int,
    seed: int,
    start: date,
    end: date,
    days: int,
    n_items: int,
    show_progress: bool,
) -> DemoShopSummary:
    (tmp / "events").mkdir(parents=True)
    (tmp / "truth").mkdir()
    cat = build_catalogue(_rng(seed, 0), n_items, days)
    campaigns = build_campaigns(_rng(seed, 1), days, len(CATEGORY_NAMES))

    items = pa.Table.from_pandas(cat.items, schema=ITEMS_SCHEMA, preserve_index=False)
    pq.write_table(items, tmp / "items.parquet", **_PARQUET)
    pq.write_table(
        pa.Table.from_pandas(_item_truth(cat), preserve_index=False),
        tmp / "truth" / "items.parquet",
        **_PARQUET,
    )
    pq.write_table(
        pa.Table.from_pandas(campaigns.to_frame(), preserve_index=False),
        tmp / "truth" / "campaigns.parquet",
        **_PARQUET,
    )

    n_blocks = -(-n_customers // BLOCK_SIZE)
    counts = dict.fromkeys(EVENT_CODES, 0)
    n_events = n_sends = 0
    blocks = range(n_blocks)
    if show_progress:
        from tqdm.auto import tqdm

        blocks = tqdm(blocks, desc="demo shop", unit="block")
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        for b in blocks:
            first = b * BLOCK_SIZE
            n = min(BLOCK_SIZE, n_customers - first)
            rng = _rng(seed, 2, b)
            cust = draw_customers(rng, first, n, start, days)
            res = simulate_block(rng, b, first, cust.hidden, cat, campaigns, start, days)
            pq.write_table(res.events, tmp / "events" / f"part-{b:05d}.parquet", **_PARQUET)
            public = pa.Table.from_pandas(
                cust.public, schema=CUSTOMERS_SCHEMA, preserve_index=False
            )
            hidden_df = pd.DataFrame({c.CUSTOMER_ID: cust.public[c.CUSTOMER_ID], **cust.hidden})
            hidden = pa.Table.from_pandas(hidden_df, preserve_index=False)
            for name, table, schema in (
                ("customers.parquet", public, CUSTOMERS_SCHEMA),
                ("sends.parquet", res.sends, SENDS_SCHEMA),
                ("truth/customers.parquet", hidden, None),
                ("truth/abandons.parquet", res.abandons, ABANDONS_SCHEMA),
            ):
                if name not in writers:
                    writers[name] = pq.ParquetWriter(tmp / name, schema or table.schema, **_PARQUET)
                writers[name].write_table(table)
            n_events += res.events.num_rows
            n_sends += res.sends.num_rows
            for k, v in res.event_counts.items():
                counts[k] += v
    finally:
        for w in writers.values():
            w.close()

    truth = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "n_customers": n_customers,
        "n_items": cat.n_items,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "days": days,
        "block_size": BLOCK_SIZE,
        "discontinue_day": cat.discontinue_day,
        "categories": list(CATEGORY_NAMES),
        "params": PARAMS.to_dict(),
    }
    (tmp / "truth" / "params.json").write_text(json.dumps(truth, indent=2) + "\n")
    (tmp / "README.txt").write_text(_README.format(**truth))
    return DemoShopSummary(
        n_customers=n_customers,
        n_items=cat.n_items,
        n_events=n_events,
        n_sends=n_sends,
        start=start,
        end=end,
        path=out,
        event_counts=counts,
    )


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _item_truth(cat: Catalogue) -> pd.DataFrame:
    return pd.DataFrame(
        {
            c.ITEM_ID: cat.items[c.ITEM_ID],
            "category_index": cat.category,
            "consumable": cat.consumable,
            "cycle_days": cat.cycle,
            "popularity": cat.popularity,
            "cons_share": cat.cons_share[cat.category],
        }
    )


_README = """klantbeeld demo shop (synthetic data, generator {generator} v{version})
seed={seed} customers={n_customers} items={n_items} period={start} .. {end} (end exclusive)

customers.parquet, items.parquet, events/part-*.parquet, sends.parquet follow the
klantbeeld data contract (docs/data-contract.md). truth/ holds the hidden parameters the
generator drew behaviour from; features and models must never read it - only the oracle
functions in features.demo_shop.truth do. See docs/demo-shop.md.
"""
