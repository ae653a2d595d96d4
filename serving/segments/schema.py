"""The names a segment rule may use, and their kinds (number, bool, string).

- **scores**: the batch score of each model (``conversion_intent``, ``churn``,
  ``repurchase_timing``), a probability;
- **features**: every customer-level column declared in :mod:`features.feature_groups`
  (``recency_days``, ``orders_90d``, ``days_since_last_purchase``, ``lifecycle_stage``,
  ``view_share_baking``, ...); ``{w}`` expands to the lookback windows, a ``{key}`` family
  (one column per category, channel, event type, lifecycle stage) accepts any key;
- **attributes**: the customer columns of the data contract (``consent_email``,
  ``consent_ads``, ``gender``, ``city``, ``postcode``);
- **derived**: ``days_to_next_purchase`` (repurchase timing's expected days to the next
  order: in-market segments), ``rfm_r``, ``rfm_f``, ``rfm_m`` (1-5) and ``rfm_segment``
  (:mod:`serving.segments.rfm`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from features import contract as c
from features import feature_groups as fg
from serving.segments.expressions import Kind

SCORES: tuple[str, ...] = ("conversion_intent", "churn", "repurchase_timing")
ATTRIBUTES: dict[str, Kind] = {
    c.CONSENT_EMAIL: "bool",
    c.CONSENT_ADS: "bool",
    c.GENDER: "string",
    c.CITY: "string",
    c.POSTCODE: "string",
}
DAYS_TO_NEXT_PURCHASE = "days_to_next_purchase"
DERIVED: dict[str, Kind] = {
    DAYS_TO_NEXT_PURCHASE: "number",
    "rfm_r": "number",
    "rfm_f": "number",
    "rfm_m": "number",
    "rfm_segment": "string",
}
_DTYPE_KIND: dict[str, Kind] = {
    "float64": "number",
    "int64": "number",
    "int8": "number",
    "category": "string",
    "string": "string",
}


@dataclass(frozen=True)
class Schema(Mapping[str, Kind]):
    """Known names -> kind; ``{key}`` families are matched by pattern.

    Attributes
    ----------
    exact : dict of str to Kind
    families : tuple of (compiled pattern, Kind)
    """

    exact: dict[str, Kind]
    families: tuple[tuple[re.Pattern[str], Kind], ...] = ()

    def __getitem__(self, name: str) -> Kind:
        if name in self.exact:
            return self.exact[name]
        for pattern, kind in self.families:
            if pattern.fullmatch(name):
                return kind
        raise KeyError(name)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.exact)

    def __len__(self) -> int:
        return len(self.exact)

    def __contains__(self, name: object) -> bool:
        try:
            self[str(name)]
        except KeyError:
            return False
        return True


def default_schema() -> Schema:
    """Scores, declared customer features and contract attributes (see module docstring)."""
    exact: dict[str, Kind] = {s: "number" for s in SCORES}
    exact.update(ATTRIBUTES)
    exact.update(DERIVED)
    families: list[tuple[re.Pattern[str], Kind]] = []
    for group in fg.groups_for(fg.CUSTOMER):
        windows = group.lookbacks_days or fg.WINDOWS_DAYS
        for col in group.columns:
            kind = _DTYPE_KIND[col.dtype]
            names = (
                [col.name.replace("{w}", str(w)) for w in windows] if col.windowed else [col.name]
            )
            for name in names:
                if "{key}" in name:
                    pattern = re.escape(name).replace(re.escape("{key}"), "[a-z0-9_]+")
                    families.append((re.compile(pattern), kind))
                else:
                    exact[name] = kind
    return Schema(exact, tuple(families))


__all__ = ["ATTRIBUTES", "DAYS_TO_NEXT_PURCHASE", "DERIVED", "SCORES", "Schema", "default_schema"]
