"""API latency under a fixed request rate: 2 uvicorn workers, loopback only.

What it does (ARCHITECTURE §7, "API, one recipient" and "batch of 1,000 recipients"):

1. Prepares, once, under ``var/bench/api`` (or ``--root``): a demo shop, a recommender
   trained on it (``train_recommender``, MLflow off) and a batch-scores file from the
   conversion-intent model trained for step 7 (with ``--no-baseline``: seeded random
   probabilities in the layout of ``training.batch_score`` -- a score look-up costs the
   same whatever the numbers are). With ``--home H --data D`` an existing trained home (e.g.
   the one ``make demo`` builds) is copied under ``--root`` and served instead. An API
   key with every scope is created in the served home; every request sends it.
2. Starts ``python -m serving.api --workers 2`` on 127.0.0.1 (a free port) and waits for
   ``/v1/ready``.
3. Per route, an open-loop client (asyncio, raw HTTP/1.1 keep-alive sockets, no HTTP
   library) sends a fixed rate (default 1,000 req/s for 10 s) to random customers.
   Latency is measured from each request's *scheduled* send time, so a server that falls
   behind shows it (no coordinated omission). The run is bounded: at most ``rate * seconds``
   requests, and it stops ``--grace`` seconds after the last one is due.
4. Reads the server's own histogram (``GET /metrics``) before and after each run; the
   difference is the server-side distribution of exactly those requests.
5. Sends 20 batch calls of 1,000 recipients one after another.
6. In process, before the server starts: one recipient (``--in-process-calls`` times)
   and a batch of 1,000 through the API's recommendation path (precomputed candidate
   tables, :mod:`serving.nbo_online`) and through the frame path it replaced
   (``recommend_for``), same service and customers: library time and their ratio.
7. Baseline, same run: the conversion-intent model whose scores the API serves is served
   by ``mlflow models serve`` (2 workers, ``--env-manager local``) and both servers get
   the same closed-loop load (``--closed-connections`` sockets sending back to back for
   ``--closed-seconds``): one-row ``POST /invocations`` against ``GET
   /v1/customers/{id}/scores``. The ratio of completed requests per second is the
   figure (ARCHITECTURE §7: >= 10x). Preparing the generated shop therefore also trains
   that model (``train_model("conversion_intent")``, local MLflow store in the home) and
   batch-scores every customer with it; ``--no-baseline`` skips step 7.

The client runs on the same 2 cores as the 2 workers, so client-side figures include
its own scheduling delay. A summary at the end compares each figure with its target.

Usage::

    nice python -m bench.serve [--customers 50000] [--rate 1000] [--seconds 10]
    nice python -m bench.serve --home var --data var/demo-shop   # the make-demo shop
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.procs import HOST, free_port

ROOT = Path(__file__).resolve().parents[1]
METRIC = "klantbeeld_http_request_duration_seconds"
#: Scoring model served by both the API (its batch scores) and ``mlflow models serve``.
BASELINE_MODEL = "conversion_intent"
SCORES_AS_OF = "2026-11-01"
#: ARCHITECTURE §7 targets checked in the summary.
TARGET_P99_SERVER_MS = 10.0
TARGET_P99_CLIENT_MS = 25.0
TARGET_BATCH_MS = 250.0
TARGET_RATIO = 10.0


# -- preparation ---------------------------------------------------------------------------
def _server_env(home: Path, shop: Path, root: Path) -> dict[str, str]:
    """The server's environment, with a fresh all-scope API key in ``KLANTBEELD_BENCH_KEY``."""
    from serving.api.keys import SCOPES, KeyStore

    key = KeyStore(home / "api_keys.sqlite").create(frozenset(SCOPES), label="bench")
    env = dict(os.environ)
    env.update(
        KLANTBEELD_HOME=str(home.resolve()),
        KLANTBEELD_DATA_DIR=str(shop.resolve()),
        KLANTBEELD_STATE_FILE=str((root / "state.sqlite").resolve()),
        KLANTBEELD_BENCH_KEY=key,
        OPENBLAS_NUM_THREADS="1",
        PYTHONPATH=str(ROOT),
    )
    return env


