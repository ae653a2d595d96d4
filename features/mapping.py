"""Map a source export's own column and event names onto the data contract.

A *mapping* is declared as data (a YAML file, or the same structure as a Python dict)::

    tables:
      customers:
        file: klanten.csv            # relative to the source folder; CSV or Parquet
        columns:                     # contract column: source column
          customer_id: KlantNr
          created_at: AanmaakDatum
        formats:                     # optional: strptime formats of timestamp/date columns
          created_at: "%d-%m-%Y"
      items:
        constants: {item_id: cd, title: CD, category: music}   # no file: one row
      events:
        file: orders.csv
        columns: {customer_id: KlantNr, ts: Datum, event_type: Soort, value: Bedrag}
        constants: {item_id: cd}     # the same value on every row
        event_types: {bestelling: purchase, bekeken: product_view}

Other keys: ``derive: first_event`` for ``customers`` (one row per customer seen in the
events, ``created_at`` = first event) when the export has no customer file.

:func:`load_mapping` checks the mapping itself (unknown tables or contract columns,
required columns neither mapped nor constant) and every error names the mapping line
(``mapping.yaml line 12 (tables.events.columns.tss)``). :func:`import_source` applies it
with DuckDB and writes one Parquet file per contract table into a new folder (atomic);
a source file or column that is not there is reported at the mapping line that names
it. :func:`validate_import` opens the result against the contract and, when it breaks
it, re-states every violation with the source file, source column and mapping line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb

from features import contract as c
from klantbeeld.atomic import atomic_directory
from klantbeeld.errors import ConfigError, DataContractError, Violation

log = logging.getLogger(__name__)

TABLE_KEYS = frozenset({"file", "columns", "constants", "formats", "event_types", "derive"})
DERIVE_FIRST_EVENT = "first_event"


class MappingError(ConfigError):
    """The mapping is malformed or does not fit the source; the message names the line."""


@dataclass(frozen=True)
class TableMapping:
    """How one contract table is made from the source.

    Attributes
    ----------
    table : str
        Contract table name.
    file : str or None
        Source file relative to the source folder (``.csv`` or ``.parquet``); None for a
        table made of ``constants`` alone (one row) or derived.
    columns : dict of str to str
        Contract column -> source column.
    constants : dict of str to str
        Contract column -> the value of every row.
    formats : dict of str to str
        Contract column -> strptime format of its source text (timestamps, dates).
    event_types : dict of str to str
        Source event name -> contract ``event_type`` (names not listed are kept as they are).
    derive : str or None
        ``"first_event"``: customers derived from the events.
    """

    table: str
    file: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    event_types: dict[str, str] = field(default_factory=dict)
    derive: str | None = None


@dataclass(frozen=True)
class ColumnMapping:
    """A parsed and checked mapping: one :class:`TableMapping` per contract table.

    ``lines`` maps a key path (``("tables", "events", "columns", "ts")``) to its line in
    ``origin`` (1-based); empty for a mapping given as a dict.
    """

    tables: dict[str, TableMapping]
    origin: str = "mapping"
    lines: dict[tuple[str, ...], int] = field(default_factory=dict, repr=False)

    def where(self, *path: str) -> str:
        """``"<origin> line N (a.b.c)"`` for the deepest known part of ``path``."""
        dotted = ".".join(path)
        for n in range(len(path), 0, -1):
            line = self.lines.get(tuple(path[:n]))
            if line is not None:
                return f"{self.origin} line {line} ({dotted})"
        return f"{self.origin} ({dotted})"


@dataclass(frozen=True)
class ImportSummary:
    """What :func:`import_source` wrote.

    Attributes
    ----------
    out : Path
        The contract folder.
    rows : dict of str to int
        Rows written per table.
    unmapped_event_types : dict of str to int
        Source event names not in ``event_types`` (kept as they are) and their counts.
    """

    out: Path
    rows: dict[str, int]
    unmapped_event_types: dict[str, int]


# ---------------------------------------------------------------------------- parsing


def _yaml_lines(text: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse YAML and record the line of every mapping key (path -> 1-based line)."""
    import yaml

    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        raise MappingError(f"mapping{at}: not valid YAML: {exc}") from None
    lines: dict[tuple[str, ...], int] = {}

    def walk(n: Any, path: tuple[str, ...]) -> None:
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = (*path, str(k.value))
                lines[key] = k.start_mark.line + 1
                walk(v, key)

    walk(node, ())
    return data, lines


