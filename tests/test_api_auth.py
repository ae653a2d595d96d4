"""API keys: the scope matrix (each endpoint x each scope -> 200 or 403), 401s, storage.

Uses the hand-made world of ``test_api`` (4 customers, 8 items, fake ranking) so that an
allowed call is a real 200, not merely "not 403".
"""

from __future__ import annotations

import re
import sqlite3

import pytest
from fastapi.testclient import TestClient
from test_api import world  # noqa: F401  (fixture)

from serving.api.keys import SCOPES, KeyStore

#: (method, path, request body, scope the route needs)
ENDPOINTS = [
    ("GET", "/v1/customers/C1/scores", None, "scores:read"),
    ("GET", "/v1/customers/C1/recommendations", None, "recommendations:read"),
    ("GET", "/v1/recipients/recommendations?email=ann@example.com", None, "recommendations:read"),
    (
        "POST",
        "/v1/recommendations/batch",
        {"placement": "newsletter", "customer_ids": ["C1", "C3"]},
        "recommendations:read",
    ),
    (
        "POST",
        "/v1/events",
        {
            "events": [
                {
                    "event_type": "send",
                    "customer_id": "C1",
                    "item_id": "I2",
                    "placement": "newsletter",
                }
            ]
        },
        "events:write",
    ),
    ("GET", "/v1/audiences/conversion_intent", None, "audiences:export"),
    ("GET", "/v1/audiences/churn_risk/export", None, "audiences:export"),
    ("GET", "/v1/audiences/likely_buyers/changes?since=0", None, "audiences:export"),
    ("GET", "/metrics", None, "admin"),
    ("POST", "/v1/admin/reload", None, "admin"),
    ("DELETE", "/v1/customers/C1", None, "admin"),  # last: it erases C1
]
OPEN = {
    "/v1/health",
    "/health",
    "/v1/ready",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}


def _call(client: TestClient, method: str, path: str, body, key: str | None):
    headers = {} if key is None else {"X-API-Key": key}
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("scope", SCOPES)
def test_scope_matrix_each_endpoint_times_each_scope(world, scope):  # noqa: F811
    client, _, _ = world
    key = KeyStore(client.app.state.settings.resolved_api_keys_file).create(frozenset([scope]))
    for method, path, body, needed in ENDPOINTS:
        r = _call(client, method, path, body, key)
        expected = 200 if scope == needed else 403
        assert r.status_code == expected, (scope, path, r.status_code, r.text)
        if expected == 403:
            assert needed in r.json()["detail"] and r.json()["type"] == "forbidden"


def test_missing_unknown_malformed_and_revoked_keys_are_401(world):  # noqa: F811
    client, _, _ = world
    del client.headers["X-API-Key"]  # the fixture's all-scope key
    store = KeyStore(client.app.state.settings.resolved_api_keys_file)
    key = store.create(frozenset(SCOPES))
    key_id = key.split("_")[1]
    wrong_secret = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert store.revoke(key_id)
    for bad in (None, "", "nonsense", "kb_deadbeef_x", wrong_secret, key):
        for method, path, body, _ in ENDPOINTS:
            r = _call(client, method, path, body, bad)
            assert r.status_code == 401, (bad, path, r.text)
            assert r.json()["type"] == "unauthorized"


def test_every_route_but_health_and_docs_needs_a_key(world):  # noqa: F811
    client, _, _ = world
    del client.headers["X-API-Key"]
    paths = client.app.openapi()["paths"]
    checked = 0
    for path, ops in paths.items():
        for method in ops:
            concrete = re.sub(r"\{[^}]+\}", "C1", path)
            r = client.request(method.upper(), concrete)
            if path in OPEN:  # /v1/ready: 503, the hand-made world loads no artifacts
                assert r.status_code == (503 if path == "/v1/ready" else 200), path
            else:
                assert r.status_code == 401, (method, path, r.status_code)
                checked += 1
    assert checked >= len(ENDPOINTS)


def test_keys_are_stored_hashed_and_listed_without_secret(tmp_path):
    store = KeyStore(tmp_path / "keys.sqlite")
    key = store.create(frozenset(["scores:read", "admin"]), label="esp")
    assert re.fullmatch(r"kb_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", key)
    secret = key.split("_", 2)[2]
    raw = (tmp_path / "keys.sqlite").read_bytes()
    assert secret.encode() not in raw
    with sqlite3.connect(tmp_path / "keys.sqlite") as con:
        (digest,) = con.execute("SELECT digest FROM api_keys").fetchone()
    assert len(digest) == 64 and digest not in key
    assert store.scopes_of(key) == {"scores:read", "admin"}
    (info,) = store.list()
    assert info.label == "esp" and info.revoked is None and info.key_id in key
    assert store.create(frozenset(["admin"])) != key  # random, never repeated


def test_metrics_can_be_opened_by_setting(tmp_path):
    from klantbeeld.settings import Settings
    from serving.api.app import create_app

    with TestClient(create_app(Settings(home=tmp_path, metrics_public=True))) as client:
        assert client.get("/metrics").status_code == 200
        assert client.get("/v1/customers/C1/scores").status_code == 401


def test_cli_keys_create_prints_the_key_last_and_revoke(tmp_path, monkeypatch, request):
    from typer.testing import CliRunner

    from klantbeeld.cli import app
    from klantbeeld.settings import get_settings

    monkeypatch.setenv("KLANTBEELD_HOME", str(tmp_path))
    get_settings.cache_clear()  # settings cached by an earlier CLI test read another home
    request.addfinalizer(get_settings.cache_clear)
    runner = CliRunner()
    r = runner.invoke(app, ["keys", "create", "--scopes", "scores:read,events:write"])
    assert r.exit_code == 0, r.output
    key = r.stdout.strip().splitlines()[-1]
    assert KeyStore(tmp_path / "api_keys.sqlite").scopes_of(key) == {"scores:read", "events:write"}
    bad = runner.invoke(app, ["keys", "create", "--scopes", "scores:read,root"])
    assert bad.exit_code == 2 and "root" in bad.output
    listed = runner.invoke(app, ["keys", "list"])
    key_id = key.split("_")[1]
    assert key_id in listed.stdout and key.split("_", 2)[2] not in listed.stdout
    assert runner.invoke(app, ["keys", "revoke", key_id]).exit_code == 0
    assert KeyStore(tmp_path / "api_keys.sqlite").scopes_of(key) is None
