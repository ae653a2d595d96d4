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
    "test_mae_clv_eur",
    "baseline_bgnbd_gg_mae_clv_eur",
    "test_mae_purchases",
    "baseline_bgnbd_gg_mae_purchases",
    "test_roc_auc_any_purchase",
    "baseline_bgnbd_gg_roc_auc_any_purchase",
)


def _clv_horizon(settings: Settings, model: str, horizon_days: int | None) -> Settings:
    """``settings`` with the CLV horizon of ``train clv --horizon-days H`` (and ``all``)."""
    if horizon_days is None:
        return settings
    if model not in ("clv", "all"):
        raise typer.BadParameter(f"--horizon-days applies to clv only, not {model!r}")
    return settings.model_copy(update={"clv_horizon_days": horizon_days})


#: Settings field -> the `klantbeeld train` option that sets it.
TRAINING_OPTIONS = {
    "train_as_of": "--as-of",
    "conversion_horizon_days": "--conversion-horizon",
    "conversion_population_days": "--conversion-population",
    "churn_horizon_days": "--churn-horizon",
    "churn_population_days": "--churn-population",
    "repurchase_weeks": "--repurchase-weeks",
    "repurchase_level": "--repurchase-level",
    "recommender_test_days": "--recommender-test-days",
}


def _training_settings(settings: Settings, **options: Any) -> Settings:
    """``settings`` with the training options given on the command line (None: unchanged),
    validated by the same bounds as their ``KLANTBEELD_*`` variables.

    Raises
    ------
    ConfigError
        An option is out of its bounds (the message names the option).
    """
    from pydantic import ValidationError

    from klantbeeld.errors import ConfigError

    update = {k: v for k, v in options.items() if v is not None}
    if not update:
        return settings
    try:
        return Settings.model_validate({**settings.model_dump(), **update})
    except ValidationError as exc:
        problems = "; ".join(
            f"{TRAINING_OPTIONS.get(str(e['loc'][0]), e['loc'][0]) if e['loc'] else ''}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"bad training option: {problems}") from None


ConversionHorizonOpt = Annotated[
    int | None, typer.Option(help="Conversion intent: purchase within D days after T.")
]
ConversionPopulationOpt = Annotated[
    int | None, typer.Option(help="Conversion intent: a session in the D days before T.")
]
ChurnHorizonOpt = Annotated[int | None, typer.Option(help="Churn: no purchase within D days.")]
ChurnPopulationOpt = Annotated[
    int | None, typer.Option(help="Churn: a purchase in the D days before T.")
]


@app.command()
@friendly_errors
def train(
    model: Annotated[
        str,
        typer.Argument(
            help="conversion_intent, churn, repurchase_timing, recommender, clv, or all."
        ),
    ] = "all",
    data: DataOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote to champion whatever the metrics.")
    ] = False,
    horizon_days: Annotated[
        int | None,
        typer.Option(
            "--horizon-days",
            min=7,
            max=730,
            help="clv: days of expected purchases and CLV after T (default 90, "
            "KLANTBEELD_CLV_HORIZON_DAYS).",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Train as if the data ended here (YYYY-MM-DD, UTC): only events before it; "
            "the test period ends there. Default: after the last event.",
        ),
    ] = None,
    conversion_horizon: ConversionHorizonOpt = None,
    conversion_population: ConversionPopulationOpt = None,
    churn_horizon: ChurnHorizonOpt = None,
    churn_population: ChurnPopulationOpt = None,
    repurchase_weeks: Annotated[
        int | None, typer.Option(help="Repurchase-timing horizon, weeks.", show_default=False)
    ] = None,
    repurchase_level: Annotated[
        str | None, typer.Option(help="Repurchase pairs: item or category.", show_default=False)
    ] = None,
    recommender_test_days: Annotated[
        int | None, typer.Option(help="Recommender test period, days.", show_default=False)
    ] = None,
) -> None:
    """Backtest, fit, evaluate and register a model in MLflow (one run per model).

    With 'all', a model the data cannot support (no sessions, one placeholder item, too
    short for its horizon) is skipped with a message naming what is missing.
    """
    from training.jobs import TRAINERS, train_model

    if model != "all" and model not in TRAINERS:
        raise typer.BadParameter(f"expected one of {', '.join([*TRAINERS, 'all'])}, got {model!r}")
    settings = _clv_horizon(
        _training_settings(
            _settings(data),
            train_as_of=parse_as_of(as_of) if as_of else None,
            conversion_horizon_days=conversion_horizon,
            conversion_population_days=conversion_population,
            churn_horizon_days=churn_horizon,
            churn_population_days=churn_population,
            repurchase_weeks=repurchase_weeks,
            repurchase_level=repurchase_level,
            recommender_test_days=recommender_test_days,
        ),
        model,
        horizon_days,
    )
    results = train_model(model, settings, settings.resolved_data_dir, force=force)
    _print_training(results, settings)
    if isinstance(results, dict) and not results:
        raise typer.Exit(code=2)


