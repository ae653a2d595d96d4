"""``GET /v1/recipients/recommendations?email=``: look-up by normalised e-mail address,
the unknown-recipient answer for unknown and erased addresses, no address in the logs."""

from __future__ import annotations

import logging

import pandas as pd
from test_api import CUSTOMERS, _recs, world  # noqa: F401  (fixture)

from features import contract as c
from serving.api.email_index import EmailIndex


def _by_email(client, email: str, **params):
    return client.get("/v1/recipients/recommendations", params={"email": email, "n": 4, **params})


def test_lookup_by_email_answers_like_the_customer_route(world, caplog):  # noqa: F811
    client, _, _ = world
    with caplog.at_level(logging.DEBUG):
        r = _by_email(client, "  ANN@example.COM ")
        assert r.status_code == 200, r.text
        assert r.json() == _recs(client, "C1")
        bob = _by_email(client, "bob@example.com").json()
        assert (bob["customer_id"], bob["reason"]) == ("C2", "no_email_consent")
        unknown = _by_email(client, "nobody@example.com").json()
        assert unknown["customer_id"] is None
        assert (unknown["eligible"], unknown["reason"]) == (False, "unknown_customer")
        web = _by_email(client, "nobody@example.com", placement="web_for_you").json()
        nobody = _recs(client, "NOBODY", placement="web_for_you")
        assert web == {**nobody, "customer_id": None}
        assert web["eligible"] and web["fallback"] and web["items"]
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(rec.getMessage() for rec in server).lower()
    assert "example.com" not in logged


def test_bad_addresses_are_422_naming_email(world):  # noqa: F811
    client, _, _ = world
    for bad in ("not-an-address", "two@@example.com", "a b@example.com"):
        r = _by_email(client, bad)
        assert r.status_code == 422 and "email" in r.json()["detail"], bad
    r = client.get("/v1/recipients/recommendations")
    assert r.status_code == 422 and "email" in r.text


def test_an_erased_customer_is_not_found_by_email(world):  # noqa: F811
    client, _, _ = world
    assert _by_email(client, "cy@example.com").json()["customer_id"] == "C3"
    assert client.delete("/v1/customers/C3").status_code == 200
    got = _by_email(client, "cy@example.com").json()
    assert (got["customer_id"], got["reason"], got["items"]) == (None, "unknown_customer", [])


def test_email_index_keeps_hashes_only_and_the_first_of_shared_addresses():
    customers = pd.concat(
        [CUSTOMERS, pd.DataFrame({c.CUSTOMER_ID: ["C9"], c.EMAIL: ["ann@example.com"]})]
    )
    index = EmailIndex(customers)
    assert len(index) == 3 and index.shared == 1  # C4 has no address
    assert index.customer_id("Ann@Example.com") == "C1"
    assert index.customer_id("bob@example.com ") == "C2"
    assert index.customer_id("zed@example.com") is None
    assert index.customer_id("garbage") is None
    assert not any("example" in str(v) for v in vars(index).values())