def prepare_existing(root: Path, home: Path, shop: Path) -> dict[str, str]:
    """Copy a trained home (models, scores, cache; not its shop or exports) under ``root``."""
    target = root / "home"
    if not target.exists():
        skip = shutil.ignore_patterns("demo-shop", "exports", "features", "run", "*.sqlite*")
        shutil.copytree(home, target, ignore=skip)
    return _server_env(target, shop, root)


def prepare(root: Path, n_customers: int, seed: int, baseline: bool = True) -> dict[str, str]:
    """Shop, trained recommender and scores under ``root``; returns the server's env.

    With ``baseline`` the scores come from a trained conversion-intent model (registered
    as champion in the home's MLflow store, for ``mlflow models serve``); without, they
    are seeded random probabilities in the same layout.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from features.demo_shop.writer import generate_demo_shop
    from klantbeeld.settings import Settings
    from training.recommender_job import model_dir, train_recommender

    shop, home = root / "shop", root / "home"
    settings = Settings(home=home, data_dir=shop, seed=seed)
    stamp = root / f"prepared-{n_customers}-{seed}"
    if not stamp.is_file():
        t0 = time.perf_counter()
        generate_demo_shop(shop, n_customers=n_customers, seed=seed)
        print(f"demo shop: {n_customers:,} customers in {time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        train_recommender(settings, log_to_mlflow=False)
        print(f"recommender trained in {time.perf_counter() - t0:.0f} s -> {model_dir(settings)}")
        stamp.write_text("ok\n")
    ids = pd.read_parquet(shop / "customers.parquet", columns=["customer_id"])["customer_id"]
    scores = home / "scores" / f"customer_scores_as_of={SCORES_AS_OF}.parquet"
    trained = root / f"scoring-model-{n_customers}-{seed}"
    if baseline and not trained.is_file():
        from training.batch_score import score_customers
        from training.jobs import train_model

        t0 = time.perf_counter()
        train_model(BASELINE_MODEL, settings, shop, force=True)
        score_customers(settings, SCORES_AS_OF, data=shop, out=scores, models=[BASELINE_MODEL])
        print(f"{BASELINE_MODEL} trained and scored in {time.perf_counter() - t0:.0f} s")
        trained.write_text("ok\n")
    if not scores.is_file():
        rng = np.random.default_rng(seed)
        n = len(ids)
        up = [["recency_days", "n_sessions_30d", "n_views_7d"]] * n
        down = [["tenure_days", "n_returns_365d"]] * n
        table = pa.table(
            {
                "customer_id": ids.astype(str).tolist(),
                "conversion_intent_score": rng.random(n),
                "conversion_intent_model_version": pa.array(np.ones(n, np.int32)),
                "conversion_intent_top_up": up,
                "conversion_intent_top_down": down,
                "churn_score": rng.random(n),
                "churn_model_version": pa.array(np.ones(n, np.int32)),
                "churn_top_up": down,
                "churn_top_down": up,
            }
        )
        scores.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, scores)
    return _server_env(home, shop, root)


# -- a minimal HTTP/1.1 client ---------------------------------------------------------------
#: API key sent with every request (set by ``run`` from the prepared environment).
API_KEY = ""


class Connection:
    """One keep-alive connection; requests are sent one at a time, with ``API_KEY``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nX-API-Key: {API_KEY}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        chunked = False
        for line in lines[1:]:
            key, _, value = line.partition(":")
            if key.lower() == "content-length":
                length = int(value)
            elif key.lower() == "transfer-encoding" and "chunked" in value:
                chunked = True
        if chunked:
            data = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                data += chunk[:-2]
            return status, data
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def wait_ready(port: int, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            conn = await Connection.open(port)
            status, body = await conn.request("GET", "/v1/ready")
            if status == 404:  # code from before /v1/ready (a --code baseline)
                status, body = await conn.request("GET", "/health")
                body = json.dumps({"ready": json.loads(body)["status"] == "ok"}).encode()
            conn.close()
            if status == 200:
                return json.loads(body)
        except OSError:
            pass
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the API was not ready (/v1/ready) within {timeout_s:.0f} s")


async def fixed_rate(
    port: int,
    paths: list[str],
    rate: float,
    seconds: float,
    connections: int,
    grace: float,
) -> dict:
    """Send ``rate * seconds`` GETs on schedule; latency from the scheduled time (ms)."""
    n = int(rate * seconds)
    queue: asyncio.Queue[tuple[int, float, str] | None] = asyncio.Queue()
    lat = np.full(n, np.nan)
    statuses: dict[int, int] = {}
    conns = [await Connection.open(port) for _ in range(connections)]
    t0 = time.perf_counter() + 0.2

    async def worker(conn: Connection) -> None:
        while True:
            job = await queue.get()
            if job is None:
                return
            i, due, path = job
            try:
                status, _ = await conn.request("GET", path)
            except (OSError, asyncio.IncompleteReadError):
                status = 599
            lat[i] = (time.perf_counter() - due) * 1e3
            statuses[status] = statuses.get(status, 0) + 1

    async def scheduler() -> None:
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((i, due, paths[i % len(paths)]))
        for _ in conns:
            queue.put_nowait(None)

    tasks = [asyncio.create_task(worker(c)) for c in conns]
    sched = asyncio.create_task(scheduler())
    done, pending = await asyncio.wait([sched, *tasks], timeout=seconds + grace + 1)
    for t in pending:
        t.cancel()
    for c in conns:
        c.close()
    elapsed = time.perf_counter() - t0
    ok = lat[~np.isnan(lat)]
    return {
        "sent_target": n,
        "completed": int(len(ok)),
        "unfinished": int(n - len(ok)),
        "statuses": statuses,
        "achieved_rps": round(len(ok) / max(elapsed, 1e-9), 1),
        "client_p50_ms": round(float(np.percentile(ok, 50)), 2) if len(ok) else None,
        "client_p99_ms": round(float(np.percentile(ok, 99)), 2) if len(ok) else None,
        "client_max_ms": round(float(ok.max()), 2) if len(ok) else None,
    }


async def closed_loop(
    port: int,
    requests: list[tuple[str, str, bytes]],
    seconds: float,
    connections: int,
) -> dict:
    """Each connection sends ``(method, path, body)`` requests back to back for ``seconds``.

    Returns completed requests per second and client latency p50/p99 (ms); a request
    still in flight at the end is not counted.
    """
    conns = [await Connection.open(port) for _ in range(connections)]
    lat: list[float] = []
    statuses: dict[int, int] = {}
    stop = time.perf_counter() + seconds

    async def worker(k: int, conn: Connection) -> None:
        i = k
        while time.perf_counter() < stop:
            method, path, body = requests[i % len(requests)]
            i += connections
            t = time.perf_counter()
            try:
                status, _ = await conn.request(method, path, body)
            except (OSError, asyncio.IncompleteReadError):
                status = 599
            lat.append((time.perf_counter() - t) * 1e3)
            statuses[status] = statuses.get(status, 0) + 1

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(worker(k, c)) for k, c in enumerate(conns)]
    await asyncio.wait(tasks, timeout=seconds + 30)
    elapsed = time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    for c in conns:
        c.close()
    ok = np.asarray(lat)
    return {
        "connections": connections,
        "completed": int(len(ok)),
        "statuses": statuses,
        "rps": round(len(ok) / max(elapsed, 1e-9), 1),
        "client_p50_ms": round(float(np.percentile(ok, 50)), 2) if len(ok) else None,
        "client_p99_ms": round(float(np.percentile(ok, 99)), 2) if len(ok) else None,
    }