def load_mapping(spec: str | Path | Mapping[str, Any]) -> ColumnMapping:
    """Read and check a mapping from a YAML file or a dict.

    Parameters
    ----------
    spec : str, Path or mapping
        Path of a YAML file, or the parsed structure (``{"tables": {...}}``).

    Returns
    -------
    ColumnMapping

    Raises
    ------
    MappingError
        The file is missing or not YAML, or a key, table or contract column is unknown,
        or a required contract column is neither mapped nor constant; the message names
        the mapping line.
    """
    if isinstance(spec, Mapping):
        data: Any = dict(spec)
        origin, lines = "mapping", dict[tuple[str, ...], int]()
    else:
        path = Path(spec)
        if not path.is_file():
            raise MappingError(f"mapping file {path} does not exist")
        data, lines = _yaml_lines(path.read_text(encoding="utf-8"))
        origin = str(path)
    probe = ColumnMapping({}, origin, lines)
    if not isinstance(data, Mapping) or not isinstance(data.get("tables"), Mapping):
        raise MappingError(f"{probe.where('tables')}: expected a top-level 'tables:' mapping")
    tables: dict[str, TableMapping] = {}
    for name, body in data["tables"].items():
        tables[str(name)] = _table(probe, str(name), body)
    for name in c.REQUIRED_TABLES:
        if name not in tables:
            raise MappingError(
                f"{probe.where('tables')}: no entry for the required table {name!r} "
                f"(required: {', '.join(c.REQUIRED_TABLES)})"
            )
    return ColumnMapping(tables, origin, lines)


