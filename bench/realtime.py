"""Real-time conversion intent: latency from a session event's POST to the new score being
served, 2 uvicorn workers, loopback only, bounded.

What it does (issue 16, "real-time update latency p50/p99"):

1. Prepares, once, under ``var/bench/realtime`` (or ``--root``): a demo shop, a
   conversion-intent champion trained on it by the real training job
   (``run_scoring_job``, small backtest) and batch scores at the shop's end
   (``score_customers``). An API key with every scope is created in the served home.
2. Starts ``python -m serving.api --workers 2`` on 127.0.0.1 (a free port) and waits until
   both workers answer (each request opens a new connection; the worker is read from the
   kernel's socket owner).
3. ``--updates`` times, for a random customer: POST one ``add_to_cart`` session event, then
   GET the customer's scores on fresh connections until the answer carries the score the
   online store holds for an evaluation that read that event (its event-log ``seq``); the
   update latency is from the POST's send to that answer. Updates alternate which worker
   must show it (the GET is retried until the *other* worker than the POST's answers), so
   the figure is cross-worker visibility.
   With ``--concurrency K``, K clients do this at once (each for its own customers): the
   worker combines rescores that queue while one computes.
4. Baseline in the same run: the POST of a ``send`` event (stored, no rescoring) and a plain
   GET of the scores, same connections, same customers.

A background thread keeps ``--background-rps`` GETs per second going meanwhile, so the
update is measured while the API serves other traffic. The run stops after ``--updates``
updates or ``--max-seconds`` seconds, whichever first.

Usage::

    nice python -m bench.realtime [--customers 2000] [--updates 200] [--background-rps 50]
    nice python -m bench.realtime --concurrency 4   # 4 clients posting at once
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from bench.procs import free_port, request, worker_pids

ROOT = Path(__file__).resolve().parents[1]
INTENT = "conversion_intent"
END = date(2026, 11, 1)


def prepare(root: Path, customers: int, seed: int) -> tuple[Path, Path]:
    """Shop, champion and batch scores under ``root`` (kept between runs)."""
    from features.demo_shop.writer import generate_demo_shop
    from klantbeeld.settings import Settings
    from training.backtest import BacktestConfig
    from training.batch_score import score_customers
    from training.scoring_job import CONVERSION_INTENT, run_scoring_job

    shop, home = root / "shop", root / "home"
    done = root / "prepared.json"
    if done.is_file() and json.loads(done.read_text()) == {"customers": customers, "seed": seed}:
        return shop, home
    shutil.rmtree(root, ignore_errors=True)
    generate_demo_shop(shop, n_customers=customers, seed=seed, days=365, end=END, n_items=300)
    settings = Settings(home=home, data_dir=shop, seed=seed)
    config = BacktestConfig(n_train=2, step_days=28, num_threads=1)
    run_scoring_job(CONVERSION_INTENT, settings, shop, config=config, force=True, pit_check=False)
    score_customers(settings, END, models=(INTENT,))
    done.write_text(json.dumps({"customers": customers, "seed": seed}))
    return shop, home


def _stored(state: Path, event_id: str, cid: str) -> float | None:
    """The online score stored from an evaluation that read event ``event_id``."""
    with sqlite3.connect(state) as con:
        seq = con.execute("SELECT seq FROM events WHERE event_id = ?", (event_id,)).fetchone()
        row = con.execute(
            "SELECT score, events_seq FROM online_scores WHERE customer_id = ? AND model = ?",
            (cid, INTENT),
        ).fetchone()
    if seq is None or row is None or row[1] < seq[0]:
        return None
    return float(row[0])


def _pct(values: list[float]) -> str:
    a = np.asarray(values) * 1e3
    return f"p50 {np.percentile(a, 50):7.1f} ms  p99 {np.percentile(a, 99):7.1f} ms  n={len(a)}"


def _update(port: int, key: str, home: Path, cid: str, eid: str, pids) -> tuple[float, bool]:
    """One session event for ``cid`` -> (seconds until the other worker shows the new
    score, whether the score moved)."""
    _, before, _ = request(port, key, "GET", f"/v1/customers/{cid}/scores")
    now = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)
    event = {
        "event_id": eid,
        "event_type": "add_to_cart",
        "customer_id": cid,
        "item_id": "I00001",
        "session_id": f"bench-{cid}-{now:%H}",
        "ts": now.isoformat(),
    }
    t0 = time.perf_counter()
    status, _, poster = request(port, key, "POST", "/v1/events", {"events": [event]}, pids)
    if status != 200:
        raise SystemExit(f"POST /v1/events answered {status}")
    want = _stored(home / "state.sqlite", eid, cid)
    if want is None:
        raise SystemExit("the POST answered before the new score was stored")
    give_up = time.monotonic() + 10.0
    while True:  # the other worker than the POST's must show it
        _, got, pid = request(port, key, "GET", f"/v1/customers/{cid}/scores", pids=pids)
        if pid is not None and pid != poster and got["scores"][INTENT]["score"] == want:
            return time.perf_counter() - t0, want != before["scores"][INTENT]["score"]
        if time.monotonic() > give_up:
            raise SystemExit(f"the other worker did not show the new score of {cid} in 10 s")


def measure(args: argparse.Namespace, port: int, key: str, home: Path, ids: list[str], pids):
    """The timed part (steps 3 and 4 of the module docstring); ``--concurrency`` clients
    post updates at once, each for its own customers."""
    update: list[float] = []
    plain_post: list[float] = []
    plain_get: list[float] = []
    moved = [0]
    lock = threading.Lock()
    stop = threading.Event()
    deadline = time.monotonic() + args.max_seconds
    counter = iter(range(args.updates))

    def background() -> None:
        own = random.Random(args.seed + 1)
        gap = 1.0 / args.background_rps
        nxt = time.monotonic()
        while not stop.is_set():
            request(port, key, "GET", f"/v1/customers/{own.choice(ids)}/scores")
            nxt += gap
            time.sleep(max(0.0, nxt - time.monotonic()))

    def client(c: int) -> None:
        rng = random.Random(args.seed + 10 + c)
        mine = ids[c :: args.concurrency]
        while time.monotonic() < deadline:
            with lock:
                k = next(counter, None)
            if k is None:
                return
            cid = rng.choice(mine)
            seconds, changed = _update(port, key, home, cid, f"bench-{os.getpid()}-{k}", pids)
            send = {"event_type": "send", "customer_id": cid, "item_id": "I00002"}
            t1 = time.perf_counter()
            body = {"events": [send | {"placement": "newsletter"}]}
            request(port, key, "POST", "/v1/events", body)
            t2 = time.perf_counter()
            request(port, key, "GET", f"/v1/customers/{cid}/scores")
            t3 = time.perf_counter()
            with lock:
                update.append(seconds)
                moved[0] += changed
                plain_post.append(t2 - t1)
                plain_get.append(t3 - t2)

    bg = threading.Thread(target=background, daemon=True)
    if args.background_rps > 0:
        bg.start()
    clients = [threading.Thread(target=client, args=(c,)) for c in range(args.concurrency)]
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    stop.set()
    return update, plain_post, plain_get, moved[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--customers", type=int, default=2_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--root", type=Path, default=ROOT / "var" / "bench" / "realtime")
    p.add_argument("--updates", type=int, default=200)
    p.add_argument("--max-seconds", type=float, default=180.0)
    p.add_argument("--background-rps", type=float, default=50.0)
    p.add_argument("--concurrency", type=int, default=1, help="clients posting at once")
    p.add_argument("--startup-timeout", type=float, default=300.0)
    args = p.parse_args()

    shop, home = prepare(args.root, args.customers, args.seed)
    served = args.root / "served"
    shutil.rmtree(served, ignore_errors=True)
    shutil.copytree(home, served)
    from serving.api.keys import SCOPES, KeyStore

    key = KeyStore(served / "api_keys.sqlite").create(frozenset(SCOPES), label="bench")
    import pyarrow.parquet as pq

    scores = pq.read_table(next((served / "scores").glob("*.parquet")), columns=["customer_id"])
    ids = scores.column(0).to_pylist()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLANTBEELD_", "MLFLOW_"))}
    env |= {"KLANTBEELD_HOME": str(served), "KLANTBEELD_DATA_DIR": str(shop)}
    env |= {"PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "serving.api", "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen([*cmd, "--log-level", "warning"], cwd=ROOT, env=env)
    try:
        seen: set[int] = set()
        deadline = time.monotonic() + args.startup_timeout
        while len(seen) < 2:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the API did not start with 2 serving workers")
            try:
                status, _, pid = request(
                    port, key, "GET", f"/v1/customers/{ids[0]}/scores", pids=worker_pids(proc.pid)
                )
                if status == 200 and pid is not None:
                    seen.add(pid)
            except OSError:
                time.sleep(0.5)
        pids = sorted(seen)
        update, post, get, moved = measure(args, port, key, served, ids, pids)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"real-time intent, {args.customers} customers, 2 workers, {args.concurrency} "
          f"posting client(s), {args.background_rps:g} GET/s background")  # fmt: skip
    print(f"  update: session event POST -> new score on the other worker  {_pct(update)}")
    print(f"  baseline: POST of a send (stored, no rescoring)               {_pct(post)}")
    print(f"  baseline: GET scores                                          {_pct(get)}")
    ratio = np.percentile(update, 50) / np.percentile(post, 50)
    print(f"  update p50 / plain POST p50 = {ratio:.1f}x; scores moved in {moved}/{len(update)}")


if __name__ == "__main__":
    main()
