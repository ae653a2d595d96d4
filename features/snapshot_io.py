"""Writing and reading feature snapshots: one folder per T, three Parquet tables and a manifest.

:class:`Snapshot` is what :func:`features.snapshot.build_snapshot` returns;
:func:`write_snapshot` writes it atomically (temporary folder, then rename) and
:func:`read_snapshot` reads it back.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import feature_groups as fg
from features.manifest import FeatureSpec, read_manifest, write_manifest

log = logging.getLogger(__name__)

TABLE_FILES = {
    fg.CUSTOMER: "customer.parquet",
    fg.CUSTOMER_CATEGORY: "customer_category.parquet",
    fg.CUSTOMER_ITEM: "customer_item.parquet",
}
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Snapshot:
    """Point-in-time features of every customer at ``as_of``.

    Attributes
    ----------
    as_of : datetime
        Snapshot time T (naive UTC). Nothing at or after T was read.
    customer : pandas.DataFrame
        One row per customer created before T, sorted by ``customer_id``; columns in
        manifest order.
    customer_category : pandas.DataFrame
        One row per (customer, category) with at least one order of a repurchasable
        item of that category before T, sorted by the keys.
    customer_item : pandas.DataFrame
        One row per (customer, repurchasable item) bought before T, sorted by the keys.
    manifest : list[FeatureSpec]
        One entry per column of the three tables (``entity`` says which).
    """

    as_of: datetime
    customer: pd.DataFrame = field(repr=False)
    customer_category: pd.DataFrame = field(repr=False)
    customer_item: pd.DataFrame = field(repr=False)
    manifest: list[FeatureSpec] = field(repr=False)

    def table(self, entity: str) -> pd.DataFrame:
        """Return the table of ``entity``: customer, customer_category or customer_item."""
        if entity not in fg.ENTITIES:
            raise ValueError(f"entity must be one of {fg.ENTITIES}, got {entity!r}")
        return getattr(self, entity)


def snapshot_dirname(as_of: datetime) -> str:
    """Folder name of a snapshot: ``as_of=YYYY-MM-DD`` (with ``THH-MM-SS`` when not midnight)."""
    if as_of.time() == datetime.min.time():
        return f"as_of={as_of:%Y-%m-%d}"
    return f"as_of={as_of:%Y-%m-%dT%H-%M-%S}"


def write_snapshot(snapshot: Snapshot, out: str | Path) -> Path:
    """Write the three tables as Parquet plus ``manifest.json`` to ``out/as_of=.../``.

    The folder is written under a temporary name next to the target and renamed into
    place, so readers never see a half-written snapshot and a failed write leaves the
    previous snapshot intact.

    Returns
    -------
    Path
        The snapshot folder.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / snapshot_dirname(snapshot.as_of)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=out))
    try:
        for entity, filename in TABLE_FILES.items():
            table = pa.Table.from_pandas(snapshot.table(entity), preserve_index=False)
            pq.write_table(table, tmp / filename, compression="zstd")
        rows = {e: len(snapshot.table(e)) for e in fg.ENTITIES}
        write_manifest(
            tmp / MANIFEST_FILE,
            snapshot.as_of,
            snapshot.manifest,
            tables=dict(TABLE_FILES),
            rows=rows,
            lifecycle_rule=fg.LIFECYCLE_RULE,
        )
        old = None
        if target.exists():
            old = out / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_snapshot(path: str | Path) -> Snapshot:
    """Read a snapshot folder written by :func:`write_snapshot`."""
    path = Path(path)
    as_of, manifest = read_manifest(path / MANIFEST_FILE)
    tables = {e: pd.read_parquet(path / f) for e, f in TABLE_FILES.items()}
    return Snapshot(as_of=as_of, manifest=manifest, **tables)