# -- baseline: ``mlflow models serve`` on the same scoring model ---------------------------
def baseline_model(env: dict[str, str], root: Path) -> tuple[Path, bytes] | None:
    """Local copy of the champion scoring model and a one-row ``/invocations`` body.

    The body is the first row of the model's logged serving input example (the cost of
    scoring one row does not depend on its values). None when the served home has no
    champion for :data:`BASELINE_MODEL`.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from klantbeeld.settings import Settings
    from training.registry import registered_model_name
    from training.tracking import configure_mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings = Settings(home=Path(env["KLANTBEELD_HOME"]))
    configure_mlflow(settings)
    name = registered_model_name(BASELINE_MODEL)
    try:
        version = mlflow.MlflowClient().get_model_version_by_alias(name, "champion").version
    except MlflowException:
        return None
    target = root / f"mlflow-model-{name}-v{version}"
    if not (target / "MLmodel").is_file():
        got = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=str(root / f".dl-{version}")
        )
        shutil.rmtree(target, ignore_errors=True)
        os.replace(got, target)
    example = json.loads((target / "serving_input_example.json").read_text())
    split = example["dataframe_split"]
    body = {"dataframe_split": {"columns": split["columns"], "data": split["data"][:1]}}
    return target, json.dumps(body).encode()


def mlflow_command(model: Path, port: int, workers: int) -> list[str]:
    """``mlflow models serve`` of ``model`` on the loopback ``port`` (no new environment)."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        str(model),
        "-h",
        HOST,
        "-p",
        str(port),
        "-w",
        str(workers),
        "--env-manager",
        "local",
    ]


