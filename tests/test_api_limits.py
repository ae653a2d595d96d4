"""Request limits (413 over the body size, 422 over the batch sizes) and CORS (off by
default, on for configured origins only)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from test_api import keyed_client, world  # noqa: F401  (fixture)

from klantbeeld.settings import Settings
from serving.api.app import create_app
from serving.api.schemas import MAX_BATCH, MAX_EVENTS


def _events(n: int) -> dict:
    return {"events": [{"event_type": "page_view", "customer_id": f"C{k}"} for k in range(n)]}


def test_a_body_over_the_limit_is_413_and_nothing_is_stored(tmp_path):
    app = create_app(Settings(home=tmp_path, api_max_body_bytes=2048))
    with keyed_client(app) as client:
        r = client.post("/v1/events", json=_events(100))  # ~5 kB with Content-Length
        assert r.status_code == 413
        assert r.json()["type"] == "payload_too_large" and "2,048" in r.json()["detail"]

        def chunks():  # no Content-Length: counted while read
            for _ in range(10):
                yield b" " * 500
            yield b'{"events": []}'

        r = client.post(
            "/v1/events", content=chunks(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413 and r.json()["type"] == "payload_too_large"
        ok = client.post("/v1/events", json=_events(3))
        assert ok.status_code == 200 and ok.json()["stored"] == 3
        assert app.state.artifacts.state.store.count_events() == 3


def test_batches_over_the_limits_are_422_naming_the_field(world):  # noqa: F811
    client, _, _ = world
    r = client.post(
        "/v1/recommendations/batch",
        json={"placement": "newsletter", "customer_ids": ["C1"] * (MAX_BATCH + 1)},
    )
    assert r.status_code == 422 and "customer_ids" in r.text and "1000" in r.text
    r = client.post("/v1/events", json=_events(MAX_EVENTS + 1))
    assert r.status_code == 422 and "events" in r.text
    ok = client.post(
        "/v1/recommendations/batch",
        json={"placement": "newsletter", "customer_ids": [f"X{k}" for k in range(MAX_BATCH)]},
    )
    assert ok.status_code == 200 and ok.json()["n_recipients"] == MAX_BATCH


def _preflight(client: TestClient, origin: str):
    return client.options(
        "/v1/customers/C1/scores",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-API-Key",
        },
    )


def test_cors_is_off_by_default(tmp_path):
    with keyed_client(create_app(Settings(home=tmp_path))) as client:
        r = _preflight(client, "https://crm.example.com")
        assert "access-control-allow-origin" not in r.headers
        got = client.get("/v1/health", headers={"Origin": "https://crm.example.com"})
        assert "access-control-allow-origin" not in got.headers


def test_cors_allows_the_configured_origins_only(tmp_path):
    settings = Settings(home=tmp_path, api_cors_origins=["https://crm.example.com"])
    with keyed_client(create_app(settings)) as client:
        r = _preflight(client, "https://crm.example.com")
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://crm.example.com"
        assert "x-api-key" in r.headers["access-control-allow-headers"].lower()
        other = _preflight(client, "https://evil.example.net")
        assert "access-control-allow-origin" not in other.headers
    with pytest.raises(ValueError, match="may not contain"):
        Settings(home=tmp_path, api_cors_origins=["*"])
