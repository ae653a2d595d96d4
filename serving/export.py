"""Batch export of a placement's recommendations for an ESP send (NDJSON or CSV).

One line per recipient, streamed in chunks (the whole audience is never held as Python
objects), with a progress bar. The file is written to a temporary path next to ``out`` and
renamed into place only when complete, so a failed run leaves the previous file intact.
Consent is enforced: recipients who may not receive the placement are counted per reason
in the summary and left out of the file (unless ``include_not_eligible``, which writes them
with ``eligible: false``, their reason and no items).

NDJSON line::

    {"customer_id": "c1", "placement": "newsletter", "eligible": true, "reason": null,
     "content_block": "baking", "items": [{"rank": 1, "item_id": "i9", "score": 0.83,
     "reason": "for_you", "title": ..., "url": ..., "image_url": ..., "price": 4.95,
     "category": "baking"}, ...]}

CSV: one row per recipient with ``customer_id, placement, eligible, reason, content_block,
n_items`` and, for k = 1..n_items, ``item_<k>_id, item_<k>_title, item_<k>_url,
item_<k>_image_url, item_<k>_price, item_<k>_score, item_<k>_reason``.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from tqdm.auto import tqdm

from features import contract as c
from klantbeeld.errors import ConfigError
from klantbeeld.settings import Settings
from serving.context import RecContext, build_context, index_codes
from serving.next_best_offer import CandidateModel, recommend_frame
from serving.online_overrides import OnlineControls, consent_context
from serving.placements import Placement, placements_from_settings
from serving.rules import CONTENT_BLOCK, ELIGIBLE, N_ITEMS, RANK, REASON, SCORE, RuleResult
from serving.state import SQLiteStateStore, StateStore

log = logging.getLogger(__name__)

Format = Literal["ndjson", "csv"]
PLACEMENT_FIELD = "placement"
ITEMS_FIELD = "items"
#: Item fields of an export line, in order (CSV: ``item_<k>_<name>``; ``id`` for item_id).
_ITEM_FIELDS = (c.ITEM_ID, c.TITLE, c.URL, c.IMAGE_URL, c.PRICE, SCORE, REASON)
_FLOAT_FIELDS = (c.PRICE, SCORE)


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote.

    Attributes
    ----------
    placement : str
    out : Path
        File written.
    fmt : {"ndjson", "csv"}
    n_recipients : int
        Distinct recipients asked for.
    n_eligible : int
        Recipients with at least one item (written to the file).
    n_not_eligible : int
    not_eligible_by_reason : dict of str to int
        e.g. ``{"no_email_consent": 1203, "unknown_customer": 4}``.
    n_lines : int
        Lines written (recipients; plus header for CSV not counted).
    n_items : int
        Items written over all recipients.
    seconds : float
        Wall time of the export.
    content_blocks : dict of str to int
        Eligible recipients per content block.
    """

    placement: str
    out: Path
    fmt: str
    n_recipients: int
    n_eligible: int
    n_not_eligible: int
    not_eligible_by_reason: dict[str, int]
    n_lines: int
    n_items: int
    seconds: float
    content_blocks: dict[str, int] = field(default_factory=dict)