async def wait_ping(port: int, timeout_s: float) -> None:
    """Wait until ``GET /ping`` answers 200 (the MLflow scoring server's health check)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            conn = await Connection.open(port)
            status, _ = await conn.request("GET", "/ping")
            conn.close()
            if status == 200:
                return
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        await asyncio.sleep(0.5)
    raise TimeoutError(f"mlflow models serve was not up (/ping) within {timeout_s:.0f} s")


async def run_baseline(args: argparse.Namespace, env: dict[str, str]) -> dict | None:
    """Closed-loop one-row scoring through ``mlflow models serve`` (2 workers)."""
    found = baseline_model(env, args.root)
    if found is None:
        print(f"baseline skipped: no {BASELINE_MODEL} champion in the served home", flush=True)
        return None
    model, body = found
    port = free_port()
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    server = subprocess.Popen(
        mlflow_command(model, port, args.workers),
        env={**env, "PATH": path},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        t0 = time.perf_counter()
        await wait_ping(port, args.startup_timeout)
        startup = round(time.perf_counter() - t0, 1)
        conn = await Connection.open(port)
        status, answer = await conn.request("POST", "/invocations", body)
        conn.close()
        if status != 200:
            raise RuntimeError(f"mlflow /invocations answered {status}: {answer[:200]!r}")
        req = [("POST", "/invocations", body)]
        await closed_loop(port, req, 1.0, args.closed_connections)  # warm-up
        res = await closed_loop(port, req, args.closed_seconds, args.closed_connections)
        res.update(startup_s=startup, model=model.name)
        return res
    finally:
        stop_server(server)


def in_process(env: dict[str, str], calls: int, seed: int) -> dict:
    """One recipient and a batch of 1,000 in this process: the API's path
    (``RecommendationService.recommend``, candidate tables) against the frame path it
    replaced (``recommend_for``: candidates from the model + ``apply_rules``), same
    service, customers and placement (newsletter). Library time only (ms), no HTTP."""
    import pandas as pd

    from klantbeeld.settings import Settings
    from serving.api.artifacts import load_artifacts
    from serving.next_best_offer import recommend_for

    keys = ("KLANTBEELD_HOME", "KLANTBEELD_DATA_DIR", "KLANTBEELD_STATE_FILE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: env[k] for k in keys})
    try:
        t0 = time.perf_counter()
        art = load_artifacts(Settings())
        load_s = time.perf_counter() - t0
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    svc = art.recommender
    if svc is None:
        raise RuntimeError(f"no recommendation service: {art.problems}")
    ids = pd.read_parquet(Path(env["KLANTBEELD_DATA_DIR"]) / "customers.parquet")
    consent = ids.loc[ids["consent_email"], "customer_id"].astype(str).tolist()
    rng = random.Random(seed)
    pl = svc.placement("newsletter")

    def old(batch: list[str]) -> object:
        return recommend_for(batch, pl, context=svc.context, model=svc.model, state=svc.state)

    def new(batch: list[str]) -> object:
        return svc.recommend(batch, "newsletter")

    out: dict = {"load_s": round(load_s, 1), "calls": calls}
    for name, fn in (("frame_path", old), ("table_path", new)):
        fn(consent[:1])
        lat = []
        for _ in range(calls):
            t = time.perf_counter()
            fn([rng.choice(consent)])
            lat.append((time.perf_counter() - t) * 1e3)
        batch = rng.sample(consent, min(1000, len(consent)))
        t = time.perf_counter()
        fn(batch)
        out[name] = {
            "one_p50_ms": round(float(np.percentile(lat, 50)), 3),
            "one_p99_ms": round(float(np.percentile(lat, 99)), 3),
            "batch_1000_ms": round((time.perf_counter() - t) * 1e3, 1),
        }
    out["ratio_one_p50"] = round(
        out["frame_path"]["one_p50_ms"] / max(out["table_path"]["one_p50_ms"], 1e-9), 1
    )
    return out


def summary(results: dict) -> dict:
    """Each measured figure next to its ARCHITECTURE §7 target (met / missed)."""
    out: dict[str, dict] = {}
    recs = next((v for k, v in results.items() if k.startswith("recommendations@")), None)
    if recs is not None:
        p99 = recs.get("server_p99_le_ms")
        out["recommendation_p99_server_ms"] = {
            "measured_le": p99,
            "p50_le": recs.get("server_p50_le_ms"),
            "achieved_rps": recs["achieved_rps"],
            "target": TARGET_P99_SERVER_MS,
            "met": bool(p99 is not None and p99 <= TARGET_P99_SERVER_MS),
        }
        out["recommendation_p99_client_ms"] = {
            "measured": recs["client_p99_ms"],
            "target": TARGET_P99_CLIENT_MS,
            "met": bool(
                recs["client_p99_ms"] is not None and recs["client_p99_ms"] <= TARGET_P99_CLIENT_MS
            ),
        }
    if "batch_1000" in results:
        b = results["batch_1000"]["client_p50_ms"]
        out["batch_1000_p50_ms"] = {
            "measured": b,
            "target": TARGET_BATCH_MS,
            "met": bool(b <= TARGET_BATCH_MS),
        }
    ours, theirs = results.get("scores_closed_loop"), results.get("mlflow_closed_loop")
    if ours and theirs and theirs["rps"]:
        ratio = ours["rps"] / theirs["rps"]
        out["ratio_vs_mlflow_serve"] = {
            "measured": round(ratio, 1),
            "ours_rps": ours["rps"],
            "mlflow_rps": theirs["rps"],
            "target": TARGET_RATIO,
            "met": bool(ratio >= TARGET_RATIO),
        }
    return out


async def scrape(port: int) -> dict[tuple[str, str], np.ndarray]:
    """Cumulative bucket counts per (route, le) from ``/metrics``."""
    conn = await Connection.open(port)
    _, body = await conn.request("GET", "/metrics")
    conn.close()
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for line in body.decode().splitlines():
        if not line.startswith(f"{METRIC}_bucket"):
            continue
        labels, value = line[len(METRIC) + 8 :].rsplit(" ", 1)
        parts = dict(p.split("=", 1) for p in labels.strip("{}").split('",'))
        route = parts["route"].strip('"')
        le = parts["le"].strip('"')
        out.setdefault((parts["method"].strip('"'), route), []).append(
            (float("inf") if le == "+Inf" else float(le), float(value))
        )
    return {k: np.array(v) for k, v in out.items()}


def server_quantiles(before: np.ndarray, after: np.ndarray) -> dict:
    """Count and p50/p99 upper bounds (bucket ``le``, ms) of the requests in between."""
    les, cum = after[:, 0], after[:, 1] - before[:, 1]
    total = cum[-1]
    out: dict[str, float | int | None] = {"server_count": int(total)}
    for q in (0.5, 0.99):
        k = int(np.searchsorted(cum, q * total)) if total else -1
        out[f"server_p{int(q * 100)}_le_ms"] = (
            None if k < 0 or not np.isfinite(les[k]) else round(les[k] * 1e3, 2)
        )
    return out


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group; SIGKILL it after 15 s."""
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def server_command(port: int, workers: int) -> list[str]:
    """``python -m serving.api`` on the loopback ``port`` with ``workers`` processes."""
    return [
        sys.executable,
        "-m",
        "serving.api",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]


