"""Real-time conversion intent, offline = online: replaying a day of events through
``POST /v1/events`` gives, for every customer touched, the session features the batch
snapshot at the end of that day has, column by column; point in time, the online
features at an instant inside the day read only the events before it; and the served
score is the champion's score of those features.

The world (module fixture, shared with ``test_realtime_process`` and ``test_delta_feed``):
a generated 300-customer shop, a small conversion-intent model fitted on snapshots of
its own history and registered as the champion in a local MLflow store, and batch scores
at day D (the shop's last day) written by :func:`training.batch_score.score_customers`.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from features import contract as c
from klantbeeld.settings import Settings
from serving.api.app import create_app
from serving.api.deps import get_now
from serving.api.keys import SCOPES, KeyStore
from serving.online_features import session_columns

D = datetime(2026, 10, 31)  # the demo shop's last day: events of D are the day replayed
INTENT = "conversion_intent"


def _train_champion(settings: Settings, shop) -> None:
    """Fit a small conversion-intent model on weekly snapshots before D, register it and
    make it the champion (the registry path batch scoring and the API load from)."""
    import mlflow

    from features.labels import conversion_labels
    from features.snapshot import build_snapshot
    from models.conversion_intent import ConversionIntentModel
    from models.inputs import model_inputs
    from models.pyfunc import log_scorer
    from training import registry
    from training.tracking import start_run

    frames = []
    for week in range(6, 0, -1):
        t = D - timedelta(days=7 * week)
        X = model_inputs(build_snapshot(shop, t))
        y = conversion_labels(shop, t)
        frames.append(X.merge(y, on=c.CUSTOMER_ID))
    train, valid = pd.concat(frames[:-2]), pd.concat(frames[-2:])
    model = ConversionIntentModel(
        params={"num_leaves": 7, "min_child_samples": 10},
        n_estimators=80,
        early_stopping_rounds=20,
        refit=False,
    )
    features = [col for col in train.columns if col not in (c.CUSTOMER_ID, "label")]
    model.fit(train[features], train["label"], valid[features], valid["label"])
    with start_run(INTENT, settings) as run:
        log_scorer(model, valid[features].head(5), name="model")
    version = registry.register_challenger(run.info.run_id, INTENT)
    mlflow.MlflowClient().set_registered_model_alias(
        registry.registered_model_name(INTENT), registry.CHAMPION, str(version)
    )


#: Worlds built in this process, by pytest base folder: the modules importing the fixture
#: (``test_delta_feed``, ``test_realtime_process``) share one instead of each training.
_WORLDS: dict[Path, tuple[Settings, Path]] = {}


@pytest.fixture(scope="module")
def realtime_world(tmp_path_factory):
    """(settings, shop folder) with a champion and batch scores at D. Read-only: tests
    give themselves their own state file (:func:`fresh_settings`) or copy the home."""
    from features.demo_shop.writer import generate_demo_shop
    from features.shop import open_shop
    from training.batch_score import score_customers

    base = tmp_path_factory.getbasetemp()
    if base not in _WORLDS:
        root = tmp_path_factory.mktemp("realtime")
        generate_demo_shop(root / "shop", n_customers=300, seed=5, days=365, n_items=120)
        settings = Settings(home=root / "home", data_dir=root / "shop", audience_holdout_share=0.3)
        settings = settings.model_copy(
            update={"mlflow_tracking_uri": settings.resolved_tracking_uri}
        )
        shop = open_shop(root / "shop")
        _train_champion(settings, shop)
        score_customers(settings, D, models=(INTENT,))
        _WORLDS[base] = settings, root / "shop"
    return _WORLDS[base]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    async def __call__(self) -> datetime:
        return self.now


def fresh_settings(world, tmp_path: Path) -> Settings:
    """The world's settings with an empty online state of its own."""
    settings, _ = world
    return settings.model_copy(update={"state_file": tmp_path / "state.sqlite"})


def client_for(settings: Settings, clock: Clock, scopes=SCOPES) -> TestClient:
    app = create_app(settings)
    app.dependency_overrides[get_now] = clock
    key = KeyStore(settings.resolved_api_keys_file).create(frozenset(scopes))
    return TestClient(app, headers={"X-API-Key": key})


def _day_events(shop_dir: Path, start: datetime, end: datetime) -> pd.DataFrame:
    events = pd.read_parquet(shop_dir / "events")
    return events[(events[c.TS] >= start) & (events[c.TS] < end)].sort_values(c.TS)


