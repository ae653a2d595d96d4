"""The command line passes settings through and refuses bad input with a clear message."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from klantbeeld.cli import app, parse_as_of
from klantbeeld.errors import ConfigError, KlantbeeldError
from klantbeeld.settings import get_settings


class Stop(KlantbeeldError):
    """Raised by the fakes below once they have recorded their arguments."""


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("KLANTBEELD_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("KLANTBEELD_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _recorder(calls: list[dict[str, Any]]):
    def fake(*args: Any, **kwargs: Any) -> Any:
        calls.append({"args": args, **kwargs})
        raise Stop("recorded")

    return fake


@pytest.fixture
def local_zone_far_from_utc() -> Iterator[None]:
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.mark.usefixtures("local_zone_far_from_utc")
def test_parse_as_of_converts_aware_timestamps_to_utc() -> None:
    assert parse_as_of("2026-11-01T00:00:00+00:00") == datetime(2026, 11, 1)
    assert parse_as_of("2026-11-01T09:30:00+09:00") == datetime(2026, 11, 1, 0, 30)
    assert parse_as_of("2026-11-01T00:00:00Z") == datetime(2026, 11, 1)
    assert parse_as_of("2026-11-01") == datetime(2026, 11, 1)


def test_demo_data_bad_end_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo-data", "--end", "garbage", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--end" in result.output and "garbage" in result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, ValueError)


def test_features_uses_threads_and_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    import features.snapshot

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(features.snapshot, "compute_features", _recorder(calls))
    monkeypatch.setenv("KLANTBEELD_THREADS", "3")
    result = CliRunner().invoke(app, ["features", "--as-of", "2026-11-01"])
    assert result.exit_code == 2 and "recorded" in result.output
    assert calls[0]["threads"] == 3 and calls[0]["backend"] == "duckdb"


def test_recommend_out_defaults_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import serving.export

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(serving.export, "run_recommend", _recorder(calls))
    result = CliRunner().invoke(app, ["recommend", "--placement", "newsletter"])
    assert result.exit_code == 2 and "recorded" in result.output
    out = calls[0]["args"][3]
    assert out == tmp_path / "home" / "exports" / "recommendations.ndjson"


def test_unsupported_feature_backend_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLANTBEELD_FEATURE_BACKEND", "spark")
    with pytest.raises(ConfigError, match="KLANTBEELD_FEATURE_BACKEND.*duckdb"):
        get_settings()
    result = CliRunner().invoke(app, ["features", "--as-of", "2026-11-01"])
    assert result.exit_code == 2
    assert "KLANTBEELD_FEATURE_BACKEND" in result.output and "spark" in result.output


def test_open_shop_refuses_other_backends(tmp_path: Path) -> None:
    from features.shop import open_shop

    with pytest.raises(ConfigError, match="feature backend 'polars'.*duckdb"):
        open_shop(tmp_path, backend="polars")


def test_recommender_job_opens_the_shop_with_settings_threads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import training.recommender_job as job
    from klantbeeld.settings import Settings

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(job, "open_shop", _recorder(calls))
    with pytest.raises(Stop):
        job.train_recommender(Settings(home=tmp_path, threads=2), tmp_path)
    assert calls[0]["threads"] == 2 and calls[0]["backend"] == "duckdb"