async def run(args: argparse.Namespace, env: dict[str, str]) -> dict:
    import pandas as pd

    global API_KEY
    API_KEY = env["KLANTBEELD_BENCH_KEY"]
    ids = pd.read_parquet(Path(env["KLANTBEELD_DATA_DIR"]) / "customers.parquet")
    rng = random.Random(args.seed)
    all_ids = ids["customer_id"].astype(str).tolist()
    consent = ids.loc[ids["consent_email"], "customer_id"].astype(str).tolist()
    cmd = server_command(args.port, args.workers)
    code = (args.code or ROOT).resolve()
    server = subprocess.Popen(
        cmd, cwd=code, env={**env, "PYTHONPATH": str(code)}, start_new_session=True
    )
    results: dict = {
        "customers": len(all_ids),
        "rate": args.rate,
        "seconds": args.seconds,
        "workers": args.workers,
        "code": str(args.code or ROOT),
    }
    try:
        t0 = time.perf_counter()
        health = await wait_ready(args.port, args.startup_timeout)
        results["startup_s"] = round(time.perf_counter() - t0, 1)
        results["ready"] = health["ready"]
        score_paths = [f"/v1/customers/{rng.choice(all_ids)}/scores" for _ in range(5000)]
        rec_paths = [
            f"/v1/customers/{rng.choice(consent)}/recommendations?placement=newsletter"
            for _ in range(5000)
        ]
        scores_route = "/v1/customers/{customer_id}/scores"
        recs_route = "/v1/customers/{customer_id}/recommendations"
        scenarios = [
            (f"scores@{args.rate:g}", scores_route, score_paths, args.rate),
            (f"recommendations@{args.rate:g}", recs_route, rec_paths, args.rate),
            (f"recommendations@{args.low_rate:g}", recs_route, rec_paths, args.low_rate),
        ]
        for name, route, paths, rate in scenarios:
            await fixed_rate(args.port, paths[:100], 50, 2, 8, 10)  # warm-up
            await asyncio.sleep(1)
            before = (await scrape(args.port))[("GET", route)]
            res = await fixed_rate(
                args.port, paths, rate, args.seconds, args.connections, args.grace
            )
            after = (await scrape(args.port))[("GET", route)]
            res.update(server_quantiles(before, after))
            results[name] = res
            print(name, json.dumps(res), flush=True)
            await asyncio.sleep(2)

        conn = await Connection.open(args.port)
        batch_ms = []
        before = (await scrape(args.port))[("POST", "/v1/recommendations/batch")]
        for _ in range(args.batches):
            body = json.dumps(
                {"placement": "newsletter", "customer_ids": rng.sample(all_ids, 1000)}
            ).encode()
            t = time.perf_counter()
            status, _ = await conn.request("POST", "/v1/recommendations/batch", body)
            batch_ms.append((time.perf_counter() - t) * 1e3)
            if status != 200:
                raise RuntimeError(f"batch call answered {status}")
        conn.close()
        after = (await scrape(args.port))[("POST", "/v1/recommendations/batch")]
        results["batch_1000"] = {
            "calls": args.batches,
            "client_p50_ms": round(float(np.percentile(batch_ms, 50)), 1),
            "client_max_ms": round(float(np.max(batch_ms)), 1),
            **server_quantiles(before, after),
        }
        print("batch_1000", json.dumps(results["batch_1000"]), flush=True)
        if args.baseline:
            req = [("GET", p, b"") for p in score_paths]
            await asyncio.sleep(1)
            res = await closed_loop(args.port, req, args.closed_seconds, args.closed_connections)
            results["scores_closed_loop"] = res
            print("scores_closed_loop", json.dumps(res), flush=True)
    finally:
        stop_server(server)
    if args.baseline:
        base = await run_baseline(args, env)
        if base is not None:
            results["mlflow_closed_loop"] = base
            print("mlflow_closed_loop", json.dumps(base), flush=True)
    results["summary"] = summary(results)
    print("summary", json.dumps(results["summary"], indent=1), flush=True)
    return results