def _str_dict(m: ColumnMapping, value: Any, *path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MappingError(f"{m.where(*path)}: expected 'name: value' pairs")
    return {str(k): str(v) for k, v in value.items()}


def _table(m: ColumnMapping, name: str, body: Any) -> TableMapping:
    spec = c.TABLE_SPECS.get(name)
    if spec is None:
        raise MappingError(
            f"{m.where('tables', name)}: {name!r} is not a contract table; "
            f"expected one of {', '.join(c.TABLES)}"
        )
    if not isinstance(body, Mapping):
        raise MappingError(f"{m.where('tables', name)}: expected file/columns/constants keys")
    for key in body:
        if key not in TABLE_KEYS:
            raise MappingError(
                f"{m.where('tables', name, str(key))}: unknown key {key!r}; "
                f"expected one of {', '.join(sorted(TABLE_KEYS))}"
            )
    t = TableMapping(
        table=name,
        file=None if body.get("file") is None else str(body["file"]),
        columns=_str_dict(m, body.get("columns"), "tables", name, "columns"),
        constants=_str_dict(m, body.get("constants"), "tables", name, "constants"),
        formats=_str_dict(m, body.get("formats"), "tables", name, "formats"),
        event_types=_str_dict(m, body.get("event_types"), "tables", name, "event_types"),
        derive=None if body.get("derive") is None else str(body["derive"]),
    )
    extras_allowed = name == c.CUSTOMERS  # "any extra attribute"
    for key in ("columns", "constants", "formats"):
        for col in getattr(t, key):
            if spec.column(col) is None and not extras_allowed:
                raise MappingError(
                    f"{m.where('tables', name, key, col)}: {col!r} is not a column of the "
                    f"{name} table; expected one of {', '.join(x.name for x in spec.columns)}"
                )
    for col in t.formats:
        if col not in t.columns:
            raise MappingError(
                f"{m.where('tables', name, 'formats', col)}: a format for {col!r}, "
                "which is not mapped under columns"
            )
    both = sorted(set(t.columns) & set(t.constants))
    if both:
        raise MappingError(
            f"{m.where('tables', name, 'constants', both[0])}: {both[0]!r} is both mapped "
            "and a constant"
        )
    if t.event_types and name != c.EVENTS:
        raise MappingError(f"{m.where('tables', name, 'event_types')}: only events have types")
    if t.derive is not None and (name != c.CUSTOMERS or t.derive != DERIVE_FIRST_EVENT):
        raise MappingError(
            f"{m.where('tables', name, 'derive')}: only customers can be derived, "
            f"with 'derive: {DERIVE_FIRST_EVENT}'"
        )
    if t.derive is None:
        if t.file is None and t.columns:
            raise MappingError(f"{m.where('tables', name)}: columns are mapped but no file")
        missing = [x for x in spec.required_columns if x not in t.columns and x not in t.constants]
        if missing:
            raise MappingError(
                f"{m.where('tables', name)}: the required column(s) {', '.join(missing)} "
                "are neither mapped under columns nor given under constants"
            )
    return t


# ---------------------------------------------------------------------------- applying


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _relation(con: Any, m: ColumnMapping, t: TableMapping, source: Path) -> str:
    """Register the source file of ``t`` as a view and return its name."""
    if t.file is None:
        raise MappingError(f"{m.where('tables', t.table)}: no file to read")
    path = source / t.file
    if not path.is_file():
        raise MappingError(f"{m.where('tables', t.table, 'file')}: source file {path} not found")
    if path.suffix.lower() == ".parquet":
        reader = f"read_parquet({_lit(str(path))})"
    elif path.suffix.lower() in (".csv", ".txt", ".tsv"):
        reader = f"read_csv({_lit(str(path))}, all_varchar = true, header = true)"
    else:
        raise MappingError(
            f"{m.where('tables', t.table, 'file')}: {path.name}: expected .csv or .parquet"
        )
    view = f"src_{t.table}"
    con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {reader}")
    have = [r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()]
    for col, src in t.columns.items():
        if src not in have:
            raise MappingError(
                f"{m.where('tables', t.table, 'columns', col)}: source column {src!r} is not "
                f"in {t.file}; its columns are {', '.join(have)}"
            )
    return view


def _select(t: TableMapping) -> str:
    """The SELECT list that renames, reformats, recodes and adds constants."""
    parts = []
    for col, src in t.columns.items():
        expr = f"CAST({_q(src)} AS VARCHAR)" if col in t.formats else _q(src)
        if col in t.formats:
            fmt = _lit(t.formats[col])
            # an unparseable value stays as its text, so validation counts and shows it
            expr = f"coalesce(strftime(try_strptime({expr}, {fmt}), '%Y-%m-%d %H:%M:%S'), {expr})"
        if col == c.EVENT_TYPE and t.event_types:
            cases = " ".join(f"WHEN {_lit(k)} THEN {_lit(v)}" for k, v in t.event_types.items())
            expr = f"CASE CAST({expr} AS VARCHAR) {cases} ELSE CAST({expr} AS VARCHAR) END"
        parts.append(f"{expr} AS {_q(col)}")
    parts += [f"{_lit(v)} AS {_q(col)}" for col, v in t.constants.items()]
    return ", ".join(parts)


def import_source(
    mapping: ColumnMapping | str | Path | Mapping[str, Any], source: str | Path, out: str | Path
) -> ImportSummary:
    """Apply ``mapping`` to the export in ``source`` and write a contract folder at ``out``.

    Parameters
    ----------
    mapping : ColumnMapping, path of a YAML file, or dict
    source : str or Path
        Folder holding the files the mapping names.
    out : str or Path
        Folder to write ``customers.parquet``, ``items.parquet``, ``events.parquet`` (and
        ``sends.parquet``); replaced atomically, left as it was on failure.

    Returns
    -------
    ImportSummary

    Raises
    ------
    MappingError
        The mapping is malformed, or a file or source column it names is missing (the
        message names the mapping line).
    """
    m = mapping if isinstance(mapping, ColumnMapping) else load_mapping(mapping)
    src = Path(source)
    if not src.is_dir():
        raise MappingError(f"source folder {src} does not exist")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rows: dict[str, int] = {}
    unmapped: dict[str, int] = {}
    order = [n for n in (c.ITEMS, c.EVENTS, c.SENDS, c.CUSTOMERS) if n in m.tables]
    with atomic_directory(Path(out)) as tmp:
        for name in order:
            t = m.tables[name]
            if t.derive == DERIVE_FIRST_EVENT:
                query = (
                    f"SELECT {_q(c.CUSTOMER_ID)}, min(TRY_CAST({_q(c.TS)} AS TIMESTAMP)) AS "
                    f"{_q(c.CREATED_AT)} FROM mapped_events GROUP BY 1"
                )
            elif t.file is None:
                query = f"SELECT {_select(t)}"
            else:
                query = f"SELECT {_select(t)} FROM {_relation(con, m, t, src)}"
            con.execute(f"CREATE OR REPLACE TEMP TABLE mapped_{name} AS {query}")
            (n_rows,) = con.execute(f"SELECT count(*) FROM mapped_{name}").fetchall()[0]
            rows[name] = int(n_rows)
            target = tmp / f"{name}.parquet"
            con.execute(f"COPY mapped_{name} TO {_lit(str(target))} (FORMAT parquet)")
            if name == c.EVENTS and t.event_types and c.EVENT_TYPE in t.columns:
                src_col = _q(t.columns[c.EVENT_TYPE])
                known = ", ".join(_lit(k) for k in t.event_types) or "NULL"
                unmapped = {
                    str(k): int(n)
                    for k, n in con.execute(
                        f"SELECT CAST({src_col} AS VARCHAR), count(*) FROM src_events "
                        f"WHERE CAST({src_col} AS VARCHAR) NOT IN ({known}) "
                        "GROUP BY 1 ORDER BY 2 DESC"
                    ).fetchall()
                }
    if unmapped:
        log.warning("event names kept as they are (not in event_types): %s", unmapped)
    return ImportSummary(Path(out), rows, unmapped)


def _annotate(m: ColumnMapping, v: Violation) -> Violation:
    t = m.tables.get(v.table)
    if t is None or v.column is None:
        return v
    if v.column in t.columns:
        at = m.where("tables", v.table, "columns", v.column)
        fmt = f" read with format {t.formats[v.column]!r}" if v.column in t.formats else ""
        hint = f"source column {t.columns[v.column]!r} of {t.file}{fmt}, {at}"
    elif v.column in t.constants:
        hint = f"constant, {m.where('tables', v.table, 'constants', v.column)}"
    else:
        hint = f"not mapped: add it under {m.where('tables', v.table, 'columns')}"
    return replace(v, message=f"{v.message} [{hint}]")


def validate_import(
    mapping: ColumnMapping | str | Path | Mapping[str, Any],
    out: str | Path,
    *,
    lenient: bool = False,
) -> Any:
    """Open an imported folder against the contract; point every violation at the mapping.

    Parameters
    ----------
    mapping : ColumnMapping, path of a YAML file, or dict
        The mapping ``out`` was imported with.
    out : str or Path
        The folder :func:`import_source` wrote.
    lenient : bool
        As :func:`features.shop.open_shop`.

    Returns
    -------
    features.shop.Shop

    Raises
    ------
    DataContractError
        Every violation, each followed by ``[source column 'X' of F, <mapping> line N
        (tables.T.columns.C)]``.
    """
    from features.shop import open_shop

    m = mapping if isinstance(mapping, ColumnMapping) else load_mapping(mapping)
    try:
        return open_shop(out, lenient=lenient)
    except DataContractError as exc:
        raise DataContractError(
            f"{exc.source} (imported with {m.origin})", [_annotate(m, v) for v in exc.violations]
        ) from None
