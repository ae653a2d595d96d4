"""Select an audience's members and write them as hashed identifiers for an ad platform.

Selection (:func:`select_members`), in order, each step counted in the report:

1. scored by the audience's model with ``score >= threshold``;
2. ads consent given (no consent, no membership);
3. plausible contact data (data-quality score 1.0: no obviously fake e-mail or phone);
4. at least one usable identifier (valid e-mail address or valid phone number);
5. not in the audience's deterministic holdout (:mod:`serving.audiences.holdout`).

Layouts (:func:`csv_lines`), both hashed with SHA-256, one customer a row:

- ``google`` (Customer Match customer list): header ``Email,Phone``; phone hashed in
  E.164 with ``+``.
- ``meta`` (Custom Audiences customer file): header ``email,phone``; phone hashed as
  country code and number, digits only (Meta's normalisation drops the ``+``).

:func:`export_audience` writes ``<out>`` (the identifiers), ``<out stem>.holdout.csv``
(customer ids and scores of the holdout, for measuring uplift later; never uploaded) and
``<out stem>.report.json``, each through a temporary file and a rename.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from features import contract as c
from klantbeeld.atomic import atomic_write_text
from klantbeeld.errors import ConfigError
from klantbeeld.settings import Settings
from serving.audiences.definitions import AudienceDefinition
from serving.audiences.holdout import in_holdout
from serving.audiences.index import MIN_QUALITY, AudienceIndex

log = logging.getLogger(__name__)

Layout = Literal["google", "meta"]
LAYOUT_HEADERS: dict[str, tuple[str, str]] = {
    "google": ("Email", "Phone"),
    "meta": ("email", "phone"),
}


@dataclass(frozen=True)
class AudienceSelection:
    """Who is exported, who is held out, and why the others are not.

    Attributes
    ----------
    audience, score : str
        Audience name and the model whose score ranks it.
    threshold : float
        Score threshold applied (probability).
    rows : ndarray of int64
        Exported members (rows of the :class:`AudienceIndex`).
    holdout_rows : ndarray of int64
        Eligible members held out.
    counts : dict of str to int
        ``scored``, ``above_threshold``, ``no_ads_consent``, ``fake_contact``,
        ``no_identifier``, ``holdout``, ``exported``.
    """

    audience: str
    score: str
    threshold: float
    rows: np.ndarray
    holdout_rows: np.ndarray
    counts: dict[str, int]


def select_members(
    index: AudienceIndex, definition: AudienceDefinition, holdout_share: float
) -> AudienceSelection:
    """Apply an audience definition, consent, data quality and the holdout.

    Parameters
    ----------
    index : AudienceIndex
    definition : AudienceDefinition
    holdout_share : float
        Share of eligible members held out, in [0, 1).

    Returns
    -------
    AudienceSelection

    Raises
    ------
    ConfigError
        The audience's model has no scores.
    """
    if definition.score not in index.scores.models:
        raise ConfigError(
            f"audience {definition.name!r} uses score {definition.score!r}, which has no "
            f"batch scores; scored models: {', '.join(index.scores.models)}"
        )
    score = np.asarray(index.scores.score_array(definition.score))
    threshold = definition.threshold(score)
    with np.errstate(invalid="ignore"):
        above = score >= threshold
    consent = above & index.consent["ads"]
    plausible = consent & (index.quality >= MIN_QUALITY)
    has_id = np.array(
        [
            e is not None or p is not None
            for e, p in zip(index.email_hash, index.phone_hash_e164, strict=True)
        ],
        dtype=bool,
    )
    eligible = np.flatnonzero(plausible & has_id)
    ids = [b.decode("utf-8") for b in index.scores.ids[eligible].tolist()]
    held = in_holdout(ids, definition.name, holdout_share)
    counts = {
        "scored": int(np.isfinite(score).sum()),
        "above_threshold": int(above.sum()),
        "no_ads_consent": int((above & ~index.consent["ads"]).sum()),
        "fake_contact": int((consent & (index.quality < MIN_QUALITY)).sum()),
        "no_identifier": int((plausible & ~has_id).sum()),
        "holdout": int(held.sum()),
        "exported": int((~held).sum()),
    }
    return AudienceSelection(
        audience=definition.name,
        score=definition.score,
        threshold=threshold,
        rows=eligible[~held],
        holdout_rows=eligible[held],
        counts=counts,
    )


def csv_lines(
    index: AudienceIndex, rows: np.ndarray, layout: Layout, chunk: int = 20_000
) -> Iterator[bytes]:
    """CSV of hashed identifiers (header first) in the ad platform's layout.

    Parameters
    ----------
    index : AudienceIndex
    rows : ndarray of int
        Members to write (from :func:`select_members`).
    layout : {"google", "meta"}
    chunk : int
        Lines per yielded block.

    Yields
    ------
    bytes
        UTF-8 CSV; an unknown identifier is an empty field.
    """
    if layout not in LAYOUT_HEADERS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUT_HEADERS)}, got {layout!r}")
    phones = index.phone_hash_e164 if layout == "google" else index.phone_hash_digits
    yield (",".join(LAYOUT_HEADERS[layout]) + "\n").encode()
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        yield "".join(
            f"{e or ''},{p or ''}\n"
            for e, p in zip(index.email_hash[part], phones[part], strict=True)
        ).encode()


def _csv_field(value: bytes) -> bytes:
    if b"," in value or b'"' in value or b"\n" in value or b"\r" in value:
        return b'"' + value.replace(b'"', b'""') + b'"'
    return value


def id_csv_lines(index: AudienceIndex, rows: np.ndarray, chunk: int = 20_000) -> Iterator[bytes]:
    """CSV with one column ``customer_id`` (header first) of the member rows, in chunks."""
    yield f"{c.CUSTOMER_ID}\n".encode()
    for start in range(0, len(rows), chunk):
        ids = index.scores.ids[rows[start : start + chunk]]
        yield b"".join(_csv_field(b) + b"\n" for b in ids.tolist())


@dataclass(frozen=True)
class AudienceExportReport:
    """What :func:`export_audience` wrote (also saved as ``<stem>.report.json``)."""

    audience: str
    score: str
    layout: str
    threshold: float
    holdout_share: float
    counts: dict[str, int]
    out: str
    holdout_file: str
    exported_at: str
    seconds: float


def holdout_path(out: Path) -> Path:
    """``<dir>/<stem>.holdout.csv`` next to the export file."""
    return out.with_name(f"{out.stem}.holdout.csv")


def report_path(out: Path) -> Path:
    """``<dir>/<stem>.report.json`` next to the export file."""
    return out.with_name(f"{out.stem}.report.json")


def export_audience(
    settings: Settings,
    definition: AudienceDefinition,
    out: Path,
    layout: Layout = "google",
    *,
    index: AudienceIndex,
) -> AudienceExportReport:
    """Write an audience's hashed identifiers, its holdout and a report.

    Parameters
    ----------
    settings : Settings
        ``audience_holdout_share``.
    definition : AudienceDefinition
    out : Path
        CSV to (re)write.
    layout : {"google", "meta"}
    index : AudienceIndex
        From :func:`open_audience_index` (or built in a test).

    Returns
    -------
    AudienceExportReport
    """
    t0 = time.perf_counter()
    sel = select_members(index, definition, settings.audience_holdout_share)
    body = b"".join(csv_lines(index, sel.rows, layout)).decode()
    score = np.asarray(index.scores.score_array(definition.score))
    holdout = pd.DataFrame(
        {
            c.CUSTOMER_ID: [b.decode("utf-8") for b in index.scores.ids[sel.holdout_rows].tolist()],
            "audience": definition.name,
            "score": score[sel.holdout_rows],
        }
    )
    report = AudienceExportReport(
        audience=definition.name,
        score=definition.score,
        layout=layout,
        threshold=sel.threshold,
        holdout_share=settings.audience_holdout_share,
        counts=sel.counts,
        out=str(out),
        holdout_file=str(holdout_path(out)),
        exported_at=datetime.now(UTC).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - t0, 3),
    )
    atomic_write_text(holdout_path(out), holdout.to_csv(index=False))
    atomic_write_text(report_path(out), json.dumps(asdict(report), indent=2) + "\n")
    atomic_write_text(out, body)
    log.info("audience %s: %s", definition.name, sel.counts)
    return report


def open_audience_index(settings: Settings) -> AudienceIndex:
    """Build the index from the latest batch scores and the shop's customer table.

    Raises
    ------
    NotTrainedError
        No scores file yet.
    DataContractError
        The customer table breaks the data contract.
    """
    from features.shop import open_shop
    from serving.api.scores import ScoreIndex, latest_scores_file

    scores = ScoreIndex.open(latest_scores_file(settings), settings.home / "cache")
    shop = open_shop(settings.resolved_data_dir, lenient=settings.lenient, threads=settings.threads)
    cols = [
        col
        for col in (c.CUSTOMER_ID, c.CONSENT_EMAIL, c.CONSENT_ADS, c.EMAIL, c.PHONE)
        if col in shop.customers.columns
    ]
    customers = shop.customers.select(cols).to_pandas()
    return AudienceIndex(customers, scores, settings.phone_default_region)


__all__ = [
    "LAYOUT_HEADERS",
    "AudienceExportReport",
    "AudienceSelection",
    "Layout",
    "csv_lines",
    "export_audience",
    "id_csv_lines",
    "holdout_path",
    "open_audience_index",
    "report_path",
    "select_members",
]
