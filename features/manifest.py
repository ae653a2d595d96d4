"""Feature manifests: one typed, documented entry per output column.

The manifest is derived from the declared feature groups (:mod:`features.feature_groups`)
plus the values found at snapshot time (categories, channels), written as
``manifest.json`` next to the Parquet files of a snapshot and read back by training and
serving to pin a model's feature list.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from features import contract as c
from features.feature_groups import (
    CUSTOMER,
    ENTITY_KEYS,
    FeatureGroup,
    groups_for,
)

MANIFEST_VERSION = 1
KEY_GROUP = "key"

_KEY_DTYPE = "string"
_KEY_DESCRIPTIONS = {
    c.CUSTOMER_ID: "unified profile id",
    c.CATEGORY: "item category (as in the items table)",
    c.ITEM_ID: "item id",
}


@dataclass(frozen=True)
class FeatureSpec:
    """One column of a snapshot table.

    Attributes
    ----------
    name : str
        Column name.
    dtype : str
        ``float64``, ``int64``, ``int8``, ``category`` or ``string``.
    description : str
        Meaning, incl. when the value is NaN.
    unit : str
        ``days``, ``EUR``, ``count``, ``share``, ``ratio``, ``years``, ``flag``, ``label``
        or ``id``.
    group : str
        Feature group that produced it (``key`` for entity keys).
    entity : str
        Table it belongs to: ``customer``, ``customer_category`` or ``customer_item``.
    """

    name: str
    dtype: str
    description: str
    unit: str
    group: str
    entity: str = CUSTOMER


def expand_group(
    group: FeatureGroup, expansions: Mapping[str, Mapping[str, str]]
) -> list[FeatureSpec]:
    """Expand a group's column templates into concrete :class:`FeatureSpec` entries.

    Parameters
    ----------
    group : FeatureGroup
        The declared group.
    expansions : mapping
        For each ``expand`` kind used by the group (``category``, ``channel``,
        ``event_type``, ``lifecycle``), an ordered mapping value -> column-name fragment.

    Returns
    -------
    list[FeatureSpec]
        Columns in declaration order; windows ascending; expanded values in the order
        of the mapping.
    """
    out: list[FeatureSpec] = []
    for col in group.columns:
        windows: Iterable[int | None] = group.lookbacks_days if col.windowed else (None,)
        if col.expand is None:
            values: Mapping[str, str] = {"": ""}
        elif col.expand in expansions:
            values = expansions[col.expand]
        else:
            raise ValueError(f"expansions must provide values for {col.expand!r}")
        for value, fragment in values.items():
            for w in windows:
                name = col.name.replace("{key}", fragment)
                desc = col.description.replace("{key}", value)
                if w is not None:
                    name = name.replace("{w}", str(w))
                    desc = desc.replace("{w}", str(w))
                out.append(FeatureSpec(name, col.dtype, desc, col.unit, group.name, group.entity))
    return out


def build_manifest(entity: str, expansions: Mapping[str, Mapping[str, str]]) -> list[FeatureSpec]:
    """Return the full column list of one snapshot table: keys first, then features.

    Parameters
    ----------
    entity : str
        ``customer``, ``customer_category`` or ``customer_item``.
    expansions : mapping
        See :func:`expand_group`.
    """
    specs = [
        FeatureSpec(k, _KEY_DTYPE, _KEY_DESCRIPTIONS[k], "id", KEY_GROUP, entity)
        for k in ENTITY_KEYS[entity]
    ]
    for g in groups_for(entity):
        specs += expand_group(g, expansions)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"expansions produce duplicate column names: {dupes}")
    return specs


def feature_names(manifest: Iterable[FeatureSpec], entity: str = CUSTOMER) -> list[str]:
    """Names of the feature (non-key) columns of ``entity``, in manifest order."""
    return [s.name for s in manifest if s.entity == entity and s.group != KEY_GROUP]


def manifest_to_dict(
    as_of: datetime, manifest: Iterable[FeatureSpec], **extra: Any
) -> dict[str, Any]:
    """Return the JSON-ready form of a manifest (``as_of`` as ISO 8601, UTC)."""
    return {
        "version": MANIFEST_VERSION,
        "as_of": as_of.isoformat(),
        **extra,
        "features": [asdict(s) for s in manifest],
    }


def write_manifest(
    path: Path, as_of: datetime, manifest: Iterable[FeatureSpec], **extra: Any
) -> Path:
    """Write ``manifest.json`` atomically (temp file in the same folder, then rename).

    Parameters
    ----------
    path : Path
        Destination file.
    as_of : datetime
        Snapshot time T (naive UTC).
    manifest : iterable of FeatureSpec
        Entries to write.
    **extra
        Additional JSON-serialisable top-level fields (e.g. row counts).

    Returns
    -------
    Path
        ``path``.
    """
    text = json.dumps(manifest_to_dict(as_of, manifest, **extra), indent=2, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_manifest(path: Path) -> tuple[datetime, list[FeatureSpec]]:
    """Read a ``manifest.json``; returns ``(as_of, entries)``.

    Raises
    ------
    ValueError
        When the file is not a manifest of a supported version.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        raise ValueError(f"path {path} is not a version-{MANIFEST_VERSION} feature manifest")
    specs = [FeatureSpec(**entry) for entry in data["features"]]
    return datetime.fromisoformat(data["as_of"]), specs
