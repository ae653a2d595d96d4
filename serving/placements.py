"""Placement configuration: where recommendations go and which business rules hold there.

A placement (``newsletter``, ``cart_abandonment``, ``post_purchase``, ``web_for_you``, ...)
is declared in a YAML file and validated on load. The packaged defaults live in
``serving/placements.yaml``; ``Settings.placements_file`` (``KLANTBEELD_PLACEMENTS_FILE``)
points at a user file of the same shape. A bad file raises :class:`ConfigError` naming the
file, the placement and the field. See ``docs/placements.md``.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features import contract as c
from klantbeeld.errors import ConfigError
from klantbeeld.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_PLACEMENTS = "placements.yaml"

Channel = Literal["email", "web", "app", "ads"]
Source = Literal["als", "item_knn", "buy_again", "recently_viewed", "popular", "popular_in_segment"]

#: Consent column each channel requires; ``None``: first-party surfaces (own site or app),
#: where the visitor is already in a session and no marketing consent is needed.
CHANNEL_CONSENT: dict[str, str | None] = {
    "email": c.CONSENT_EMAIL,
    "ads": c.CONSENT_ADS,
    "web": None,
    "app": None,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PurchasedRule(_Strict):
    """Exclude what the customer already bought.

    Attributes
    ----------
    days : int
        Items that are neither durable nor repurchasable are excluded for this many days
        after the customer's last purchase of them.
    durable_never : bool
        Durable items (``items.durable``) the customer ever bought are never offered again.
    window_open, window_close : float
        Repurchasable items (consumables) come back only inside their repurchase window:
        ``window_open * cycle <= days since last purchase <= window_close * cycle``, with
        ``cycle`` the customer's own mean days between orders of the item
        (``own_cycle_days``) when they have at least ``min_own_cycles`` gaps, else the
        item's median cycle (:func:`features.definitions.median_cycle_days`).
        ``window_close = None`` leaves the window open-ended. A consumable without any
        known cycle falls back to ``days``.
    min_own_cycles : int
        Gaps (repeat purchases) a customer needs before their own cycle is used.
    """

    days: int = Field(90, ge=0, le=3650)
    durable_never: bool = True
    window_open: float = Field(0.8, gt=0, le=10)
    window_close: float | None = Field(2.0, gt=0, le=100)
    min_own_cycles: int = Field(2, ge=1, le=100)

    @model_validator(mode="after")
    def _window_ordered(self) -> PurchasedRule:
        if self.window_close is not None and self.window_close < self.window_open:
            raise ValueError(
                f"window_close ({self.window_close}) must be >= window_open ({self.window_open})"
            )
        return self


class PriceBand(_Strict):
    """Keep items whose price (EUR) lies in ``[min, max]``; either end may be open."""

    min: float | None = Field(None, ge=0)
    max: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> PriceBand:
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class Rules(_Strict):
    """Business rules of one placement (``None`` switches a rule off).

    Attributes
    ----------
    exclude_purchased : PurchasedRule or None
        What the customer bought (see :class:`PurchasedRule`).
    exclude_sent_days : int or None
        Exclude items sent/recommended to this customer in the last this-many days
        (``sends`` table plus sends recorded at run time).
    sent_same_placement_only : bool
        Count only earlier sends of this placement (default: sends of any placement).
    exclude_unavailable : bool
        Exclude inactive and out-of-stock items.
    max_per_category : int or None
        At most this many items of one category per recipient.
    price_band : PriceBand or None
        Keep only items inside the price band (EUR).
    include_cart : bool
        Put the customer's open cart items first (cart_abandonment).
    cart_days : int
        An add-to-cart counts as open for this many days unless bought or removed.
    require_cart : bool
        A recipient without an open cart is not eligible (reason ``empty_cart``).
    """

    exclude_purchased: PurchasedRule | None = Field(default_factory=PurchasedRule)
    exclude_sent_days: int | None = Field(14, ge=1, le=3650)
    sent_same_placement_only: bool = False
    exclude_unavailable: bool = True
    max_per_category: int | None = Field(None, ge=1, le=100)
    price_band: PriceBand | None = None
    include_cart: bool = False
    cart_days: int = Field(7, ge=1, le=365)
    require_cart: bool = False

    @model_validator(mode="after")
    def _cart_consistent(self) -> Rules:
        if self.require_cart and not self.include_cart:
            raise ValueError("require_cart needs include_cart: true")
        return self


class Placement(_Strict):
    """One placement: channel, candidate sources, size, rules and content blocks.

    Attributes
    ----------
    name : str
        Placement name (the key in the YAML file).
    channel : {"email", "web", "app", "ads"}
        Where it is shown; decides the consent required (:data:`CHANNEL_CONSENT`).
    n_items : int
        Items returned per recipient.
    candidate_sources : list of str
        Candidate generators that feed it.
    n_per_source : int
        Candidates asked from each source per customer.
    max_candidates : int
        Ranked candidates per customer kept before the rules run.
    fallback : {"popular", "none"}
        ``popular``: recipients with too few items after the rules (unknown customers,
        customers without history) are filled with popular items of their segment (their
        top category), then overall popular items.
    rules : Rules
        Business rules.
    content_blocks : dict of str to list of str
        Content block name -> categories whose affinity selects it.
    default_content_block : str or None
        Block for recipients with no affinity to any mapped category.
    """

    name: str
    description: str = ""
    channel: Channel
    n_items: int = Field(ge=1, le=100)
    candidate_sources: list[Source] = Field(min_length=1)
    n_per_source: int = Field(50, ge=1, le=1000)
    max_candidates: int = Field(100, ge=1, le=10_000)
    fallback: Literal["popular", "none"] = "popular"
    rules: Rules = Field(default_factory=Rules)
    content_blocks: dict[str, list[str]] = Field(default_factory=dict)
    default_content_block: str | None = None

    @property
    def consent_column(self) -> str | None:
        """Consent column the channel requires, ``None`` when none is needed."""
        return CHANNEL_CONSENT[self.channel]

    @model_validator(mode="after")
    def _candidates_cover_items(self) -> Placement:
        if self.max_candidates < self.n_items:
            raise ValueError(
                f"max_candidates ({self.max_candidates}) must be >= n_items ({self.n_items})"
            )
        for block, cats in self.content_blocks.items():
            if not cats:
                raise ValueError(f"content block {block!r} maps to no category")
        return self


class PlacementConfig(_Strict):
    """All placements of one config file.

    Attributes
    ----------
    placements : dict of str to Placement
        Placement name -> placement.
    source : str
        File the config was read from (for error messages).
    """

    placements: dict[str, Placement]
    source: str = "<memory>"

    def get(self, name: str) -> Placement:
        """Return placement ``name``; :class:`ConfigError` naming the known ones otherwise."""
        try:
            return self.placements[name]
        except KeyError:
            known = ", ".join(sorted(self.placements))
            raise ConfigError(
                f"placement {name!r} is not declared in {self.source}; known: {known}"
            ) from None

    @property
    def names(self) -> list[str]:
        """Declared placement names, in file order."""
        return list(self.placements)


def parse_placements(data: Any, source: str = "<memory>") -> PlacementConfig:
    """Validate a parsed placements document (the YAML's content as Python objects).

    Parameters
    ----------
    data : Any
        Mapping with one key ``placements`` holding ``{name: {field: value}}``.
    source : str
        File name used in error messages.

    Returns
    -------
    PlacementConfig

    Raises
    ------
    ConfigError
        Listing every problem as ``<file>: placement '<name>', field '<a.b>': <message>``.
    """
    if not isinstance(data, dict) or "placements" not in data:
        raise ConfigError(f"{source}: expected a mapping with a top-level key 'placements'")
    extra = sorted(set(data) - {"placements"})
    if extra:
        raise ConfigError(f"{source}: unknown top-level key(s) {', '.join(map(repr, extra))}")
    raw = data["placements"]
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{source}: 'placements' must be a non-empty mapping of name -> fields")

    problems: list[str] = []
    placements: dict[str, Placement] = {}
    for name, fields in raw.items():
        if not isinstance(fields, dict):
            problems.append(f"{source}: placement {name!r}: expected a mapping of fields")
            continue
        if "name" in fields and fields["name"] != name:
            problems.append(f"{source}: placement {name!r}, field 'name': differs from its key")
            continue
        try:
            placements[str(name)] = Placement.model_validate({**fields, "name": str(name)})
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"]) or "<placement>"
                got = f" (got {err['input']!r})" if "input" in err and _short(err["input"]) else ""
                problems.append(f"{source}: placement {name!r}, field {loc!r}: {err['msg']}{got}")
    if problems:
        raise ConfigError(
            f"invalid placements config {source} ({len(problems)} problem(s)):\n  - "
            + "\n  - ".join(problems)
        )
    return PlacementConfig(placements=placements, source=source)


def _short(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def load_placements(path: str | Path | None = None) -> PlacementConfig:
    """Read and validate a placements YAML file.

    Parameters
    ----------
    path : str or Path, optional
        User file; default the packaged ``serving/placements.yaml``.

    Returns
    -------
    PlacementConfig

    Raises
    ------
    ConfigError
        The file is missing, is not valid YAML (with line and column), or breaks the
        schema (each problem names the file, placement and field).
    """
    if path is None:
        ref = resources.files("serving").joinpath(DEFAULT_PLACEMENTS)
        text = ref.read_text(encoding="utf-8")
        source = str(ref)
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"placements file {p} does not exist")
        text = p.read_text(encoding="utf-8")
        source = str(p)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {exc}") from None
    config = parse_placements(data, source)
    log.debug("loaded %d placements from %s", len(config.placements), source)
    return config


def placements_from_settings(settings: Settings) -> PlacementConfig:
    """Load the placements named by ``settings.placements_file`` (packaged default if unset)."""
    return load_placements(settings.placements_file)


__all__ = [
    "CHANNEL_CONSENT",
    "Placement",
    "PlacementConfig",
    "PriceBand",
    "PurchasedRule",
    "Rules",
    "load_placements",
    "parse_placements",
    "placements_from_settings",
]
