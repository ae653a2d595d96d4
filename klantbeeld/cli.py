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
from datetime import date, datetime
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
        value = value.astimezone(tz=None).replace(tzinfo=None)
    return value


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

    settings = get_settings()
    target = out_dir or settings.home / "demo-shop"
    summary = generate_demo_shop(
        target,
        n_customers=customers,
        seed=seed,
        end=date.fromisoformat(end),
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
    shop = open_shop(settings.resolved_data_dir, lenient=settings.lenient, threads=settings.threads)
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
        settings.resolved_data_dir, parse_as_of(as_of), target, lenient=settings.lenient
    )
    out.print(
        f"snapshot at {snapshot.as_of:%Y-%m-%d}: {len(snapshot.customer):,} customers × "
        f"{snapshot.customer.shape[1] - 1} features, {len(snapshot.customer_category):,} "
        f"customer×category rows, {len(snapshot.customer_item):,} customer×item rows"
    )
    out.print(f"written to [bold]{target / f'as_of={snapshot.as_of:%Y-%m-%d}'}[/]")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
