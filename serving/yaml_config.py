"""Reading the YAML files that declare named things (segments, audiences, score plans).

Each file is ``{<key>: {name: {field: value}}}``. :func:`read_yaml` reads a packaged
default or a user's file with clear errors (missing file, YAML line and column);
:func:`validate_named` validates every entry with a pydantic model and collects every
problem as ``<file>: <kind> '<name>', field '<f>': <message>``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from klantbeeld.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | Path | None, packaged: str, what: str) -> tuple[Any, str]:
    """Parse a YAML file, or the packaged default when ``path`` is None.

    Parameters
    ----------
    path : str, Path or None
        The user's file.
    packaged : str
        Default, relative to the ``serving`` package (``"segments/segments.yaml"``).
    what : str
        Used in messages (``"segments"``).

    Returns
    -------
    (object, str)
        The parsed YAML and its source name for messages.

    Raises
    ------
    ConfigError
        Missing file, or invalid YAML with line and column.
    """
    if path is None:
        ref = resources.files("serving").joinpath(packaged)
        text, source = ref.read_text(encoding="utf-8"), str(ref)
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{what} file {p} does not exist")
        text, source = p.read_text(encoding="utf-8"), str(p)
    try:
        return yaml.safe_load(text), source
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {exc}") from None


def validate_named(
    data: Any, key: str, kind: str, model: type[M], source: str
) -> tuple[dict[str, M], list[str]]:
    """Validate ``{key: {name: fields}}``: one ``model`` per name (``name`` filled in).

    Parameters
    ----------
    data : object
        Parsed YAML.
    key : str
        The single top-level key (``"segments"``).
    kind : str
        Singular used in messages (``"segment"``).
    model : pydantic model class
        With a ``name`` field.
    source : str
        File name for messages.

    Returns
    -------
    (dict of str to model, list of str)
        The valid entries and one message per problem of the others.

    Raises
    ------
    ConfigError
        The top level is not a mapping with the single key ``key`` of a non-empty mapping.
    """
    if not isinstance(data, dict) or set(data) != {key}:
        raise ConfigError(f"{source}: expected a mapping with the single top-level key {key!r}")
    raw = data[key]
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{source}: {key!r} must be a non-empty mapping of name -> fields")
    problems: list[str] = []
    out: dict[str, M] = {}
    for name, fields in raw.items():
        if not isinstance(fields, dict):
            problems.append(f"{source}: {kind} {name!r}: expected a mapping of fields")
            continue
        try:
            out[str(name)] = model.model_validate({**fields, "name": str(name)})
        except ValidationError as exc:
            for e in exc.errors():
                loc = ".".join(str(p) for p in e["loc"]) or f"<{kind}>"
                problems.append(f"{source}: {kind} {name!r}, field {loc!r}: {e['msg']}")
    return out, problems


def raise_problems(problems: list[str], what: str, source: str) -> None:
    """Raise one :class:`ConfigError` listing ``problems`` (nothing when empty)."""
    if problems:
        raise ConfigError(
            f"invalid {what} config {source} ({len(problems)} problem(s)):\n  - "
            + "\n  - ".join(problems)
        )


__all__ = ["raise_problems", "read_yaml", "validate_named"]
