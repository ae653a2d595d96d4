"""Segment rules: parser, type checks against the known names, config errors, evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features import contract as c
from klantbeeld.cli import app
from klantbeeld.errors import ConfigError
from serving.segments.config import load_segments, parse_segments
from serving.segments.evaluate import evaluate_segments, segment_report, segment_table
from serving.segments.expressions import (
    BoolOp,
    Compare,
    Flag,
    Not,
    RuleError,
    check_types,
    evaluate,
    parse_rule,
)
from serving.segments.schema import default_schema

FRAME = pd.DataFrame(
    {
        "churn": [0.7, 0.6, 0.59, np.nan, 0.9],
        "days_since_last_purchase": [30.0, 120.0, 60.0, 45.0, 121.0],
        "consent_email": pd.array([True, True, True, None, False], dtype="boolean"),
        "lifecycle_stage": ["win_back", "retention", None, "win_back", "activation"],
    }
)


def _mask(rule: str) -> list[bool]:
    return evaluate(parse_rule(rule), FRAME).tolist()


def test_parse_tree_precedence_not_over_and_over_or():
    assert parse_rule("a > 1 or b and not c") == BoolOp(
        "or", (Compare("a", ">", (1.0,)), BoolOp("and", (Flag("b"), Not(Flag("c")))))
    )
    assert parse_rule("(a > 1 or b) and c") == BoolOp(
        "and", (BoolOp("or", (Compare("a", ">", (1.0,)), Flag("b"))), Flag("c"))
    )
    assert parse_rule("x IN ('a', \"b\") AND y between -1 and 2.5e1") == BoolOp(
        "and", (Compare("x", "in", ("a", "b")), Compare("y", "between", (-1.0, 25.0)))
    )


def test_evaluation_matches_hand_worked_masks():
    # between is inclusive on both ends; NaN/None never satisfy a comparison or flag
    rule = "churn >= 0.6 and days_since_last_purchase between 30 and 120 and consent_email"
    assert _mask(rule) == [True, True, False, False, False]
    assert _mask("churn < 0.6") == [False, False, True, False, False]
    assert _mask("not (churn < 0.6)") == [True, True, False, True, True]
    assert _mask("lifecycle_stage in ('win_back', 'activation')") == [
        True,
        False,
        False,
        True,
        True,
    ]
    assert _mask("lifecycle_stage != 'win_back' or churn > 0.8") == [
        False,
        True,
        False,
        False,
        True,
    ]
    assert _mask("consent_email == false") == [False, False, False, False, True]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("churn => 0.6", "unexpected '=>' at position 7 (operators: >="),
        ("churn gt 0.6", "unknown operator 'gt' after 'churn'"),
        ("churn >= ", "ends too early"),
        ("(churn > 1", "ends too early"),
        ("churn > 1 churn", "unexpected 'churn' at position 11"),
        ("__import__('os').system('ls')", "unexpected \".system('ls')\" at position 17"),
        ("churn; rm", "unexpected ';'"),
        ("", "empty"),
    ],
)
def test_syntax_errors_say_where_and_what(rule, message):
    with pytest.raises(RuleError, match=None) as info:
        parse_rule(rule)
    assert message in str(info.value)


def test_type_checks_against_the_declared_names():
    schema = default_schema()
    assert schema["days_since_last_purchase"] == "number"  # a {key} family of features
    assert schema["orders_90d"] == "number" and schema["lifecycle_stage"] == "string"
    assert schema["consent_ads"] == "bool" and schema["churn"] == "number"
    assert check_types(parse_rule("churn >= 0.6 and consent_email"), schema) == []
    assert check_types(parse_rule("churnn >= 0.6"), schema) == [
        "unknown name 'churnn' (did you mean 'churn'?)"
    ]
    assert check_types(parse_rule("city > 'A'"), schema) == [
        "operator '>' needs a number, but 'city' is string"
    ]
    assert check_types(parse_rule("recency_days"), schema) == [
        "type mismatch: 'recency_days' is number, used alone as a true/false flag"
    ]


def test_config_errors_name_the_segment_and_the_rule():
    bad = {
        "segments": {
            "ok": {"rule": "churn >= 0.6"},
            "typo": {"rule": "churn >= 0.6 and dayz_since_last_purchase > 30"},
            "op": {"rule": "churn => 0.6"},
            "types": {"rule": "consent_email == 0.6"},
            "fields": {"rule": "churn > 0.1", "colour": "red"},
        }
    }
    with pytest.raises(ConfigError) as info:
        parse_segments(bad, "mine.yaml")
    msg = str(info.value)
    assert "4 problem(s)" in msg and "'ok'" not in msg
    assert (
        "mine.yaml: segment 'typo', rule 'churn >= 0.6 and dayz_since_last_purchase > 30': "
        "unknown name 'dayz_since_last_purchase'" in msg
    )
    assert "segment 'op', rule 'churn => 0.6': unexpected '=>'" in msg
    assert (
        "segment 'types', rule 'consent_email == 0.6': type mismatch: 'consent_email' is "
        "bool, compared with number 0.6" in msg
    )
    assert "segment 'fields', field 'colour': Extra inputs are not permitted" in msg


def test_packaged_config_loads_and_a_missing_file_is_named(tmp_path):
    segs = load_segments()
    assert {"likely_buyers", "churn_risk"} <= set(segs)
    assert "days_since_last_purchase between 30 and 120" in segs["churn_risk"].rule
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_segments(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("segments:\n  a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_segments(tmp_path / "bad.yaml")


def test_segment_table_report_sizes_and_overlaps_by_hand():
    customers = pd.DataFrame(
        {c.CUSTOMER_ID: ["A", "B", "C"], c.CONSENT_EMAIL: [True, False, True], "email": "x"}
    )
    features = pd.DataFrame({c.CUSTOMER_ID: ["A", "C"], "orders_90d": [3, 0]})
    scores = pd.DataFrame(
        {c.CUSTOMER_ID: ["C", "B", "A"], "churn_score": [0.9, 0.8, 0.1], "churn_top_up": [[]] * 3}
    )
    table = segment_table(customers, features, scores)
    assert table.columns.tolist() == [c.CUSTOMER_ID, c.CONSENT_EMAIL, "orders_90d", "churn"]
    segs = parse_segments(
        {
            "segments": {
                "risky": {"rule": "churn >= 0.5"},
                "buyers": {"rule": "orders_90d >= 1 or consent_email"},
            }
        },
        "t.yaml",
    )
    masks = evaluate_segments(segs, table)
    assert masks["risky"].tolist() == [False, True, True]
    assert masks["buyers"].tolist() == [True, False, True]
    report = segment_report(masks)
    assert report.sizes == {"risky": 2, "buyers": 2}
    assert report.overlap.loc["risky", "buyers"] == 1 and report.overlap.loc["risky", "risky"] == 2
    # a known name missing from the data (no scores for the model) is named with its segment
    no_scores = segment_table(customers, features, None)
    with pytest.raises(ConfigError, match="segment 'risky', rule 'churn >= 0.5': unknown name"):
        evaluate_segments(segs, no_scores)


def test_cli_segments_list_and_show_with_consent(tmp_path, monkeypatch):
    data = tmp_path / "shop"
    data.mkdir()
    pd.DataFrame(
        {
            c.CUSTOMER_ID: ["C1", "C2", "C3"],
            c.CREATED_AT: "2026-01-01 00:00:00",
            c.CONSENT_EMAIL: [True, False, True],
        }
    ).to_csv(data / "customers.csv", index=False)
    pd.DataFrame({c.ITEM_ID: ["I1"], c.TITLE: ["Item"], c.CATEGORY: ["toys"]}).to_csv(
        data / "items.csv", index=False
    )
    pd.DataFrame(
        {c.CUSTOMER_ID: ["C1"], c.TS: ["2026-02-01 10:00:00"], c.EVENT_TYPE: ["page_view"]}
    ).to_csv(data / "events.csv", index=False)
    home = tmp_path / "home"
    (home / "scores").mkdir(parents=True)
    pq.write_table(
        pa.table({c.CUSTOMER_ID: ["C1", "C2", "C3"], "churn_score": [0.9, 0.95, 0.2]}),
        home / "scores" / "customer_scores_as_of=2026-03-01.parquet",
    )
    (tmp_path / "segs.yaml").write_text("segments:\n  risky:\n    rule: churn >= 0.5\n")
    monkeypatch.setenv("KLANTBEELD_HOME", str(home))
    monkeypatch.setenv("KLANTBEELD_DATA_DIR", str(data))
    monkeypatch.setenv("KLANTBEELD_SEGMENTS_FILE", str(tmp_path / "segs.yaml"))
    from klantbeeld.settings import get_settings

    get_settings.cache_clear()
    try:
        listed = CliRunner().invoke(app, ["segments", "list", "--report", str(tmp_path / "rep")])
        shown = CliRunner().invoke(
            app, ["segments", "show", "risky", "--out", str(tmp_path / "r.csv")]
        )
        unknown = CliRunner().invoke(app, ["segments", "show", "x", "--out", str(tmp_path / "x")])
    finally:
        get_settings.cache_clear()
    assert listed.exit_code == 0, listed.output
    assert "risky" in listed.output and "2" in listed.output
    assert shown.exit_code == 0, shown.output
    assert pd.read_csv(tmp_path / "r.csv")[c.CUSTOMER_ID].tolist() == ["C1"]  # C2: no consent
    assert "1 without email consent left out" in " ".join(shown.output.split())
    assert unknown.exit_code == 2 and "unknown segment 'x'" in unknown.output
    assert (tmp_path / "rep" / "segment_overlaps.png").read_bytes()[:4] == b"\x89PNG"
    sizes = pd.read_csv(tmp_path / "rep" / "segment_sizes.csv")
    assert sizes.to_dict("records") == [{"segment": "risky", "customers": 2, "share": 0.666667}]


def test_score_threshold_keeps_expected_conversions_and_rfm_fields():
    from serving.segments.rfm import add_rfm, rfm_segment

    customers = pd.DataFrame({c.CUSTOMER_ID: list("ABCDE"), c.CONSENT_EMAIL: [True] * 5})
    scores = pd.DataFrame(
        {
            c.CUSTOMER_ID: list("ABCDE"),
            "conversion_intent_score": [0.5, 0.3, 0.1, 0.06, 0.04],  # sum 1.0
            "repurchase_timing_expected_days": [3.0, 20.0, np.nan, 6.0, 1.0],
        }
    )
    table = segment_table(customers, None, scores)
    assert "days_to_next_purchase" in table.columns
    segs = parse_segments(
        {
            "segments": {
                "buyers": {
                    "rule": "consent_email",
                    "score": "conversion_intent",
                    "keep_expected_conversions": 0.8,
                },
                "soon": {"rule": "days_to_next_purchase <= 7"},
            }
        },
        "t.yaml",
    )
    masks = evaluate_segments(segs, table)
    # 0.5 + 0.3 = 0.8 of the expected conversions: A and B
    assert masks["buyers"].tolist() == [True, True, False, False, False]
    assert masks["soon"].tolist() == [True, False, False, True, True]
    with pytest.raises(ConfigError, match="'score' needs exactly one"):
        parse_segments({"segments": {"x": {"rule": "consent_email", "score": "churn"}}}, "t")

    r = np.array([5, 5, 4, 1, 0, 3])
    f = np.array([5, 1, 2, 4, 0, 2])
    assert rfm_segment(r, f).tolist() == [
        "champions",
        "new",
        "promising",
        "at_risk",
        "none",
        "needs_attention",
    ]
    rfm = add_rfm(
        pd.DataFrame(
            {
                "recency_days": [1.0, 200.0, 50.0, np.nan],
                "orders_365d": [9, 1, 3, 0],
                "monetary_365d": [900.0, 10.0, 90.0, 0.0],
            }
        )
    )
    assert rfm["rfm_r"].tolist()[:3] == [5, 2, 4] and rfm["rfm_r"].iloc[3] == 0
    assert rfm["rfm_segment"].iloc[3] == "none"
