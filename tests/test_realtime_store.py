"""The online store of real-time scoring on its own: a result read from fewer events (or at
an earlier instant) never overwrites a newer one, the change log records exactly the
score changes, effective consent changes and erasures, and the cursor of an instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from serving.online_store import OnlineStore, ScoreUpdate
from serving.state import SQLiteStateStore

T = datetime(2026, 11, 1, 12)
AS_OF = "2026-11-01"


def _update(cid: str, score: float, seq: int, at: datetime) -> ScoreUpdate:
    return ScoreUpdate(cid, "conversion_intent", score, 3, ["a"], [], {"sessions_7d": 1.0}, seq, at)


def test_newer_results_win_and_only_changes_are_logged(tmp_path):
    store = OnlineStore(tmp_path / "state.sqlite")
    batch = {"C1": 0.1, "C2": 0.5}
    assert (
        store.write_scores([_update("C1", 0.3, 5, T), _update("C2", 0.5, 2, T)], AS_OF, batch) == 1
    )
    # fewer events read, or the same events at an earlier instant: stale, skipped
    assert store.write_scores([_update("C1", 0.9, 4, T + timedelta(seconds=1))], AS_OF, batch) == 0
    assert store.write_scores([_update("C1", 0.9, 5, T - timedelta(seconds=1))], AS_OF, batch) == 0
    assert store.scores_of(["C1"], "conversion_intent", AS_OF)["C1"].score == 0.3
    # same score again: stored (later instant), not a change; another batch day is apart
    assert store.write_scores([_update("C1", 0.3, 5, T + timedelta(seconds=2))], AS_OF, batch) == 0
    assert store.scores_of(["C1"], "conversion_intent", "2026-10-31") == {}
    assert store.write_scores([_update("C1", 0.2, 6, T + timedelta(seconds=3))], AS_OF, batch) == 1
    rows = store.changes_after(0)
    assert [(r.customer_id, r.kind, r.before, r.after) for r in rows] == [
        ("C1", "score", 0.1, 0.3),  # the first change starts from the batch score
        ("C1", "score", 0.3, 0.2),
    ]
    assert store.changes_after(rows[0].seq) == rows[1:]
    assert store.features_of("C1", AS_OF) == {"sessions_7d": 1.0}
    assert store.customer_scores("C1", AS_OF)["conversion_intent"].top_up == ["a"]


def test_consent_and_erasure_go_to_the_change_log(tmp_path):
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(milliseconds=1)
    state = SQLiteStateStore(tmp_path / "state.sqlite")
    store = OnlineStore(tmp_path / "state.sqlite")
    store.write_scores([_update("C1", 0.3, 1, T)], AS_OF, {"C1": 0.1})

    def consent(value: bool, hours: int):
        ev = {"event_type": "consent_update", "customer_id": "C1", "consent_ads": value}
        state.record_events([ev | {"ts": T + timedelta(hours=hours)}], T)

    consent(False, 1)  # none online before -> withdrawn: logged
    consent(False, 2)  # no change: not logged
    consent(True, 0)  # older than the stored update: consent stays withdrawn, not logged
    email = {"event_type": "consent_update", "customer_id": "C1", "consent_email": False}
    state.record_events([email | {"ts": T + timedelta(hours=3)}], T)  # not ads: not logged
    kinds = [(r.kind, r.before, r.after) for r in store.changes_after(0)]
    assert kinds == [("score", 0.1, 0.3), ("consent_ads", None, 0.0)]
    assert store.cursor_at(start) == 0
    cursor = store.cursor_at(None)
    assert cursor == store.changes_after(0)[-1].seq

    assert state.erase_customer("C1", T) == 5  # 4 events + consent; online rows uncounted
    assert store.changes_after(0)[0].kind == "erasure"  # the customer's earlier rows are gone
    assert store.scores_of(["C1"], "conversion_intent", AS_OF) == {}
    assert store.features_of("C1", AS_OF) is None
    assert state.erase_customer("C1", T) == 0 and len(store.changes_after(0)) == 1
    # an erased customer is never rescored
    assert store.write_scores([_update("C1", 0.9, 9, T)], AS_OF, {}) == 0
    assert store.scores_of(["C1"], "conversion_intent", AS_OF) == {}