def prepared_env(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, str]:
    """The server's environment from ``--home/--data`` or a generated shop; installs
    uvloop for the client when available."""
    if args.home is not None:
        if args.data is None:
            parser.error("--home needs --data (the shop the home was trained on)")
        env = prepare_existing(args.root, args.home, args.data)
    else:
        env = prepare(args.root, args.customers, args.seed, baseline=args.baseline)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return env


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--customers", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--root", type=Path, default=ROOT / "var" / "bench" / "api")
    p.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument(
        "--low-rate",
        type=float,
        default=20.0,
        help="second, sustainable rate (req/s) for the recommendations route",
    )
    p.add_argument("--connections", type=int, default=64, help="client keep-alive sockets")
    p.add_argument("--grace", type=float, default=10.0, help="seconds allowed after the last")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the `mlflow models serve` comparison (and training its model)",
    )
    p.add_argument("--closed-seconds", type=float, default=5.0, help="closed-loop duration")
    p.add_argument(
        "--in-process-calls",
        type=int,
        default=300,
        help="single-recipient calls timed in process per path before the server runs (0: skip)",
    )
    p.add_argument("--closed-connections", type=int, default=8, help="closed-loop sockets")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument("--home", type=Path, help="serve this trained home (copied) instead")
    p.add_argument("--data", type=Path, help="its shop (with --home)")
    p.add_argument(
        "--code",
        type=Path,
        help="run the server from this source tree (e.g. `git archive` of an earlier "
        "commit) to measure a baseline with the same client and data",
    )
    p.add_argument("--startup-timeout", type=float, default=300.0)
    args = p.parse_args()
    if not 1 <= args.rate * args.seconds <= 100_000:
        p.error("rate * seconds must be in 1..100,000 requests")
    if not 0 < args.closed_seconds <= 60:
        p.error("--closed-seconds must be in (0, 60]")
    if args.port == 0:
        args.port = free_port()
    env = prepared_env(args, p)
    local = in_process(env, args.in_process_calls, args.seed) if args.in_process_calls else None
    if local is not None:
        print("in_process", json.dumps(local), flush=True)
    results = asyncio.run(run(args, env))
    if local is not None:
        results["in_process"] = local
    out = args.root / f"result-{'baseline' if args.code else 'current'}.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"results -> {out}")


if __name__ == "__main__":
    main()
