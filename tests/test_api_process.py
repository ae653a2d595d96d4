"""The API as a real ``python -m serving.api`` process (uvicorn, 2 workers, a free port):
health, readiness and keyed calls over TCP, and a fault test -- a worker SIGKILLed while
events are being loaded loses no acknowledged event and the service keeps answering."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_api import served  # noqa: F401  (fixture)

from bench.procs import free_port, worker_pids
from features import contract as c
from serving.api.keys import SCOPES, KeyStore

ROOT = Path(__file__).resolve().parents[1]


def _wait_ready(base: str, proc: subprocess.Popen, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if httpx.get(f"{base}/v1/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the API did not become ready")


@pytest.fixture()
def server(served, tmp_path):  # noqa: F811
    settings, customers, _ = served
    home = tmp_path / "home"
    shutil.copytree(settings.home, home)
    key = KeyStore(home / "api_keys.sqlite").create(frozenset(SCOPES))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLANTBEELD_")}
    env.update(
        KLANTBEELD_HOME=str(home),
        KLANTBEELD_DATA_DIR=str(settings.data_dir),
        PYTHONPATH=str(ROOT),
        OPENBLAS_NUM_THREADS="1",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving.api",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
        yield base, key, home, customers, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_real_process_health_ready_and_keyed_calls(server):
    base, key, _, customers, proc = server
    assert len(worker_pids(proc.pid)) == 2  # two worker processes
    assert httpx.get(f"{base}/v1/health").json()["status"] == "ok"
    assert httpx.get(f"{base}/v1/ready").json() == {"ready": True, "problems": {}}
    cid = customers[c.CUSTOMER_ID].iloc[-1]
    assert httpx.get(f"{base}/v1/customers/{cid}/scores").status_code == 401
    with httpx.Client(base_url=base, headers={"X-API-Key": key}) as client:
        scores = client.get(f"/v1/customers/{cid}/scores")
        assert scores.status_code == 200 and scores.json()["scores"]["churn"]["score"] == 1.0
        consented = customers.loc[customers[c.CONSENT_EMAIL], c.CUSTOMER_ID].iloc[0]
        recs = client.get(f"/v1/customers/{consented}/recommendations").json()
        assert recs["eligible"] and not recs["fallback"] and recs["items"]
        first = recs["items"][0]["item_id"]
        client.post(
            "/v1/events",
            json={
                "events": [{"event_type": "purchase", "customer_id": consented, "item_id": first}]
            },
        )
        for _ in range(4):  # whichever worker answers sees the purchase
            again = client.get(f"/v1/customers/{consented}/recommendations").json()
            assert first not in [i["item_id"] for i in again["items"]]
        assert "klantbeeld_http_request_duration_seconds" in client.get("/metrics").text


def test_a_worker_killed_mid_load_loses_no_acknowledged_event(server):
    base, key, home, customers, proc = server
    ids = customers[c.CUSTOMER_ID].tolist()
    acked: list[int] = []
    failed: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()
    counter = iter(range(1_000_000))

    def load() -> None:
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as client:
            while not stop.is_set():
                with lock:
                    b = next(counter)
                events = [
                    {
                        "event_id": f"b{b}-{k}",
                        "event_type": "product_view",
                        "customer_id": ids[(b + k) % len(ids)],
                        "item_id": "I00001",
                    }
                    for k in range(100)
                ]
                try:
                    r = client.post("/v1/events", json={"events": events})
                    ok = r.status_code == 200 and r.json()["stored"] == 100
                except httpx.HTTPError:
                    ok = False
                with lock:
                    (acked if ok else failed).append(b)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 20:
        assert time.monotonic() < deadline, "no load went through"
        time.sleep(0.05)
    victim = worker_pids(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    n_at_kill = len(acked)
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) > n_at_kill  # the service kept taking events after the kill

    with sqlite3.connect(home / "state.sqlite") as con:
        stored = {row[0] for row in con.execute("SELECT event_id FROM events")}
    per_batch: dict[int, int] = {}
    for eid in stored:
        b = int(eid[1:].split("-")[0])
        per_batch[b] = per_batch.get(b, 0) + 1
    lost = [b for b in acked if per_batch.get(b) != 100]
    assert lost == [], f"acknowledged batches missing events: {lost[:5]}"
    torn = [b for b, n in per_batch.items() if n != 100]
    assert torn == [], "a batch was stored in part"  # all or nothing, also when killed
    # still answering: the surviving worker, and a respawned one
    with httpx.Client(base_url=base, headers={"X-API-Key": key}) as client:
        for _ in range(10):
            assert client.get(f"/v1/customers/{ids[0]}/scores").status_code == 200
    assert httpx.get(f"{base}/v1/health").status_code == 200
    deadline = time.monotonic() + 20
    while len(set(worker_pids(proc.pid)) - {victim}) < 2:  # uvicorn respawns the worker
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        time.sleep(0.2)
    print(f"acknowledged {len(acked)} batches of 100, {len(failed)} failed at the kill")
