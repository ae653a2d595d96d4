"""Training through a real ``mlflow server``: track, register, promote, load the champion.

Users point klantbeeld at their team's tracking server with ``KLANTBEELD_MLFLOW_TRACKING_URI``
(or ``MLFLOW_TRACKING_URI``). This starts one (SQLite backend store, local artifact
destination served through the server) on a free loopback port and checks that a churn job
logs its run, registers the model, moves ``champion`` and that the champion loads back
through the server and predicts — with nothing written to the working directory or the
local default store.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from klantbeeld.settings import Settings
from training.backtest import BacktestConfig
from training.scoring_job import CHURN, run_scoring_job

pytestmark = pytest.mark.slow

N_CUSTOMERS = 2500
CONFIG = BacktestConfig(n_train=1, step_days=28, num_threads=1)
START_TIMEOUT_S = 90.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(
        f"mlflow server not healthy after {START_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("mlflow-server")
    artifacts = root / "artifacts"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "server.log"
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{root / 'backend.db'}",
        "--artifacts-destination", str(artifacts),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_healthy(url, proc, log)
        yield url, artifacts
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def trained(server, tmp_path_factory: pytest.TempPathFactory):
    from features.demo_shop import generate_demo_shop

    url, _ = server
    shop = tmp_path_factory.mktemp("shop") / "shop"
    generate_demo_shop(shop, n_customers=N_CUSTOMERS, seed=11)
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home, seed=3, mlflow_tracking_uri=url)
    cwd = tmp_path_factory.mktemp("cwd")
    old = Path.cwd()
    os.chdir(cwd)  # a job that wrote relative to the working directory would show up here
    try:
        cache: dict = {}
        first = run_scoring_job(CHURN, settings, shop, config=CONFIG, cache=cache)
        forced = run_scoring_job(
            CHURN, settings, shop, config=CONFIG, cache=cache, pit_check=False, force=True
        )
    finally:
        os.chdir(old)
    return first, forced, home, cwd


def test_run_registry_and_promotion_go_through_the_server(server, trained) -> None:
    url, artifacts = server
    first, forced, home, cwd = trained
    assert first.tracking_uri == url
    assert (first.version, first.promoted) == (1, True)
    assert (forced.version, forced.promoted, forced.promotion_reason) == (2, True, "forced")

    client = mlflow.MlflowClient(tracking_uri=url, registry_uri=url)
    run = client.get_run(forced.run_id)
    assert run.data.metrics["test_roc_auc"] == pytest.approx(forced.metrics["test_roc_auc"])
    champion = client.get_model_version_by_alias("klantbeeld-churn", "champion")
    assert int(champion.version) == 2
    assert int(client.get_model_version_by_alias("klantbeeld-churn", "challenger").version) == 2

    # artifacts were uploaded to the server's destination; nothing local was created
    assert any(p.name == "MLmodel" for p in artifacts.rglob("MLmodel"))
    assert not (home / "mlflow.db").exists()
    assert not (home / "mlartifacts").exists()
    assert list(cwd.iterdir()) == []


def test_champion_loads_through_the_server_and_predicts(server, trained) -> None:
    import numpy as np
    import pandas as pd

    url, _ = server
    _, forced, _, _ = trained
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    model = mlflow.pyfunc.load_model("models:/klantbeeld-churn@champion")
    schema = model.metadata.get_input_schema()
    X = pd.DataFrame(
        {
            n: np.zeros(3, dtype=t)
            for n, t in zip(schema.input_names(), schema.numpy_types(), strict=True)
        }
    )
    X["recency_days"] = [1.0, 60.0, 300.0]
    p = np.asarray(model.predict(X))
    assert p.shape == (3,)
    assert ((p >= 0.0) & (p <= 1.0)).all()
    assert model.metadata.run_id == forced.run_id
