"""Typed errors raised by library code.

The CLI (and later the API) maps these to user-facing messages in one place, so a
malformed input never reaches the user as a Python traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class KlantbeeldError(Exception):
    """Base class of every error klantbeeld raises on purpose."""


@dataclass(frozen=True)
class Violation:
    """One broken rule of the data contract.

    Attributes
    ----------
    table : str
        Table name (``customers``, ``items``, ``events``, ``sends``).
    column : str | None
        Column concerned, ``None`` for table-level problems (missing or empty table).
    rule : str
        Short machine-readable rule id, e.g. ``missing_column`` or ``future_timestamp``.
    message : str
        What was expected, in words.
    n_rows : int
        Number of rows that break the rule (0 for table/column-level problems).
    examples : tuple[str, ...]
        Up to five offending values, rendered as strings.
    row_level : bool
        True when the offending rows can be skipped in lenient mode.
    """

    table: str
    column: str | None
    rule: str
    message: str
    n_rows: int = 0
    examples: tuple[str, ...] = field(default_factory=tuple)
    row_level: bool = False

    def render(self) -> str:
        """Return a one-line description naming table, column, row count and examples."""
        where = self.table if self.column is None else f"{self.table}.{self.column}"
        text = f"{where}: {self.message}"
        if self.n_rows:
            text += f" ({self.n_rows:,} row{'s' if self.n_rows != 1 else ''})"
        if self.examples:
            text += "; examples: " + ", ".join(self.examples)
        return text


class DataContractError(KlantbeeldError):
    """The input data break the data contract; ``violations`` lists every problem."""

    def __init__(self, source: str, violations: list[Violation]):
        self.source = source
        self.violations = list(violations)
        lines = [f"data in {source} break the data contract ({len(violations)} problem(s)):"]
        lines += [f"  - {v.render()}" for v in violations]
        super().__init__("\n".join(lines))


class ConfigError(KlantbeeldError, ValueError):
    """A setting, argument or config file has a value klantbeeld cannot use."""


class NotTrainedError(KlantbeeldError):
    """A model or artifact was asked for before it was trained or registered."""
