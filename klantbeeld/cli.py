"""The ``klantbeeld`` command line: thin commands over library functions.

Every command calls a Python function that returns its result (the same function a
notebook or an MLproject entry point calls) and only formats that result. Errors that
klantbeeld raises on purpose are shown as one clear message and exit code 2, never as a
traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from klantbeeld.errors import KlantbeeldError
from klantbeeld.settings import Settings, get_settings

app = typer.Typer(
    name="klantbeeld",
    help="Predictive scores and next-best-offers for customer data platforms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Turn klantbeeld's own errors into a red message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KlantbeeldError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def _configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _settings(data: Path | None = None, lenient: bool | None = None) -> Settings:
    settings = get_settings()
    update: dict[str, Any] = {}
    if data is not None:
        update["data_dir"] = data
    if lenient is not None:
        update["lenient"] = lenient
    return settings.model_copy(update=update) if update else settings


def parse_as_of(text: str) -> datetime:
    """Parse ``YYYY-MM-DD`` (midnight UTC) or an ISO timestamp into a naive UTC datetime."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"expected a date YYYY-MM-DD, got {text!r}") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def parse_date(text: str, option: str) -> date:
    """Parse ``YYYY-MM-DD`` given to ``option``; a clear usage error otherwise."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"expected a date YYYY-MM-DD, got {text!r}", param_hint=option
        ) from None


DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="Input folder or DuckDB file (default: the demo shop)."),
]
LenientOpt = Annotated[
    bool,
    typer.Option(
        "--lenient", help="Skip and count rows that break the contract instead of failing."
    ),
]


@app.command("demo-data")
@friendly_errors
def demo_data(
    customers: Annotated[int, typer.Option(min=10, help="Number of customers.")] = 50_000,
    seed: Annotated[int, typer.Option(min=0, help="Random seed.")] = 42,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: <home>/demo-shop).")
    ] = None,
    end: Annotated[str, typer.Option(help="Last day of the shop's history (YYYY-MM-DD).")] = (
        "2026-11-01"
    ),
    days: Annotated[int, typer.Option(min=60, help="Days of history.")] = 730,
) -> None:
    """Generate the synthetic demo shop (with hidden truth for oracle comparisons)."""
    from features.demo_shop import generate_demo_shop

    end_day = parse_date(end, "--end")
    settings = get_settings()
    target = out_dir or settings.home / "demo-shop"
    summary = generate_demo_shop(
        target,
        n_customers=customers,
        seed=seed,
        end=end_day,
        days=days,
        show_progress=True,
    )
    out.print(f"demo shop written to [bold]{target}[/]")
    out.print(summary)


@app.command()
@friendly_errors
def validate(data: DataOpt = None, lenient: LenientOpt = False) -> None:
    """Check input data against the data contract and report what was found."""
    from features.shop import open_shop

    settings = _settings(data, lenient)
    shop = open_shop(
        settings.resolved_data_dir,
        lenient=settings.lenient,
        threads=settings.threads,
        backend=settings.feature_backend,
    )
    out.print(f"[green]valid[/]: {shop.source}")
    out.print(shop.report.summary())
    out.print(
        "event types: " + ", ".join(f"{k}={v:,}" for k, v in shop.report.event_type_counts.items())
    )


@app.command()
@friendly_errors
def features(
    as_of: Annotated[str, typer.Option("--as-of", help="Snapshot time T (YYYY-MM-DD, UTC).")],
    data: DataOpt = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: <home>/features).")
    ] = None,
    lenient: LenientOpt = False,
) -> None:
    """Build point-in-time feature snapshots at T (only events strictly before T)."""
    from features.snapshot import compute_features

    settings = _settings(data, lenient)
    target = out_dir or settings.features_dir
    snapshot = compute_features(
        settings.resolved_data_dir,
        parse_as_of(as_of),
        target,
        lenient=settings.lenient,
        threads=settings.threads,
        backend=settings.feature_backend,
    )
    out.print(
        f"snapshot at {snapshot.as_of:%Y-%m-%d}: {len(snapshot.customer):,} customers × "
        f"{snapshot.customer.shape[1] - 1} features, {len(snapshot.customer_category):,} "
        f"customer×category rows, {len(snapshot.customer_item):,} customer×item rows"
    )
    out.print(f"written to [bold]{target / f'as_of={snapshot.as_of:%Y-%m-%d}'}[/]")


#: The figures `klantbeeld train` prints per model (all are in the MLflow run).
HEADLINE_METRICS = (
    "test_roc_auc",
    "oracle_roc_auc",
    "baseline_rfm_roc_auc",
    "baseline_logreg_roc_auc",
    "test_audience_share_keep_95pct",
    "test_mae_days",
    "oracle_mae_days",
    "baseline_item_median_mae_days",
    "test_weekly_auc_mean",
    "test_recall_at_10",
    "baseline_popularity_recall_at_10",
    "baseline_als_recall_at_10",
)


@app.command()
@friendly_errors
def train(
    model: Annotated[
        str,
        typer.Argument(help="conversion_intent, churn, repurchase_timing, recommender, or all."),
    ] = "all",
    data: DataOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote to champion whatever the metrics.")
    ] = False,
) -> None:
    """Backtest, fit, evaluate and register a model in MLflow (one run per model)."""
    from training.jobs import TRAINERS, train_model
    from training.tracking import ui_command

    if model != "all" and model not in TRAINERS:
        raise typer.BadParameter(f"expected one of {', '.join([*TRAINERS, 'all'])}, got {model!r}")
    settings = _settings(data)
    results = train_model(model, settings, settings.resolved_data_dir, force=force)
    for result in results.values() if isinstance(results, dict) else [results]:
        shown = ", ".join(
            f"{k}={result.metrics[k]:.4f}" for k in HEADLINE_METRICS if k in result.metrics
        )
        state = "[green]champion[/]" if result.promoted else "challenger"
        out.print(
            f"[bold]{result.model}[/] v{result.version} ({state}; {result.promotion_reason}) "
            f"test period {result.test_period}, {result.seconds:.0f}s\n  {shown}"
        )
    out.print(f"Open the MLflow UI: {ui_command(settings)}")


@app.command()
@friendly_errors
def score(
    as_of: Annotated[str, typer.Option("--as-of", help="Snapshot time T (YYYY-MM-DD, UTC).")],
    data: DataOpt = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Output Parquet (default under <home>/scores).")
    ] = None,
) -> None:
    """Score every customer with every champion model; write one Parquet row per customer."""
    from training.batch_score import score_customers

    settings = _settings(data)
    path = score_customers(
        settings, parse_as_of(as_of), data=settings.resolved_data_dir, out=out_file
    )
    out.print(f"scores written to [bold]{path}[/]")


@app.command()
@friendly_errors
def recommend(
    placement: Annotated[str, typer.Option(help="Placement name from the placements config.")],
    customers: Annotated[
        str, typer.Option(help="'all', or a file with one customer_id per line (or CSV column).")
    ] = "all",
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Output file (default: <home>/exports/recommendations.ndjson)."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="ndjson or csv.")] = "ndjson",
    data: DataOpt = None,
    include_not_eligible: Annotated[
        bool, typer.Option(help="Also write not-eligible recipients with their reason.")
    ] = False,
    record_sends: Annotated[
        bool, typer.Option(help="Record the exported items as sent (for the no-repeat rule).")
    ] = False,
    model_path: Annotated[
        Path | None,
        typer.Option("--model", help="A saved recommender folder (default: the champion)."),
    ] = None,
) -> None:
    """Export next-best-offers of a placement for an ESP send, one line per recipient."""

    from serving.export import run_recommend

    if fmt not in ("ndjson", "csv"):
        raise typer.BadParameter(f"--format must be ndjson or csv, got {fmt!r}")
    settings = _settings(data)
    summary = run_recommend(
        settings,
        placement,
        "all" if customers == "all" else Path(customers),
        out_file or settings.home / "exports" / "recommendations.ndjson",
        fmt,  # type: ignore[arg-type]
        model_path=model_path,
        include_not_eligible=include_not_eligible,
        record_sends=record_sends,
    )
    out.print(
        f"{summary.n_lines:,} recipients written to [bold]{summary.out}[/] "
        f"({summary.n_items:,} items, {summary.seconds:.1f}s); not eligible: "
        + (", ".join(f"{k}={v:,}" for k, v in summary.not_eligible_by_reason.items()) or "none")
    )


segments = typer.Typer(help="Audiences built from scores.", no_args_is_help=True)
app.add_typer(segments, name="segments")


@segments.command("in-market")
@friendly_errors
def in_market_segment(
    week: Annotated[str, typer.Option(help="ISO week YYYY-Www.")],
    min_prob: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Minimum P(next purchase in that week).")
    ] = 0.3,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Scores as of (default: after the last event).")
    ] = None,
    data: DataOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write CSV here.")] = None,
) -> None:
    """List who is back in the market for what in a given ISO week (email consent only)."""
    from serving.in_market import in_market

    settings = _settings(data)
    frame = in_market(
        settings,
        week,
        min_prob,
        as_of=parse_as_of(as_of) if as_of else None,
        data=settings.resolved_data_dir,
    )
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_file.with_name(f".{out_file.name}.tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(out_file)
        out.print(f"{len(frame):,} customer×item rows written to [bold]{out_file}[/]")
    else:
        out.print(frame.head(20).to_string(index=False))
        out.print(f"{len(frame):,} rows (showing up to 20; --out FILE writes all)")


keys = typer.Typer(help="API keys with scopes (stored hashed).", no_args_is_help=True)
app.add_typer(keys, name="keys")


@keys.command("create")
@friendly_errors
def keys_create(
    scopes: Annotated[
        str,
        typer.Option(
            help="Comma-separated: scores:read, recommendations:read, events:write, "
            "audiences:export, admin."
        ),
    ],
    label: Annotated[str, typer.Option(help="Who or what the key is for.")] = "",
) -> None:
    """Create an API key; it is printed once, on the last line, and stored only hashed."""
    from serving.api.keys import KeyStore, parse_scopes

    settings = _settings()
    store = KeyStore(settings.resolved_api_keys_file)
    key = store.create(parse_scopes(scopes), label)
    err.print(f"API key with scopes {scopes} (shown once; store it now):")
    print(key)


@keys.command("list")
@friendly_errors
def keys_list() -> None:
    """List key ids, scopes and status (never the keys themselves)."""
    from serving.api.keys import KeyStore

    for info in KeyStore(_settings().resolved_api_keys_file).list():
        status = f"revoked {info.revoked}" if info.revoked else "active"
        out.print(
            f"{info.key_id}  {','.join(sorted(info.scopes))}  {status}  {info.label}",
            highlight=False,
        )


@keys.command("revoke")
@friendly_errors
def keys_revoke(key_id: Annotated[str, typer.Argument(help="Key id (from `keys list`).")]) -> None:
    """Revoke a key; running servers refuse it on their next request."""
    from serving.api.keys import KeyStore

    if not KeyStore(_settings().resolved_api_keys_file).revoke(key_id):
        err.print(f"[bold red]error:[/] no active key with id {key_id!r}", highlight=False)
        raise typer.Exit(code=2)
    out.print(f"key {key_id} revoked")


@app.command()
@friendly_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 2,
    data: DataOpt = None,
) -> None:
    """Run the scoring and recommendation API (uvicorn, uvloop + httptools)."""
    from serving.api.serve import serve as run_server

    run_server(_settings(data), host=host, port=port, workers=workers)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
