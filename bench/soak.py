"""Soak: the API at a steady request rate for minutes, counting errors and worker memory.

Starts ``python -m serving.api --workers 2`` on a free loopback port over the same
prepared data as :mod:`bench.serve` (``--home``/``--data`` for a trained home, else the
generated shop), then sends a fixed rate of GETs -- scores and single-recipient
recommendations, interleaved, random customers -- in one-minute slices. After each slice
it prints the slice's completed requests, non-200 answers, client p99 and every worker's
resident memory (``VmRSS`` from ``/proc``). Passes when no request failed; memory is
reported as start (after a warm-up) and end per worker, and the largest growth.

Usage::

    nice python -m bench.soak --home var --data var/demo-shop --minutes 10 --rate 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
from pathlib import Path

import pandas as pd

import bench.serve as serve_bench
from bench.serve import (
    ROOT,
    fixed_rate,
    free_port,
    prepared_env,
    server_command,
    stop_server,
    wait_ready,
)


def worker_rss_mb(server_pid: int) -> dict[int, float]:
    """Resident memory (MiB) of every uvicorn worker process of ``server_pid``."""
    out: dict[int, float] = {}
    kids = Path(f"/proc/{server_pid}/task/{server_pid}/children")
    for pid in (int(x) for x in kids.read_text().split()) if kids.exists() else ():
        try:
            if b"spawn_main" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out[pid] = round(int(line.split()[1]) / 1024, 1)
        except OSError:
            continue
    return out


async def soak(args: argparse.Namespace, env: dict[str, str]) -> dict:
    """Run the soak (see module docstring); returns the per-slice figures and a summary."""
    serve_bench.API_KEY = env["KLANTBEELD_BENCH_KEY"]
    ids = pd.read_parquet(Path(env["KLANTBEELD_DATA_DIR"]) / "customers.parquet")
    all_ids = ids["customer_id"].astype(str).tolist()
    consent = ids.loc[ids["consent_email"], "customer_id"].astype(str).tolist()
    rng = random.Random(args.seed)
    paths = []
    for _ in range(5000):
        paths.append(f"/v1/customers/{rng.choice(all_ids)}/scores")
        paths.append(f"/v1/customers/{rng.choice(consent)}/recommendations?placement=newsletter")
    cmd = server_command(args.port, 2)
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    slices = []
    try:
        await wait_ready(args.port, 300)
        await fixed_rate(args.port, paths[:200], 50, 4, 8, 10)  # warm-up
        start_rss = worker_rss_mb(server.pid)
        print("rss_start_mb", json.dumps(start_rss), flush=True)
        for k in range(args.minutes):
            res = await fixed_rate(args.port, paths, args.rate, 60, args.connections, 10)
            rss = worker_rss_mb(server.pid)
            errors = res["unfinished"] + sum(
                n for status, n in res["statuses"].items() if status != 200
            )
            row = {
                "minute": k + 1,
                "completed": res["completed"],
                "errors": errors,
                "achieved_rps": res["achieved_rps"],
                "client_p99_ms": res["client_p99_ms"],
                "rss_mb": rss,
            }
            slices.append(row)
            print(json.dumps(row), flush=True)
    finally:
        stop_server(server)
    end_rss = slices[-1]["rss_mb"] if slices else {}
    growth = max((end_rss.get(p, 0.0) - v for p, v in start_rss.items()), default=0.0)
    return {
        "minutes": args.minutes,
        "rate": args.rate,
        "requests": sum(s["completed"] for s in slices),
        "errors": sum(s["errors"] for s in slices),
        "rss_start_mb": start_rss,
        "rss_end_mb": end_rss,
        "max_rss_growth_mb": round(growth, 1),
        "slices": slices,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=int, default=10)
    p.add_argument("--rate", type=float, default=200.0, help="requests per second")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--customers", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--root", type=Path, default=ROOT / "var" / "bench" / "soak")
    p.add_argument("--home", type=Path, help="serve this trained home (copied) instead")
    p.add_argument("--data", type=Path, help="its shop (with --home)")
    args = p.parse_args()
    if not 1 <= args.minutes <= 60 or not 1 <= args.rate <= 2000:
        p.error("--minutes must be in 1..60 and --rate in 1..2000")
    args.port = free_port()
    env = prepared_env(args, p)
    result = asyncio.run(soak(args, env))
    summary = {k: v for k, v in result.items() if k != "slices"}
    print("summary", json.dumps(summary), flush=True)
    (args.root / "soak-result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