def _print_training(results: Any, settings: Settings) -> None:
    """Print each trained model's headline metrics and each skipped model's reason."""
    from training.tracking import ui_command

    for result in results.values() if isinstance(results, dict) else [results]:
        shown = ", ".join(
            f"{k}={result.metrics[k]:.4f}" for k in HEADLINE_METRICS if k in result.metrics
        )
        state = "[green]champion[/]" if result.promoted else "challenger"
        out.print(
            f"[bold]{result.model}[/] v{result.version} ({state}; {result.promotion_reason}) "
            f"test period {result.test_period}, {result.seconds:.0f}s\n  {shown}"
        )
    for reason in getattr(results, "skipped", {}).values():
        err.print(f"[bold yellow]skipped:[/] {reason}", highlight=False, soft_wrap=True)
    if not isinstance(results, dict) or results:
        out.print(f"Open the MLflow UI: {ui_command(settings)}")


@app.command()
@friendly_errors
def score(
    as_of: Annotated[str, typer.Option("--as-of", help="Snapshot time T (YYYY-MM-DD, UTC).")],
    data: DataOpt = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Output Parquet (default under <home>/scores).")
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="local: every champion in this process (with explanations); spark: the "
            "binary champions as mlflow.pyfunc.spark_udf on the active Spark session."
        ),
    ] = "local",
) -> None:
    """Score every customer with every champion model; write one Parquet row per customer."""
    if engine not in ("local", "spark"):
        raise typer.BadParameter(f"--engine must be local or spark, got {engine!r}")
    settings = _settings(data)
    if engine == "spark":
        from training.batch_score_spark import score_customers_spark

        path = score_customers_spark(
            settings, parse_as_of(as_of), data=settings.resolved_data_dir, out=out_file
        )
    else:
        from training.batch_score import score_customers

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


@segments.command("list")
@friendly_errors
def segments_list(
    data: DataOpt = None,
    report_dir: Annotated[
        Path | None,
        typer.Option("--report", help="Also write sizes/overlaps CSV and a PNG chart here."),
    ] = None,
) -> None:
    """Segments of the config with their sizes on the latest scores and features."""
    from serving.segments.config import get_segments
    from serving.segments.evaluate import evaluate_segments, load_segment_table, segment_report

    settings = _settings(data)
    segs = get_segments(settings)
    report = segment_report(evaluate_segments(segs, load_segment_table(settings)))
    for name, seg in segs.items():
        out.print(f"[bold]{name}[/] {report.sizes[name]:,}  {seg.description}", highlight=False)
    out.print(f"{report.n_customers:,} customers in the segment table")
    if report_dir is not None:
        from serving.segments.report import write_segment_report

        files = write_segment_report(report, report_dir)
        out.print("written " + ", ".join(str(p) for p in files.values()))


