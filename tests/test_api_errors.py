"""Error mapping: klantbeeld's own errors become 4xx with their message; anything else is a
generic 500 whose cause is logged without its message (which may quote customer data)."""

from __future__ import annotations

import logging

import pytest
from test_api import world  # noqa: F401  (fixture)

from klantbeeld.errors import ConfigError
from serving.api.deps import get_scores
from serving.api.errors import INTERNAL_DETAIL

LEAK = "ann@example.com"


def _raise(exc: Exception):
    async def dep():
        raise exc

    return dep


@pytest.mark.parametrize(
    "exc",
    [
        ValueError(f"could not convert string to float: '{LEAK}'"),
        KeyError(LEAK),
        TypeError(f"'<' not supported between 'str' ({LEAK}) and 'float'"),
    ],
)
def test_foreign_errors_are_a_generic_500_and_the_message_is_not_logged(
    world,  # noqa: F811
    exc,
    caplog,
):
    client, _, _ = world
    client.app.dependency_overrides[get_scores] = _raise(exc)
    with caplog.at_level(logging.DEBUG):
        r = client.get("/v1/customers/C1/scores")
    assert r.status_code == 500
    assert r.json() == {"detail": INTERNAL_DETAIL, "type": "internal_error"}
    assert LEAK not in r.text
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert type(exc).__name__ in logged and "/v1/customers/{customer_id}/scores" in logged
    assert LEAK not in logged
    # the service keeps answering
    client.app.dependency_overrides.pop(get_scores)
    assert client.get("/v1/health").status_code == 200


def test_klantbeeld_errors_keep_their_status_and_message(world):  # noqa: F811
    client, _, _ = world
    client.app.dependency_overrides[get_scores] = _raise(ConfigError("placement 'x' unknown"))
    r = client.get("/v1/customers/C1/scores")
    assert r.status_code == 422
    assert r.json() == {"detail": "placement 'x' unknown", "type": "invalid_argument"}
    r = client.get("/v1/customers/NOPE/recommendations", params={"placement": "nope"})
    assert r.status_code == 422 and "nope" in r.json()["detail"]
