"""Locate the contract tables in an input folder or DuckDB file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb

from features import contract as c
from klantbeeld.errors import Violation

DUCKDB_SUFFIXES = (".duckdb", ".db", ".ddb")


@dataclass(frozen=True)
class TableSource:
    """Where one contract table is stored.

    Attributes
    ----------
    name : str
        Contract table name.
    kind : {"parquet", "csv", "duckdb"}
        Storage format.
    path : Path
        The file, the folder of parts, or the DuckDB database file.
    files : tuple[Path, ...]
        Data files to read (empty for a DuckDB table).
    """

    name: str
    kind: Literal["parquet", "csv", "duckdb"]
    path: Path
    files: tuple[Path, ...] = ()


def find_sources(path: Path) -> tuple[dict[str, TableSource], list[Violation]]:
    """Find each contract table in ``path``.

    Parameters
    ----------
    path : Path
        A folder of ``<table>.parquet`` / ``<table>.csv`` / ``<table>/*.parquet``, or a
        DuckDB file (suffix ``.duckdb``, ``.db`` or ``.ddb``).

    Returns
    -------
    sources : dict[str, TableSource]
        The tables found, by name.
    missing : list[Violation]
        One ``missing_table`` violation per required table not found (or one
        ``missing_source`` when ``path`` itself does not exist).
    """
    if not path.exists():
        return {}, [
            Violation(
                "(source)",
                None,
                "missing_source",
                f"{path} does not exist; expected a folder of Parquet/CSV files or a DuckDB file",
            )
        ]
    if path.is_file():
        if path.suffix.lower() not in DUCKDB_SUFFIXES:
            return {}, [
                Violation(
                    "(source)",
                    None,
                    "bad_source",
                    f"{path} is a file but not a DuckDB database (expected suffix "
                    f"{', '.join(DUCKDB_SUFFIXES)}) — pass the folder that holds the tables",
                )
            ]
        return _duckdb_sources(path)
    return _folder_sources(path)


def _folder_sources(folder: Path) -> tuple[dict[str, TableSource], list[Violation]]:
    found: dict[str, TableSource] = {}
    missing: list[Violation] = []
    for name in c.TABLES:
        parquet = folder / f"{name}.parquet"
        csv = folder / f"{name}.csv"
        parts = folder / name
        if parquet.is_file():
            found[name] = TableSource(name, "parquet", parquet, (parquet,))
        elif parts.is_dir() and (files := tuple(sorted(parts.glob("*.parquet")))):
            found[name] = TableSource(name, "parquet", parts, files)
        elif csv.is_file():
            found[name] = TableSource(name, "csv", csv, (csv,))
        elif c.TABLE_SPECS[name].required:
            missing.append(
                Violation(
                    name,
                    None,
                    "missing_table",
                    f"table not found in {folder}: expected {name}.parquet, {name}.csv "
                    f"or a folder {name}/ of Parquet files",
                )
            )
    return found, missing


def _duckdb_sources(db: Path) -> tuple[dict[str, TableSource], list[Violation]]:
    try:
        with duckdb.connect(str(db), read_only=True) as con:
            names = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
    except duckdb.Error as exc:
        return {}, [Violation("(source)", None, "bad_source", f"cannot open {db}: {exc}")]
    found = {n: TableSource(n, "duckdb", db) for n in c.TABLES if n in names}
    missing = [
        Violation(n, None, "missing_table", f"table not found in DuckDB file {db}")
        for n in c.REQUIRED_TABLES
        if n not in names
    ]
    return found, missing