@segments.command("show")
@friendly_errors
def segments_show(
    name: Annotated[str, typer.Argument(help="Segment name (see `segments list`).")],
    out_file: Annotated[Path, typer.Option("--out", help="CSV file of member customer ids.")],
    data: DataOpt = None,
) -> None:
    """Write the members of one segment who gave e-mail consent (customer ids, CSV)."""
    import numpy as np

    from features import contract as c
    from klantbeeld.atomic import atomic_write_text
    from klantbeeld.errors import ConfigError
    from serving.segments.config import get_segments
    from serving.segments.evaluate import evaluate_segments, load_segment_table

    settings = _settings(data)
    segs = get_segments(settings)
    if name not in segs:
        raise ConfigError(f"unknown segment {name!r}; defined: {', '.join(sorted(segs))}")
    table = load_segment_table(settings)
    mask = evaluate_segments({name: segs[name]}, table)[name]
    consent = (
        table[c.CONSENT_EMAIL].astype("boolean").fillna(False).to_numpy(dtype=bool)
        if c.CONSENT_EMAIL in table.columns
        else np.zeros(len(table), dtype=bool)
    )
    ids = table[c.CUSTOMER_ID].to_numpy()[mask & consent]
    atomic_write_text(out_file, f"{c.CUSTOMER_ID}\n" + "".join(f"{i}\n" for i in ids))
    out.print(
        f"{len(ids):,} members of [bold]{name}[/] written to [bold]{out_file}[/]; "
        f"{int((mask & ~consent).sum()):,} without email consent left out"
    )


@segments.command("auto")
@friendly_errors
def segments_auto(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the assignment and report.")],
    k: Annotated[
        int | None, typer.Option("--k", min=2, help="Clusters (default: chosen by silhouette).")
    ] = None,
    features_file: Annotated[
        Path | None,
        typer.Option("--features", help="Customer feature snapshot (default: the newest)."),
    ] = None,
) -> None:
    """Automatic segments: k-means on scaled behavioural features, each cluster described."""
    import pandas as pd

    from serving.autosegments.kmeans import auto_segments
    from serving.autosegments.report import latest_customer_snapshot, write_auto_segments

    settings = _settings()
    path = features_file or latest_customer_snapshot(settings.features_dir)
    result = auto_segments(pd.read_parquet(path), k, seed=settings.seed)
    summary = write_auto_segments(result, out_dir, str(path))
    for cl in summary["clusters"]:
        out.print(f"cluster {cl['cluster']}: {cl['size']:,} ({cl['share']:.1%})  {cl['label']}")
    out.print(f"k={result.k}; written to [bold]{out_dir}[/]")


audience_app = typer.Typer(
    help="Audiences for ad platforms (hashed identifiers).", no_args_is_help=True
)
app.add_typer(audience_app, name="audience")


@audience_app.command("export")
@friendly_errors
def audience_export(
    name: Annotated[str, typer.Argument(help="Audience name (likely_buyers, churn_risk, ...).")],
    out_file: Annotated[Path, typer.Option("--out", help="CSV file to write.")],
    fmt: Annotated[str, typer.Option("--format", help="File format (csv).")] = "csv",
    layout: Annotated[
        str, typer.Option(help="Column layout: google (Customer Match) or meta (Custom Audiences).")
    ] = "google",
    data: DataOpt = None,
) -> None:
    """Write an audience as SHA-256 hashed e-mail/phone, its holdout and a report."""
    from serving.audiences.definitions import get_audience
    from serving.audiences.export import export_audience, open_audience_index

    if fmt != "csv":
        raise typer.BadParameter(f"--format must be csv, got {fmt!r}")
    if layout not in ("google", "meta"):
        raise typer.BadParameter(f"--layout must be google or meta, got {layout!r}")
    settings = _settings(data)
    definition = get_audience(settings, name)
    report = export_audience(
        settings,
        definition,
        out_file,
        layout,  # type: ignore[arg-type]
        index=open_audience_index(settings),
    )
    n = report.counts
    out.print(
        f"{n['exported']:,} members of [bold]{name}[/] written to [bold]{out_file}[/] "
        f"({layout} layout, threshold {report.threshold:.4f}); held out {n['holdout']:,} "
        f"(in {report.holdout_file}); left out: no ads consent {n['no_ads_consent']:,}, "
        f"fake contact data {n['fake_contact']:,}, no identifier {n['no_identifier']:,}"
    )


