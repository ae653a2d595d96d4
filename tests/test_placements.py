"""Placement config: packaged defaults load; every bad file names file, placement and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from klantbeeld.errors import ConfigError
from klantbeeld.settings import Settings
from serving.placements import load_placements, parse_placements, placements_from_settings

GOOD = """
placements:
  weekly:
    channel: email
    n_items: 4
    candidate_sources: [als, popular]
    rules:
      exclude_sent_days: 7
      max_per_category: 2
      price_band: {min: 5, max: 50}
    content_blocks:
      baking: [baking]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "placements.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_packaged_defaults_declare_the_four_placements():
    config = load_placements()
    assert config.names == ["newsletter", "cart_abandonment", "post_purchase", "web_for_you"]
    news = config.get("newsletter")
    assert (news.channel, news.consent_column, news.n_items) == ("email", "consent_email", 6)
    assert news.rules.exclude_sent_days == 7 and news.rules.max_per_category == 2
    cart = config.get("cart_abandonment")
    assert cart.rules.include_cart and cart.rules.require_cart
    assert config.get("web_for_you").consent_column is None


def test_user_file_from_settings(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD)
    monkeypatch.setenv("KLANTBEELD_PLACEMENTS_FILE", str(path))
    config = placements_from_settings(Settings())
    assert config.names == ["weekly"]
    weekly = config.get("weekly")
    assert (weekly.rules.price_band.min, weekly.rules.price_band.max) == (5, 50)
    assert weekly.rules.exclude_purchased.days == 90  # default filled in
    assert config.source == str(path)


def test_bad_field_names_file_placement_and_field(tmp_path):
    path = write(tmp_path, GOOD.replace("max_per_category: 2", "max_per_category: 0"))
    with pytest.raises(ConfigError) as err:
        load_placements(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "placement 'weekly', field 'rules.max_per_category'" in msg
    assert "greater than or equal to 1" in msg and "(got 0)" in msg


def test_every_problem_is_listed(tmp_path):
    text = GOOD.replace("channel: email", "channel: pigeon").replace(
        "n_items: 4", "n_items: 4\n    colour: red"
    )
    with pytest.raises(ConfigError) as err:
        load_placements(write(tmp_path, text))
    msg = str(err.value)
    assert "2 problem(s)" in msg
    assert "placement 'weekly', field 'channel'" in msg and "'pigeon'" in msg
    assert "placement 'weekly', field 'colour': Extra inputs are not permitted" in msg


def test_unknown_candidate_source_and_missing_required_field():
    data = {"placements": {"p": {"channel": "web", "candidate_sources": ["magic"]}}}
    with pytest.raises(ConfigError) as err:
        parse_placements(data, "mine.yaml")
    msg = str(err.value)
    assert "mine.yaml: placement 'p', field 'candidate_sources.0'" in msg
    assert "mine.yaml: placement 'p', field 'n_items': Field required" in msg


def test_cross_field_checks():
    base = {"channel": "web", "n_items": 5, "candidate_sources": ["als"]}
    cases = {
        "window": {**base, "rules": {"exclude_purchased": {"window_open": 2, "window_close": 1}}},
        "band": {**base, "rules": {"price_band": {"min": 30, "max": 10}}},
        "cart": {**base, "rules": {"require_cart": True}},
        "size": {**base, "max_candidates": 3},
    }
    with pytest.raises(ConfigError) as err:
        parse_placements({"placements": cases}, "x.yaml")
    msg = str(err.value)
    assert "placement 'window', field 'rules.exclude_purchased'" in msg
    assert "window_close (1.0) must be >= window_open (2.0)" in msg
    assert "placement 'band', field 'rules.price_band'" in msg
    assert "placement 'cart', field 'rules'" in msg and "require_cart needs include_cart" in msg
    assert "max_candidates (3) must be >= n_items (5)" in msg


def test_invalid_yaml_names_line(tmp_path):
    path = write(tmp_path, "placements:\n  a: [unclosed\n")
    with pytest.raises(ConfigError, match=r"placements.yaml: not valid YAML at line 3"):
        load_placements(path)


def test_missing_file_and_bad_top_level(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_placements(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="top-level key 'placements'"):
        load_placements(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="unknown top-level key"):
        parse_placements({"placements": {}, "extra": 1}, "f.yaml")


def test_unknown_placement_lists_known_ones():
    with pytest.raises(ConfigError, match="'homepage' is not declared .*known: cart_abandonment"):
        load_placements().get("homepage")
