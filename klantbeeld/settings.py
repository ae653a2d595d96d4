"""Settings read from ``KLANTBEELD_*`` environment variables.

Nothing happens at import: call :func:`get_settings` (cached) and pass the object on.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from klantbeeld.errors import ConfigError


class Settings(BaseSettings):
    """Every tunable of klantbeeld, with safe defaults.

    Paths are relative to the working directory unless absolute. Durations are days.
    """

    model_config = SettingsConfigDict(env_prefix="KLANTBEELD_", extra="ignore")

    home: Path = Field(
        Path("var"),
        description="Project data directory: demo shop, feature snapshots, MLflow store, outputs.",
    )
    data_dir: Path | None = Field(
        None,
        description="Input data (folder of Parquet/CSV or a DuckDB file); default home/demo-shop.",
    )
    lenient: bool = Field(
        False,
        description="Skip rows that break the data contract (and count them) instead of failing.",
    )
    feature_backend: Literal["duckdb", "pyspark"] = Field(
        "duckdb",
        description="Ibis backend that computes feature snapshots: duckdb (in process) or "
        "pyspark (the active Spark session; needs the `spark` extra and Java).",
    )
    threads: int | None = Field(None, ge=1, le=256, description="Threads for DuckDB; default all.")
    seed: int = Field(42, ge=0, description="Seed of every random step.")
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default a SQLite store under home."
    )

    train_as_of: datetime | None = Field(
        None,
        description="Train as if the data ended here (naive UTC): every training job reads "
        "only events before it and its test period ends there; default after the last event.",
    )

    # Model populations and horizons (ARCHITECTURE §3), in days.
    conversion_horizon_days: int = Field(7, ge=1, le=90)
    conversion_population_days: int = Field(30, ge=1, le=365)
    churn_horizon_days: int = Field(90, ge=7, le=365)
    churn_population_days: int = Field(365, ge=30, le=3650)
    repurchase_weeks: int = Field(12, ge=1, le=52)
    repurchase_level: Literal["item", "category"] = Field(
        "item", description="Repurchase-timing pairs: customer x item or customer x category."
    )
    clv_horizon_days: int = Field(
        90, ge=7, le=730, description="Expected purchases / CLV: days predicted after T."
    )

    # Recommender (issue 6): interaction weights per event type and candidate-source settings.
    recommender_event_weights: dict[str, float] = Field(
        default_factory=lambda: {"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0},
        description="Weight of one event of each type in the user x item interaction matrix.",
    )
    recommender_target_events: list[str] = Field(
        default_factory=lambda: ["purchase"],
        description="Event types that count as a hit in the recommender test period.",
    )
    recommender_test_days: int = Field(14, ge=1, le=90, description="Test period length, days.")
    recommender_als_factors: int = Field(64, ge=2, le=1024)
    recommender_als_iterations: int = Field(15, ge=1, le=100)
    recommender_als_regularization: float = Field(0.05, ge=0.0)
    recommender_als_alpha: float = Field(10.0, gt=0.0, description="ALS confidence weight.")
    recommender_confidence_scaling: Literal["linear", "log"] = Field(
        "log", description="ALS confidence: 1 + alpha*r (linear) or 1 + alpha*log(1+r) (log)."
    )
    recommender_knn_k: int = Field(50, ge=1, le=1000, description="Neighbours per item.")
    recommender_recent_half_life_days: float = Field(14.0, gt=0.0)
    recommender_als_candidate_items: int | None = Field(
        5_000,
        ge=1,
        description="ALS proposes only among this many most popular items (batch cost on "
        "large catalogues); None: the whole catalogue.",
    )
    recommender_ranker_estimators: int = Field(
        200,
        ge=1,
        le=5000,
        description="Most rounds of the LambdaRank re-ranker (early stopping keeps fewer).",
    )

    # Serving: placements and online state.
    placements_file: Path | None = Field(
        None,
        description="YAML file declaring the placements (newsletter, cart_abandonment, ...); "
        "default the packaged serving/placements.yaml.",
    )
    state_file: Path | None = Field(
        None,
        description="SQLite file of online state (sends, recent purchases); "
        "default home/state.sqlite.",
    )

    # Audiences (serving/audiences).
    phone_default_region: str = Field(
        "NL",
        pattern=r"^[A-Z]{2}$",
        description="ISO 3166 region of phone numbers written without a country code "
        "(parsed with the `phonenumbers` library before hashing to E.164).",
    )
    audiences_file: Path | None = Field(
        None,
        description="YAML file declaring the audiences (likely_buyers, churn_risk, ...); "
        "default the packaged serving/audiences/audiences.yaml.",
    )
    audience_holdout_share: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Share of each audience kept out of exports (deterministic: hash of "
        "customer id and audience name) so the uplift can be measured later.",
    )
    segments_file: Path | None = Field(
        None,
        description="YAML file declaring the segments (rules over scores, features and "
        "attributes); default the packaged serving/segments/segments.yaml.",
    )

    # API (serving/api).
    metrics_dir: Path | None = Field(
        None,
        description="Folder where API worker processes share their latency histograms; "
        "`klantbeeld serve` sets one per run (unset: per process).",
    )
    api_keys_file: Path | None = Field(
        None,
        description="SQLite file of hashed API keys (`klantbeeld keys`); "
        "default home/api_keys.sqlite.",
    )
    metrics_public: bool = Field(
        False,
        description="Serve GET /metrics without an API key (for a scraper on a private "
        "network); by default it needs a key with the `admin` scope.",
    )

    content_templates_dir: Path | None = Field(
        None,
        description="Folder of Jinja2 templates for `format=html` recommendations; it must "
        "hold content_block.html (and may hold <placement>.html or "
        "<placement>/<content_block>.html); default the packaged serving/templates.",
    )
    api_cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (CORS), e.g. "
        '["https://crm.example.com"]; empty (default): CORS off, no CORS headers sent.',
    )
    api_max_body_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="Largest request body the API accepts, bytes; larger bodies get 413.",
    )
    api_reload_poll_s: float = Field(
        2.0,
        gt=0.0,
        le=3600.0,
        description="Seconds between a worker's checks for a reload asked of another "
        "worker (`POST /v1/admin/reload`).",
    )

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.data_dir is not None and str(self.data_dir).strip() == "":
            raise ValueError("KLANTBEELD_DATA_DIR is set but empty")
        if "*" in self.api_cors_origins:
            raise ValueError(
                "KLANTBEELD_API_CORS_ORIGINS may not contain '*': list the origins allowed"
            )
        import phonenumbers

        if self.phone_default_region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(
                f"KLANTBEELD_PHONE_DEFAULT_REGION {self.phone_default_region!r} is not a "
                "region the phone-number library knows (ISO 3166 code such as NL, BE, DE)"
            )
        return self

    @property
    def resolved_data_dir(self) -> Path:
        """Input data location: ``data_dir`` if set, else ``home/demo-shop``."""
        return self.data_dir if self.data_dir is not None else self.home / "demo-shop"

    @property
    def features_dir(self) -> Path:
        """Where feature snapshots are written by default (``home/features``)."""
        return self.home / "features"

    @property
    def resolved_tracking_uri(self) -> str:
        """MLflow tracking URI: the setting, else ``sqlite:///<home>/mlflow.db``."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def resolved_state_file(self) -> Path:
        """SQLite file of online state: ``state_file`` if set, else ``home/state.sqlite``."""
        return self.state_file if self.state_file is not None else self.home / "state.sqlite"

    @property
    def resolved_api_keys_file(self) -> Path:
        """SQLite file of API keys: ``api_keys_file`` if set, else ``home/api_keys.sqlite``."""
        return (
            self.api_keys_file if self.api_keys_file is not None else self.home / "api_keys.sqlite"
        )

    @property
    def artifact_root(self) -> Path:
        """Artifact folder of the local MLflow store (``home/mlartifacts``)."""
        return (self.home / "mlartifacts").resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment.

    Returns
    -------
    Settings

    Raises
    ------
    ConfigError
        A ``KLANTBEELD_*`` variable has a value the settings refuse; the message names
        each variable, the value given and what was expected.
    """
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_settings_error(exc)) from None


def describe_settings_error(exc: ValidationError) -> str:
    """One line per refused setting: ``KLANTBEELD_<NAME>=<value>: <what was expected>``."""
    lines = ["invalid settings:"]
    for e in exc.errors():
        if e["loc"]:
            name = "KLANTBEELD_" + "__".join(str(p) for p in e["loc"]).upper()
            lines.append(f"  - {name}={e.get('input')!r}: {e['msg']}")
        else:
            lines.append(f"  - {e['msg']}")
    return "\n".join(lines)