@app.command("threshold")
@friendly_errors
def threshold_cmd(
    model: Annotated[str, typer.Argument(help="conversion_intent or churn.")] = "conversion_intent",
    keep: Annotated[
        float | None,
        typer.Option("--keep-conversions", min=0.0, max=1.0, help="Share of conversions to keep."),
    ] = None,
    max_audience: Annotated[
        int | None, typer.Option("--max-audience", min=1, help="At most this many people.")
    ] = None,
    budget: Annotated[
        float | None, typer.Option("--budget", min=0.0, help="Budget (money) for the audience.")
    ] = None,
    cost: Annotated[
        float | None, typer.Option("--cost-per-person", min=0.0, help="Money per reached person.")
    ] = None,
    population: Annotated[
        int | None,
        typer.Option("--population", min=1, help="Scale sizes to this many scored people."),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for threshold_<model>.json and .png.")
    ] = Path("."),
) -> None:
    """Choose a score threshold for a goal from the last backtest's gain curve."""
    from serving.targeting.curve_source import last_backtest_curve
    from serving.targeting.report import write_choice
    from serving.targeting.threshold import Goal, choose_threshold

    given = [g for g in (keep, max_audience, budget) if g is not None]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of --keep-conversions, --max-audience, --budget")
    if keep is not None:
        goal = Goal("keep_conversions", keep)
    elif max_audience is not None:
        goal = Goal("max_audience", float(max_audience), cost)
    else:
        goal = Goal("budget", float(budget or 0.0), cost)
    source = last_backtest_curve(model, _settings())
    report = write_choice(source, choose_threshold(source.curve, goal, population), out_dir)
    out.print(
        f"[bold]{model}[/] score >= {report['threshold']:.4f}: {report['audience_size']:,} of "
        f"{report['population']:,} people ({report['audience_share']:.1%}), "
        f"{report['conversions_kept']:.1%} of conversions kept, "
        f"spend saved {report['spend_saved']:.1%} vs {report['spend_saved_vs']}"
    )
    if "audience_vs_oracle" in report:
        out.print(
            f"  audience / oracle audience at the same conversions: "
            f"{report['audience_vs_oracle']:.3f}"
        )
    out.print(
        f"  test period {report['test_period']}; written {report['report_file']}, "
        f"{report['plot_file']}"
    )


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


@app.command("import")
@friendly_errors
def import_export(
    mapping: Annotated[
        Path, typer.Option("--mapping", help="YAML mapping of source names onto the contract.")
    ],
    source: Annotated[Path, typer.Option("--source", help="Folder of the raw export.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Contract folder to write.")],
    lenient: LenientOpt = False,
) -> None:
    """Map a raw export onto the data contract (docs/mapping.md), write it, validate it.

    Problems are reported with the source column and the mapping line they come from.
    """
    from features.mapping import import_source, load_mapping, validate_import

    m = load_mapping(mapping)
    summary = import_source(m, source, out_dir)
    out.print(
        f"imported to [bold]{summary.out}[/]: "
        + ", ".join(f"{k}={v:,}" for k, v in summary.rows.items())
    )
    if summary.unmapped_event_types:
        out.print(
            "event names kept as they are (not in event_types): "
            + ", ".join(f"{k}={v:,}" for k, v in summary.unmapped_event_types.items()),
            highlight=False,
        )
    shop = validate_import(m, out_dir, lenient=lenient)
    out.print(f"[green]valid[/]: {shop.source}")
    out.print(shop.report.summary())


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