def read_customer_ids(path: str | Path) -> list[str]:
    """Recipient ids from a file: Parquet/CSV with a ``customer_id`` column, or one id a line.

    Raises
    ------
    ConfigError
        The file is missing or a Parquet file has no ``customer_id`` column.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"customers file {p} does not exist")
    if p.suffix.lower() == ".parquet":
        frame = pd.read_parquet(p)
        if c.CUSTOMER_ID not in frame.columns:
            raise ConfigError(f"customers file {p} has no column {c.CUSTOMER_ID!r}")
        ids = frame[c.CUSTOMER_ID]
    else:
        with p.open(encoding="utf-8") as fh:
            header = fh.readline().strip().split(",")
        if c.CUSTOMER_ID in [h.strip().strip('"') for h in header]:
            ids = pd.read_csv(p, dtype=str, usecols=[c.CUSTOMER_ID])[c.CUSTOMER_ID]
        else:
            ids = pd.read_csv(p, dtype=str, header=None, usecols=[0])[0]
    ids = ids.dropna().astype(str).str.strip()
    return list(dict.fromkeys(ids[ids != ""]))


def export_recommendations(
    settings: Settings,
    placement: str,
    customers: Path | Literal["all"],
    out: Path,
    fmt: Format = "ndjson",
    *,
    context: RecContext | None = None,
    model: CandidateModel | None = None,
    state: StateStore | None = None,
    chunk_size: int = 50_000,
    include_not_eligible: bool = False,
    record_sends: bool = False,
    now: datetime | None = None,
    show_progress: bool = True,
) -> ExportSummary:
    """Write a placement's recommendations for every recipient, one line each.

    Parameters
    ----------
    settings : Settings
        Data location, placements file, state file.
    placement : str
        Placement name (declared in ``settings.placements_file`` or the packaged defaults).
    customers : Path or "all"
        File of recipient ids (see :func:`read_customer_ids`) or every known customer.
    out : Path
        Output file; replaced atomically when the export completes.
    fmt : {"ndjson", "csv"}
    context : RecContext, optional
        Rule context; default built from the shop at ``settings.resolved_data_dir``.
    model : CandidateModel, optional
        Fitted recommender (``NextBestOffers``); without it, popular fallback only.
    state : StateStore, optional
        Online state; default the SQLite file ``settings.resolved_state_file`` if it exists.
        Customers it lists as erased are left out of the export entirely, and consent
        changed through ``POST /v1/events`` counts as in the API.
    chunk_size : int
        Recipients per chunk (memory vs. overhead).
    include_not_eligible : bool
        Also write not-eligible recipients (``eligible: false``, reason, no items).
    record_sends : bool
        After the file is in place, record the exported items as sends in ``state`` so the
        next run excludes them (use when the file is sent as is).
    now : datetime, optional
        Reference instant (naive UTC); default the context's.
    show_progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    ExportSummary

    Raises
    ------
    ConfigError
        Unknown placement or format, bad placements file, missing customers file.
    """
    if fmt not in ("ndjson", "csv"):
        raise ConfigError(f"fmt must be 'ndjson' or 'csv', got {fmt!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    started = time.perf_counter()
    pl = placements_from_settings(settings).get(placement)
    if context is None:
        from features.shop import open_shop

        shop = open_shop(
            settings.resolved_data_dir, lenient=settings.lenient, threads=settings.threads
        )
        context = build_context(shop, now)
    if state is None and settings.resolved_state_file.is_file():
        state = SQLiteStateStore(settings.resolved_state_file)
    ids = (
        context.customer_index.to_numpy(dtype=object)
        if isinstance(customers, str) and customers == "all"
        else np.asarray(read_customer_ids(Path(customers)), dtype=object)
    )
    ids = pd.unique(ids.astype(str))
    if isinstance(state, OnlineControls):  # erasures and consent changed online count
        erased = state.erased()
        if erased:
            ids = ids[~np.isin(ids, np.array(sorted(erased), dtype=object))]
        context = consent_context(context, state.consent_overrides())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex}.tmp"
    reasons: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    n_eligible = n_lines = n_items = 0
    sent_parts: list[pd.DataFrame] = []
    writer = _NdjsonWriter(tmp, pl) if fmt == "ndjson" else _CsvWriter(tmp, pl)
    try:
        with tqdm(total=len(ids), unit="customer", disable=not show_progress, desc=pl.name) as bar:
            for start in range(0, len(ids), chunk_size):
                chunk = ids[start : start + chunk_size]
                result = recommend_frame(
                    chunk, pl, context=context, model=model, state=state, now=now
                )
                rec = result.recipients
                ok = rec[ELIGIBLE].to_numpy(dtype=bool)
                n_eligible += int(ok.sum())
                reasons.update(rec.loc[~ok, REASON].astype(str).tolist())
                blocks.update(rec.loc[ok, CONTENT_BLOCK].dropna().astype(str).tolist())
                n_items += len(result.recs)
                n_lines += writer.write(result, include_not_eligible)
                if record_sends and len(result.recs):
                    sent_parts.append(result.recs[[c.CUSTOMER_ID, c.ITEM_ID]])
                bar.update(len(chunk))
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        writer.abort()
        tmp.unlink(missing_ok=True)
        raise
    if record_sends and state is None:
        state = SQLiteStateStore(settings.resolved_state_file)
    if record_sends and sent_parts and state is not None:
        sent = pd.concat(sent_parts, ignore_index=True)
        sent[c.PLACEMENT] = pl.name
        sent[c.TS] = pd.Timestamp(
            now if now is not None else datetime.now(UTC).replace(tzinfo=None)
        )
        state.record_sends(sent)
    summary = ExportSummary(
        placement=pl.name,
        out=out,
        fmt=fmt,
        n_recipients=len(ids),
        n_eligible=n_eligible,
        n_not_eligible=len(ids) - n_eligible,
        not_eligible_by_reason=dict(sorted(reasons.items())),
        n_lines=n_lines,
        n_items=n_items,
        seconds=time.perf_counter() - started,
        content_blocks=dict(sorted(blocks.items())),
    )
    log.info(
        "exported %s for %d recipients to %s: %d eligible, not eligible %s (%.1f s)",
        pl.name,
        summary.n_recipients,
        out,
        n_eligible,
        summary.not_eligible_by_reason,
        summary.seconds,
    )
    return summary


def run_recommend(
    settings: Settings,
    placement: str,
    customers: Path | Literal["all"],
    out: Path,
    fmt: Format = "ndjson",
    *,
    model_path: Path | None = None,
    record_sends: bool = False,
    include_not_eligible: bool = False,
    show_progress: bool = True,
) -> ExportSummary:
    """``klantbeeld recommend``: load the served recommender and export a placement.

    Loads the model with :func:`serving.next_best_offer.load_next_best_offers` (the
    registered champion, else the last trained model, else ``NotTrainedError``), builds
    the rule context from the shop at ``settings.resolved_data_dir`` (as of its last
    event) and calls :func:`export_recommendations`.

    Parameters
    ----------
    settings : Settings
    placement : str
        Placement name.
    customers : Path or "all"
        File of recipient ids, or every customer of the shop.
    out : Path
        Output file (replaced atomically).
    fmt : {"ndjson", "csv"}
    model_path : Path, optional
        A saved :class:`NextBestOffers` folder instead of the registered/last one.
    record_sends, include_not_eligible, show_progress : bool
        See :func:`export_recommendations`.

    Returns
    -------
    ExportSummary

    Raises
    ------
    NotTrainedError
        No trained recommender.
    ConfigError
        Unknown placement or format, missing customers file.
    """
    from serving.next_best_offer import load_next_best_offers

    model = load_next_best_offers(settings, path=model_path)
    return export_recommendations(
        settings,
        placement,
        customers,
        out,
        fmt,
        model=model,
        record_sends=record_sends,
        include_not_eligible=include_not_eligible,
        show_progress=show_progress,
    )


class _NdjsonWriter:
    """NDJSON lines rendered by DuckDB's ``to_json`` (vectorised, correct escaping)."""

    def __init__(self, path: Path, placement: Placement) -> None:
        self.fh = path.open("w", encoding="utf-8", newline="\n")
        self.placement = placement
        self.con = duckdb.connect()

    def write(self, result: RuleResult, include_not_eligible: bool) -> int:
        rec = result.recipients
        if not include_not_eligible:
            rec = rec[rec[ELIGIBLE].to_numpy(dtype=bool)]
        if len(rec) == 0:
            return 0
        recipients = pd.DataFrame(
            {
                "_pos": np.arange(len(rec)),
                c.CUSTOMER_ID: rec[c.CUSTOMER_ID].astype(str).to_numpy(),
                ELIGIBLE: rec[ELIGIBLE].to_numpy(dtype=bool),
                REASON: rec[REASON].astype(object).to_numpy(),
                CONTENT_BLOCK: rec[CONTENT_BLOCK].astype(object).to_numpy(),
            }
        )
        items = result.recs
        item_cols = [RANK, c.ITEM_ID, SCORE, REASON, c.TITLE, c.URL, c.IMAGE_URL, c.PRICE]
        item_cols.append(c.CATEGORY)
        recs = items[[c.CUSTOMER_ID, *item_cols]].copy()
        for col in (c.ITEM_ID, REASON, c.TITLE, c.URL, c.IMAGE_URL, c.CATEGORY):
            recs[col] = recs[col].astype(object)
        recs[c.PRICE] = recs[c.PRICE].astype(float)
        self.con.register("_recipients", pa.Table.from_pandas(recipients, preserve_index=False))
        self.con.register("_recs", _arrow(recs))
        fields = ", ".join(f'"{k}" := "{k}"' for k in item_cols)
        q = f"""
            WITH lists AS (
                SELECT "{c.CUSTOMER_ID}",
                       list(struct_pack({fields}) ORDER BY "{RANK}") AS "{ITEMS_FIELD}"
                FROM _recs GROUP BY "{c.CUSTOMER_ID}"
            )
            SELECT to_json(struct_pack(
                "{c.CUSTOMER_ID}" := r."{c.CUSTOMER_ID}",
                "{PLACEMENT_FIELD}" := $placement,
                "{ELIGIBLE}" := r."{ELIGIBLE}",
                "{REASON}" := r."{REASON}",
                "{CONTENT_BLOCK}" := r."{CONTENT_BLOCK}",
                "{ITEMS_FIELD}" := coalesce(l."{ITEMS_FIELD}", [])
            ))::VARCHAR
            FROM _recipients r LEFT JOIN lists l USING ("{c.CUSTOMER_ID}")
            ORDER BY r._pos
        """
        lines = self.con.execute(q, {"placement": self.placement.name}).fetchall()
        self.fh.write("\n".join(line[0] for line in lines))
        self.fh.write("\n")
        self.con.unregister("_recipients")
        self.con.unregister("_recs")
        return len(lines)

    def close(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        self.con.close()

    def abort(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        self.con.close()


def _arrow(frame: pd.DataFrame) -> pa.Table:
    """Arrow table with string columns typed even when every value is missing."""
    arrays = {}
    for col in frame.columns:
        values = frame[col]
        if values.dtype == object:
            arrays[col] = pa.array(values.to_numpy(), type=pa.string(), from_pandas=True)
        else:
            arrays[col] = pa.array(values.to_numpy())
    return pa.table(arrays)


class _CsvWriter:
    """Wide CSV: one row per recipient, ``item_<k>_<field>`` columns (pyarrow writer)."""

    def __init__(self, path: Path, placement: Placement) -> None:
        self.path = path
        self.placement = placement
        n = placement.n_items
        fields: list[pa.Field] = [
            pa.field(c.CUSTOMER_ID, pa.string()),
            pa.field(PLACEMENT_FIELD, pa.string()),
            pa.field(ELIGIBLE, pa.bool_()),
            pa.field(REASON, pa.string()),
            pa.field(CONTENT_BLOCK, pa.string()),
            pa.field(N_ITEMS, pa.int64()),
        ]
        for k in range(1, n + 1):
            for f in _ITEM_FIELDS:
                typ = pa.float64() if f in _FLOAT_FIELDS else pa.string()
                fields.append(pa.field(_csv_name(k, f), typ))
        self.schema = pa.schema(fields)
        self.sink = pa.OSFile(str(path), "wb")
        self.writer = pacsv.CSVWriter(self.sink, self.schema)

    def write(self, result: RuleResult, include_not_eligible: bool) -> int:
        rec = result.recipients
        if not include_not_eligible:
            rec = rec[rec[ELIGIBLE].to_numpy(dtype=bool)]
        m = len(rec)
        if m == 0:
            return 0
        n = self.placement.n_items
        recs = result.recs
        row = index_codes(pd.Index(rec[c.CUSTOMER_ID].astype(str)), recs[c.CUSTOMER_ID])
        ok = row >= 0
        row, slot = row[ok], recs[RANK].to_numpy()[ok] - 1
        cols: dict[str, Any] = {
            c.CUSTOMER_ID: rec[c.CUSTOMER_ID].astype(str).tolist(),
            PLACEMENT_FIELD: [self.placement.name] * m,
            ELIGIBLE: rec[ELIGIBLE].to_numpy(dtype=bool),
            REASON: _none_list(rec[REASON]),
            CONTENT_BLOCK: _none_list(rec[CONTENT_BLOCK]),
            N_ITEMS: rec[N_ITEMS].to_numpy(dtype=np.int64),
        }
        for f in _ITEM_FIELDS:
            src = recs[f].to_numpy()[ok]
            if f in _FLOAT_FIELDS:
                grid = np.full((m, n), np.nan)
                grid[row, slot] = src.astype(float)
                for k in range(n):
                    cols[_csv_name(k + 1, f)] = pa.array(grid[:, k], from_pandas=True)
            else:
                obj = np.full((m, n), None, dtype=object)
                obj[row, slot] = src
                for k in range(n):
                    cols[_csv_name(k + 1, f)] = _none_list(pd.Series(obj[:, k], dtype=object))
        table = pa.table(
            [pa.array(cols[f.name], type=f.type, from_pandas=True) for f in self.schema],
            schema=self.schema,
        )
        self.writer.write_table(table)
        return m

    def close(self) -> None:
        self.writer.close()
        self.sink.close()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            self.sink.close()


def _csv_name(k: int, field_name: str) -> str:
    return f"item_{k}_{'id' if field_name == c.ITEM_ID else field_name}"


def _none_list(values: pd.Series) -> list[Any]:
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]


__all__ = ["ExportSummary", "export_recommendations", "read_customer_ids", "run_recommend"]
