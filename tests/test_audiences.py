"""Audience export: hashed identifiers, consent, data quality, holdout, layouts, CLI."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features import contract as c
from klantbeeld.cli import app
from klantbeeld.errors import ConfigError
from klantbeeld.settings import Settings
from serving.api.scores import ScoreIndex
from serving.audiences import export as ex
from serving.audiences.definitions import AudienceDefinition, get_audience, parse_audiences
from serving.audiences.holdout import holdout_draw, in_holdout
from serving.audiences.identifiers import normalise_email, normalise_phone
from serving.audiences.index import AudienceIndex
from serving.audiences.quality import fake_email, fake_phone, quality_score


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- identifiers: reference hashes written out by hand ------------------------------------
@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("06-20 48 19 37", "NL", "+31620481937"),
        ("+31 6 2048 1937", "NL", "+31620481937"),
        ("0031620481937", "NL", "+31620481937"),
        ("+31 (0)6 20481937", "NL", "+31620481937"),
        (" 020 - 624 1111 ", "NL", "+31206241111"),
        ("0470 12 34 56", "BE", "+32470123456"),
        ("0049 30 1234567", "NL", "+49301234567"),
        ("06123", "NL", None),
        ("not a phone", "NL", None),
        ("", "NL", None),
        (None, "NL", None),
        (float("nan"), "NL", None),
    ],
)
def test_phone_is_e164_from_the_phonenumbers_library(raw, region, e164):
    assert normalise_phone(raw, region) == e164


def test_email_is_trimmed_and_lower_cased():
    assert normalise_email("  Ann.De.Vries@Example.COM \t") == "ann.de.vries@example.com"
    assert normalise_email("no-at-sign") is None
    assert normalise_email("a@b") is None  # no top-level domain
    assert normalise_email(None) is None


# -- data quality -------------------------------------------------------------------------
def test_obviously_fake_contact_data_lowers_the_quality_score():
    assert fake_email("test@test.com") and fake_email("asdf@gmail.com")
    assert fake_email("aaaa@hotmail.nl") and fake_email("x@mailinator.com")
    assert not fake_email("ann.de.vries@gmail.com") and not fake_email(None)
    assert fake_phone("+31612345678")  # 0612345678
    assert fake_phone("+31600000000") and fake_phone("+31611111111")
    assert fake_phone("+31687654321") and fake_phone("+31612121212")
    assert not fake_phone("+31620481937") and not fake_phone(None)
    # the country code (1-3 digits) is not part of the checked number
    assert not fake_phone("+12025550123") and fake_phone("+493012345678")
    assert not fake_phone("+35315550123") and fake_phone("+353111111111")
    assert quality_score("ann@gmail.com", "+31620481937") == 1.0
    assert quality_score("test@test.com", "+31620481937") == 0.5
    assert quality_score("test@test.com", "+31612345678") == 0.0


# -- holdout --------------------------------------------------------------------------------
def test_holdout_is_deterministic_independent_per_audience_and_near_its_share():
    ids = [f"C{k:06d}" for k in range(20_000)]
    a = in_holdout(ids, "likely_buyers", 0.1)
    assert np.array_equal(a, in_holdout(ids, "likely_buyers", 0.1))
    assert abs(a.mean() - 0.1) < 0.01
    b = in_holdout(ids, "churn_risk", 0.1)
    assert abs((a & b).mean() - 0.01) < 0.004  # independent draws
    # reference: first 8 bytes of sha256("<audience>\x1f<id>") / 2**64
    ref = int.from_bytes(hashlib.sha256(b"likely_buyers\x1fC000042").digest()[:8], "big") / 2**64
    assert holdout_draw(["C000042"], "likely_buyers")[0] == pytest.approx(ref, abs=0)
    assert not in_holdout(ids, "x", 0.0).any()
    with pytest.raises(ValueError, match="share"):
        in_holdout(ids, "x", 1.0)


# -- definitions ----------------------------------------------------------------------------
def test_keep_expected_conversions_threshold_is_worked_out_by_hand():
    d = AudienceDefinition(name="a", score="m", keep_expected_conversions=0.8)
    # sorted .5 .3 .1 .1 (sum 1.0): .5+.3 = .8 reaches 80% -> threshold .3
    assert d.threshold(np.array([0.1, 0.5, np.nan, 0.3, 0.1])) == 0.3
    assert AudienceDefinition(name="a", score="m", min_score=0.4).threshold(np.zeros(2)) == 0.4


def test_packaged_audiences_load_and_bad_configs_name_audience_and_field():
    s = Settings()
    assert get_audience(s, "likely_buyers").keep_expected_conversions == 0.95
    assert get_audience(s, "churn_risk").score == "churn"
    with pytest.raises(ConfigError, match="unknown audience 'nope'.*churn_risk"):
        get_audience(s, "nope")
    bad = {"audiences": {"x": {"score": "churn"}, "y": {"score": "churn", "min_score": 2}}}
    with pytest.raises(ConfigError) as info:
        parse_audiences(bad, "a.yaml")
    msg = str(info.value)
    assert "audience 'x'" in msg and "exactly one of 'min_score'" in msg
    assert "audience 'y', field 'min_score'" in msg


# -- export -----------------------------------------------------------------------------------
CUSTOMERS = pd.DataFrame(
    {
        c.CUSTOMER_ID: [f"C{k:03d}" for k in range(1, 401)],
        c.CONSENT_ADS: [k % 5 != 0 for k in range(1, 401)],  # every fifth: no ads consent
        c.CONSENT_EMAIL: True,
        c.EMAIL: [f"  Klant.{k}@Shop-Mail.NL " for k in range(1, 401)],
        c.PHONE: [f"06-2{k:03d} 19 37" if k % 2 else f"+31 6 3{k:03d}1937" for k in range(1, 401)],
    }
)
# three obviously fake contacts (with ads consent)
CUSTOMERS.loc[0, c.EMAIL] = "test@test.com"
CUSTOMERS.loc[1, c.PHONE] = "06-12 34 56 78"
CUSTOMERS.loc[2, c.EMAIL] = "AAAA@gmail.com"
# one with nothing usable
CUSTOMERS.loc[5, [c.EMAIL, c.PHONE]] = [None, "n/a"]


def _scores_table(n: int = 400) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table(
        {
            c.CUSTOMER_ID: [f"C{k:03d}" for k in range(1, n + 1)],
            "churn_score": rng.uniform(0, 1, n),
            "churn_model_version": pa.array([1] * n, pa.int32()),
            "conversion_intent_score": rng.beta(1, 8, n),
            "conversion_intent_model_version": pa.array([1] * n, pa.int32()),
        }
    )


@pytest.fixture()
def index(tmp_path):
    pq.write_table(_scores_table(), tmp_path / "scores.parquet")
    scores = ScoreIndex.open(tmp_path / "scores.parquet", tmp_path / "cache")
    return AudienceIndex(CUSTOMERS, scores)


RAW = {c.EMAIL: CUSTOMERS[c.EMAIL].dropna(), c.PHONE: CUSTOMERS[c.PHONE]}


def _reference_hashes(customer_ids, layout: str) -> set[tuple[str, str]]:
    """Hashes computed independently of the library: normalise by hand from the ids."""
    out = set()
    for cid in customer_ids:
        k = int(cid[1:])
        email = sha(f"klant.{k}@shop-mail.nl")
        national = f"62{k:03d}1937" if k % 2 else f"63{k:03d}1937"
        phone = sha(("+31" if layout == "google" else "31") + national)
        out.add((email, phone))
    return out


@pytest.mark.parametrize("layout", ["google", "meta"])
def test_export_has_only_consenting_plausible_non_holdout_members(tmp_path, index, layout):
    settings = Settings(home=tmp_path / "home", audience_holdout_share=0.2)
    d = AudienceDefinition(name="churn_risk", score="churn", min_score=0.5)
    out = tmp_path / "exports" / f"churn-{layout}.csv"
    report = ex.export_audience(settings, d, out, layout, index=index)  # type: ignore[arg-type]

    text = out.read_text()
    rows = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert rows.columns.tolist() == list(ex.LAYOUT_HEADERS[layout])
    # no raw identifier of anyone, in any spelling
    for raw in [*RAW[c.EMAIL], *RAW[c.PHONE]]:
        assert str(raw).strip().lower() not in text.lower()
    assert "C0" not in text and "klant" not in text.lower() and "+31" not in text

    churn = dict(
        zip(CUSTOMERS[c.CUSTOMER_ID], _scores_table()["churn_score"].to_numpy(), strict=True)
    )
    above = {cid for cid, s in churn.items() if s >= 0.5}
    consent = set(CUSTOMERS.loc[CUSTOMERS[c.CONSENT_ADS], c.CUSTOMER_ID])
    fake = {"C001", "C002", "C003"}
    held_ref = {
        cid
        for cid in above & consent - fake - {"C006"}
        if int.from_bytes(hashlib.sha256(f"churn_risk\x1f{cid}".encode()).digest()[:8], "big")
        / 2**64
        < 0.2
    }
    expected = above & consent - fake - {"C006"} - held_ref
    assert held_ref and expected  # the fixture exercises both
    assert set(map(tuple, rows.values.tolist())) == _reference_hashes(expected, layout)
    assert len(rows) == len(expected)

    holdout = pd.read_csv(ex.holdout_path(out), dtype={c.CUSTOMER_ID: str})
    assert set(holdout[c.CUSTOMER_ID]) == held_ref
    assert set(holdout["audience"]) == {"churn_risk"}

    saved = json.loads(ex.report_path(out).read_text())
    assert saved["counts"] == report.counts
    assert report.counts == {
        "scored": 400,
        "above_threshold": len(above),
        "no_ads_consent": len(above - consent),
        "fake_contact": len(fake & above & consent),
        "no_identifier": len({"C006"} & above & consent),
        "holdout": len(held_ref),
        "exported": len(expected),
    }
    assert saved["holdout_share"] == 0.2 and saved["layout"] == layout


def test_failed_export_leaves_previous_files_intact(tmp_path, index, monkeypatch):
    settings = Settings(home=tmp_path / "home")
    d = AudienceDefinition(name="churn_risk", score="churn", min_score=0.5)
    out = tmp_path / "a.csv"
    ex.export_audience(settings, d, out, "google", index=index)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("a*")}

    def boom(*args, **kwargs):
        yield b"Email,Phone\n"
        raise OSError("disk full")

    monkeypatch.setattr(ex, "csv_lines", boom)
    with pytest.raises(OSError, match="disk full"):
        ex.export_audience(settings, d, out, "google", index=index)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("a*")} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unknown_score_is_a_config_error(index):
    d = AudienceDefinition(name="a", score="lifetime_value", min_score=0.5)
    with pytest.raises(ConfigError, match="'lifetime_value'.*scored models: churn"):
        ex.select_members(index, d, 0.1)


# -- CLI end to end: shop folder + scores file ------------------------------------------------
def test_cli_audience_export_writes_file_holdout_and_report(tmp_path, monkeypatch):
    data = tmp_path / "shop"
    data.mkdir()
    customers = CUSTOMERS.assign(**{c.CREATED_AT: "2026-01-01 00:00:00"})
    customers.to_csv(data / "customers.csv", index=False)
    pd.DataFrame({c.ITEM_ID: ["I1"], c.TITLE: ["Item"], c.CATEGORY: ["toys"]}).to_csv(
        data / "items.csv", index=False
    )
    pd.DataFrame(
        {c.CUSTOMER_ID: ["C001"], c.TS: ["2026-02-01 10:00:00"], c.EVENT_TYPE: ["page_view"]}
    ).to_csv(data / "events.csv", index=False)
    home = tmp_path / "home"
    (home / "scores").mkdir(parents=True)
    pq.write_table(_scores_table(), home / "scores" / "customer_scores_as_of=2026-03-01.parquet")
    monkeypatch.setenv("KLANTBEELD_HOME", str(home))
    monkeypatch.setenv("KLANTBEELD_DATA_DIR", str(data))
    from klantbeeld.settings import get_settings

    get_settings.cache_clear()
    out = tmp_path / "likely.csv"
    try:
        result = CliRunner().invoke(
            app, ["audience", "export", "likely_buyers", "--out", str(out), "--layout", "meta"]
        )
        bad = CliRunner().invoke(app, ["audience", "export", "nope", "--out", str(out)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    report = json.loads(ex.report_path(out).read_text())
    assert f"{report['counts']['exported']:,} members of likely_buyers" in result.output
    assert pd.read_csv(out).columns.tolist() == ["email", "phone"]
    assert len(pd.read_csv(out)) == report["counts"]["exported"] > 0
    assert ex.holdout_path(out).is_file()
    assert bad.exit_code == 2 and "unknown audience 'nope'" in bad.output


def test_phone_region_setting_refuses_unknown_regions():
    assert Settings(phone_default_region="BE").phone_default_region == "BE"
    with pytest.raises(ValueError, match="'XX' is not a region"):
        Settings(phone_default_region="XX")
