"""A demo shop re-written as a "foreign" CDP export: other column names, other event
names, a day-first timestamp format, CSV files, and (optionally) planted problems.

It is the input of the bring-your-own-data notebook and of the mapping tests: the
mapping in :data:`EXAMPLE_MAPPING` turns it back into the data contract
(:mod:`features.mapping`). Planted problems (``problems=True``) are what real exports
hold and validation must report: a few unreadable timestamps and purchases of an
article missing from the catalogue.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features import contract as c
from klantbeeld.atomic import atomic_directory

#: Source event name of each contract event type in the raw export.
EVENT_NAMES = {
    c.PAGE_VIEW: "paginabezoek",
    c.PRODUCT_VIEW: "artikel_bekeken",
    c.ADD_TO_CART: "in_winkelwagen",
    c.REMOVE_FROM_CART: "uit_winkelwagen",
    c.PURCHASE: "bestelling",
    c.RETURN: "retour",
    c.EMAIL_OPEN: "mail_geopend",
    c.EMAIL_CLICK: "mail_geklikt",
    c.SIGNUP: "aanmelding",
}
TS_FORMAT = "%d-%m-%Y %H:%M:%S"
UNKNOWN_ARTICLE = "ART-ONBEKEND"

#: The mapping (YAML) that turns the raw export back into the contract.
EXAMPLE_MAPPING = f"""\
# raw webshop export -> klantbeeld data contract
tables:
  customers:
    file: klanten.csv
    columns:
      customer_id: klantnummer
      created_at: aangemaakt_op
      email: e_mail
      consent_email: nieuwsbrief
    formats:
      created_at: "{TS_FORMAT}"
  items:
    file: artikelen.csv
    columns:
      item_id: artikelcode
      title: omschrijving
      category: productgroep
      price: prijs
  events:
    file: gebeurtenissen.csv
    columns:
      customer_id: klantnummer
      ts: tijdstip
      event_type: soort
      item_id: artikelcode
      value: bedrag
      session_id: bezoek
    formats:
      ts: "{TS_FORMAT}"
    event_types:
""" + "".join(f"      {v}: {k}\n" for k, v in EVENT_NAMES.items())


def _events(shop_dir: Path) -> pd.DataFrame:
    src = shop_dir / "events"
    return pd.read_parquet(src if src.exists() else shop_dir / "events.parquet")


def write_raw_export(shop_dir: str | Path, out: str | Path, *, problems: bool = True) -> Path:
    """Write the demo shop at ``shop_dir`` as a raw export (three CSV files) into ``out``.

    Parameters
    ----------
    shop_dir : str or Path
        A contract folder (e.g. from :func:`features.demo_shop.generate_demo_shop`).
    out : str or Path
        Folder to write ``klanten.csv``, ``artikelen.csv`` and ``gebeurtenissen.csv``
        (replaced atomically).
    problems : bool, default True
        Plant three unreadable ``tijdstip`` values and two purchases of the article
        ``ART-ONBEKEND`` that the catalogue lacks (deterministic: the first rows).

    Returns
    -------
    Path
        ``out``.
    """
    shop_dir = Path(shop_dir)
    customers = pd.read_parquet(shop_dir / "customers.parquet")
    items = pd.read_parquet(shop_dir / "items.parquet")
    events = _events(shop_dir).sort_values([c.TS, c.CUSTOMER_ID], kind="stable")
    raw_customers = pd.DataFrame(
        {
            "klantnummer": customers[c.CUSTOMER_ID],
            "aangemaakt_op": pd.to_datetime(customers[c.CREATED_AT]).dt.strftime(TS_FORMAT),
            "e_mail": customers.get(c.EMAIL),
            "nieuwsbrief": customers.get(c.CONSENT_EMAIL),
        }
    )
    raw_items = pd.DataFrame(
        {
            "artikelcode": items[c.ITEM_ID],
            "omschrijving": items[c.TITLE],
            "productgroep": items[c.CATEGORY],
            "prijs": items.get(c.PRICE),
        }
    )
    raw_events = pd.DataFrame(
        {
            "klantnummer": events[c.CUSTOMER_ID].to_numpy(),
            "tijdstip": pd.to_datetime(events[c.TS]).dt.strftime(TS_FORMAT).to_numpy(),
            "soort": events[c.EVENT_TYPE].map(EVENT_NAMES).fillna(events[c.EVENT_TYPE]).to_numpy(),
            "artikelcode": events[c.ITEM_ID].to_numpy(),
            "bedrag": events[c.VALUE].to_numpy() if c.VALUE in events else None,
            "bezoek": events[c.SESSION_ID].to_numpy() if c.SESSION_ID in events else None,
        }
    )
    if problems:
        raw_events.loc[raw_events.index[:3], "tijdstip"] = "31-13-2026 25:61:00"
        buys = raw_events.index[raw_events["soort"] == EVENT_NAMES[c.PURCHASE]][:2]
        raw_events.loc[buys, "artikelcode"] = UNKNOWN_ARTICLE
    with atomic_directory(Path(out)) as tmp:
        raw_customers.to_csv(tmp / "klanten.csv", index=False)
        raw_items.to_csv(tmp / "artikelen.csv", index=False)
        raw_events.to_csv(tmp / "gebeurtenissen.csv", index=False)
    return Path(out)
