"""Tracking store setup and the challenger → champion rule, on a throwaway SQLite store."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from klantbeeld.settings import Settings
from training import registry
from training.registry import decide, promote_if_better, register_challenger
from training.tracking import configure_mlflow, experiment_name, start_run


class _Const(mlflow.pyfunc.PythonModel):
    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, context, model_input, params=None):  # noqa: ARG002
        return pd.Series([self.value] * len(model_input))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home)
    configure_mlflow(settings)
    return settings


def _log(settings: Settings, model: str, auc: float, period: str, value: float) -> str:
    with start_run(model, settings, tags={registry.TEST_PERIOD_TAG: period}) as run:
        mlflow.log_metric("test_roc_auc", auc)
        mlflow.pyfunc.log_model(
            name="model", python_model=_Const(value), pip_requirements=["mlflow"]
        )
    return run.info.run_id


def test_experiment_name() -> None:
    assert experiment_name("churn") == "klantbeeld-churn"
    with pytest.raises(ValueError, match="model"):
        experiment_name("")


def test_configure_creates_local_store(store: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = configure_mlflow(store)
    assert uri == f"sqlite:///{(Path(store.home) / 'mlflow.db').resolve()}"
    assert store.artifact_root.is_dir()
    assert mlflow.get_tracking_uri() == uri


def test_env_uri_overrides_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training.tracking import tracking_uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert tracking_uri(Settings(home=tmp_path)) == "http://tracking:5000"
    assert tracking_uri(Settings(home=tmp_path, mlflow_tracking_uri="sqlite:///x.db")) == (
        "sqlite:///x.db"
    )


def test_decide_rule() -> None:
    assert decide(0.7, None, has_champion=False, comparable=False) == (True, "no champion yet")
    assert decide(0.7, 0.8, has_champion=True, comparable=True, force=True) == (True, "forced")
    assert decide(0.81, 0.8, has_champion=True, comparable=True)[0] is True
    assert decide(0.8, 0.8, has_champion=True, comparable=True)[0] is False  # tie keeps champion
    assert decide(0.9, 0.8, has_champion=True, comparable=False)[0] is False
    assert decide(0.1, 0.2, has_champion=True, comparable=True, higher_is_better=False)[0] is True


def test_challenger_champion_flow(store: Settings) -> None:
    configure_mlflow(store)
    name = "klantbeeld-regtest"
    v1 = register_challenger(_log(store, "regtest", 0.70, "2026-01-01/2026-01-08", 0.1), "regtest")
    assert v1 == 1
    d1 = promote_if_better("regtest", v1, "test_roc_auc")
    assert (d1.promoted, d1.reason, d1.champion_version) == (True, "no champion yet", None)

    v2 = register_challenger(_log(store, "regtest", 0.65, "2026-01-01/2026-01-08", 0.2), "regtest")
    d2 = promote_if_better("regtest", v2, "test_roc_auc")
    assert (d2.promoted, d2.champion_version, d2.champion_value) == (False, 1, 0.70)

    # different test period, no re-evaluation of the champion: not comparable
    v3 = register_challenger(_log(store, "regtest", 0.99, "2026-02-01/2026-02-08", 0.3), "regtest")
    assert promote_if_better("regtest", v3, "test_roc_auc").promoted is False

    v4 = register_challenger(_log(store, "regtest", 0.75, "2026-01-01/2026-01-08", 0.4), "regtest")
    assert promote_if_better("regtest", v4, "test_roc_auc").promoted is True

    client = mlflow.MlflowClient()
    assert int(client.get_model_version_by_alias(name, "champion").version) == v4
    assert int(client.get_model_version_by_alias(name, "challenger").version) == v4
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert loaded.predict(pd.DataFrame({"x": [1.0, 2.0]})).tolist() == [0.4, 0.4]

    forced = promote_if_better("regtest", v3, "test_roc_auc", force=True)
    assert (forced.promoted, forced.reason) == (True, "forced")
    assert registry.champion_version("regtest") == v3

    # one loader for every consumer: by alias, version first
    version, model = registry.load_champion("regtest")
    assert version == v3
    assert model.predict(pd.DataFrame({"x": [1.0]})).tolist() == [0.3]
    version, model = registry.load_champion("regtest", registry.CHALLENGER)
    assert (version, model.predict(pd.DataFrame({"x": [1.0]})).tolist()) == (v4, [0.4])


def test_load_champion_without_one_names_the_command(store: Settings) -> None:
    from klantbeeld.errors import NotTrainedError

    configure_mlflow(store)
    with pytest.raises(NotTrainedError, match=r"klantbeeld-nothing@champion.*train nothing"):
        registry.load_champion("nothing")
    assert registry.alias_version("nothing", "champion") is None


def test_format_test_period_is_iso_dates() -> None:
    from datetime import date, datetime

    got = registry.format_test_period(datetime(2026, 10, 17, 13, 5), datetime(2026, 10, 31))
    assert got == "2026-10-17/2026-10-31"
    assert registry.format_test_period(date(2026, 1, 1), datetime(2026, 1, 1, 23)) == (
        "2026-01-01/2026-01-01"
    )
    with pytest.raises(ValueError, match="before its start"):
        registry.format_test_period(date(2026, 2, 1), date(2026, 1, 31))


def test_model_dir_is_under_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert registry.model_dir(settings, "recommender") == tmp_path / "models" / "recommender"
    with pytest.raises(ValueError, match="identifier"):
        registry.model_dir(settings, "../etc")