def _payload(frame: pd.DataFrame) -> list[dict]:
    out = []
    for rec in frame.to_dict("records"):
        ev = {
            k: v
            for k, v in rec.items()
            if v is not None and not (isinstance(v, float) and np.isnan(v))
        }
        ev[c.TS] = pd.Timestamp(ev[c.TS]).isoformat()
        out.append(ev)
    return out


def test_replayed_day_matches_the_batch_snapshot_at_its_end(realtime_world, tmp_path):
    from features.shop import open_shop
    from features.snapshot import build_snapshot, customer_features
    from models.inputs import model_inputs

    settings = fresh_settings(realtime_world, tmp_path)
    shop = open_shop(realtime_world[1])
    day = _day_events(realtime_world[1], D, D + timedelta(days=1))
    clock = Clock(D)
    with client_for(settings, clock) as client:
        engine = client.app.state.realtime.intent
        assert engine is not None, client.app.state.realtime.problem
        hour_of = ((day[c.TS] - D) // timedelta(hours=1)).to_numpy()
        hours = sorted(set(hour_of.tolist()))
        for hour in hours:  # each hour's events, posted when the hour is over (the last at D+1)
            part = day[hour_of == hour]
            clock.now = (
                D + timedelta(days=1) if hour == hours[-1] else D + timedelta(hours=hour + 1)
            )
            r = client.post("/v1/events", json={"events": _payload(part)})
            assert r.status_code == 200, r.text
            assert r.json()["stored"] == len(part)
        touched = engine.known(day[c.CUSTOMER_ID].tolist())
        assert len(touched) >= 5

        batch = build_snapshot(shop, D + timedelta(days=1)).customer.set_index(c.CUSTOMER_ID)
        cats = [
            col.removeprefix("view_share_")
            for col in batch.columns
            if col.startswith("view_share_")
        ]
        cols = session_columns(cats)
        assert set(cols) <= set(engine.columns)
        online = engine.session_features(touched, D + timedelta(days=1))
        for col in cols:  # column by column, exactly
            pd.testing.assert_series_equal(
                online[col], batch.loc[touched, col], check_names=False, obj=col
            )
        # the day moved the features: compare with the snapshot at the start of the day
        start = build_snapshot(shop, D).customer.set_index(c.CUSTOMER_ID).loc[touched]
        assert (online["sessions_decay_30d"] != start["sessions_decay_30d"]).all()

        # point in time: at noon only the morning's events count, also for the online rows
        noon = D + timedelta(hours=12)
        at_noon = engine.session_features(touched, noon)
        expected = customer_features(shop, noon).set_index(c.CUSTOMER_ID).loc[touched]
        for col in cols:
            pd.testing.assert_series_equal(at_noon[col], expected[col], check_names=False, obj=col)

        # what was stored and served for the customers of the last post: features at D + 1
        # and the champion's score of the batch row with those session features
        last = sorted(set(day.loc[hour_of == hours[-1], c.CUSTOMER_ID]) & set(touched))
        assert last
        store = client.app.state.realtime.store
        for cid in last:
            stored = store.features_of(cid, engine.as_of)
            want = batch.loc[cid, cols].astype(float)
            got = pd.Series({k: np.nan if stored[k] is None else stored[k] for k in cols})
            pd.testing.assert_series_equal(got, want, check_names=False)
        rows = model_inputs(build_snapshot(shop, D)).set_index(c.CUSTOMER_ID).loc[last]
        rows[cols] = batch.loc[last, cols].to_numpy()
        want_scores = engine.scorer.predict_proba(rows.reset_index())
        for cid, want in zip(last, want_scores, strict=True):
            body = client.get(f"/v1/customers/{cid}/scores").json()
            assert body["scores"][INTENT]["score"] == pytest.approx(float(want), abs=1e-12)
            assert body["scores"][INTENT]["model_version"] == engine.version


def test_events_before_the_batch_time_or_after_now_do_not_count(realtime_world, tmp_path):
    settings = fresh_settings(realtime_world, tmp_path)
    clock = Clock(D + timedelta(hours=12))
    with client_for(settings, clock) as client:
        engine = client.app.state.realtime.intent
        cid = next(iter(engine.known(engine.batch_scores)))
        before = engine.session_features([cid], clock.now)
        events = [
            {
                "event_type": "page_view",
                "customer_id": cid,
                "session_id": "s-old",
                "ts": (D - timedelta(hours=1)).isoformat(),
            },
            {
                "event_type": "page_view",
                "customer_id": cid,
                "session_id": "s-late",
                "ts": (D + timedelta(hours=13)).isoformat(),
            },
        ]
        ten = (D + timedelta(hours=10)).isoformat()
        events += [  # the API's own event types are no shop events: they never count
            {"event_type": "send", "customer_id": cid, "item_id": "I00002", "ts": ten},
            {"event_type": "consent_update", "customer_id": cid, "consent_ads": True, "ts": ten},
        ]
        r = client.post("/v1/events", json={"events": events})
        assert r.status_code == 200 and r.json()["stored"] == 4
        pd.testing.assert_frame_equal(engine.session_features([cid], clock.now), before)
        # one event inside [T, now): one more session, 0 days since it at its own instant
        events = [
            {
                "event_type": "add_to_cart",
                "customer_id": cid,
                "item_id": "I00001",
                "session_id": "s-now",
                "ts": (D + timedelta(hours=11)).isoformat(),
            }
        ]
        assert client.post("/v1/events", json={"events": events}).status_code == 200
        after = engine.session_features([cid], clock.now)
        assert after["sessions_7d"].iloc[0] == before["sessions_7d"].iloc[0] + 1
        assert after["days_since_last_session"].iloc[0] == pytest.approx(1 / 24)
        assert after["abandoned_carts_7d"].iloc[0] == before["abandoned_carts_7d"].iloc[0] + 1


def test_without_a_champion_events_are_stored_and_batch_scores_served(realtime_world, tmp_path):
    settings = fresh_settings(realtime_world, tmp_path)
    home = tmp_path / "home"
    shutil.copytree(settings.home / "scores", home / "scores")  # no MLflow store: no champion
    empty_store = f"sqlite:///{tmp_path / 'empty-mlflow.db'}"
    settings = settings.model_copy(update={"home": home, "mlflow_tracking_uri": empty_store})
    with client_for(settings, Clock(D + timedelta(hours=1))) as client:
        rt = client.app.state.realtime
        assert rt.intent is None and "champion" in rt.problem
        cid = pd.read_parquet(next((home / "scores").glob("*.parquet")))[c.CUSTOMER_ID].iloc[0]
        before = client.get(f"/v1/customers/{cid}/scores").json()
        r = client.post(
            "/v1/events", json={"events": [{"event_type": "page_view", "customer_id": cid}]}
        )
        assert r.status_code == 200 and r.json()["stored"] == 1 and r.headers["X-Rescored"] == "0"
        assert client.get(f"/v1/customers/{cid}/scores").json() == before


def test_concurrent_rescores_share_one_feature_query(realtime_world, tmp_path):
    import threading

    from serving.state import SQLiteStateStore

    settings = fresh_settings(realtime_world, tmp_path)
    with client_for(settings, Clock(D + timedelta(hours=12))) as client:
        engine = client.app.state.realtime.intent
        ids = engine.known(engine.batch_scores)[:6]
        events = [
            {"event_type": "page_view", "customer_id": cid, "session_id": f"{cid}-c"}
            | {"ts": D + timedelta(hours=11)}
            for cid in ids
        ]
        SQLiteStateStore(settings.resolved_state_file).record_events(
            events, D + timedelta(hours=11)
        )
        calls: list[int] = []
        real = engine.features.features_at

        def counted(customer_ids, online, t):
            calls.append(len(customer_ids))
            deadline = time.monotonic() + 30
            while len(calls) == 1 and len(engine._pending) < 5 and time.monotonic() < deadline:
                time.sleep(0.01)  # the first run holds on until the other five have queued
            return real(customer_ids, online, t)

        engine.features.features_at = counted
        results: dict[str, object] = {}

        def call(k: int) -> None:
            results[ids[k]] = engine.rescore([ids[k]], D + timedelta(hours=12, seconds=k))

        threads = [threading.Thread(target=call, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        engine.features.features_at = real
        assert sorted(calls) == [1, 5]  # six calls, two feature queries
        assert all(r.customers == 1 for r in results.values())
        stored = engine.store.scores_of(ids, INTENT, engine.as_of)
        assert sorted(stored) == ids
        for cid in ids:  # each stored row: the features at its own (combined) instant
            at = datetime.fromisoformat(stored[cid].scored_at)
            assert at >= D + timedelta(hours=12)
            want = engine.session_features([cid], at).iloc[0]
            got = engine.store.features_of(cid, engine.as_of)
            assert {k: (None if pd.isna(v) else float(v)) for k, v in want.items()} == got
