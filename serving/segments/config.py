"""Segment definitions: a YAML file validated on load (pydantic + the rule language).

Each segment has a ``rule`` (:mod:`serving.segments.expressions`) over the names of
:func:`serving.segments.schema.default_schema` and, optionally, a score threshold
(``score`` with ``min_score`` or ``keep_expected_conversions``: the threshold keeping that
share of the expected conversions -- the sum of calibrated scores -- of everyone scored).
The packaged default is ``serving/segments/segments.yaml``; ``KLANTBEELD_SEGMENTS_FILE``
points at another file.

Every problem of the file is reported at once, one line each, naming the segment and its
rule: syntax errors with their position, unknown names (with close matches), bad
operators and type mismatches.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from klantbeeld.settings import Settings
from serving.segments.expressions import Kind, Node, RuleError, check_types, parse_rule
from serving.segments.schema import SCORES, default_schema
from serving.targeting.threshold import expected_conversions_threshold
from serving.yaml_config import raise_problems, read_yaml, validate_named

DEFAULT_SEGMENTS = "segments/segments.yaml"


class Segment(BaseModel):
    """One segment: customers matching ``rule`` (and ``score >= threshold`` when given).

    Attributes
    ----------
    name, description : str
    rule : str
        Rule over scores, features and attributes.
    score : str or None
        Model whose score must also reach a threshold.
    min_score : float or None
        Fixed threshold (probability).
    keep_expected_conversions : float or None
        Threshold keeping this share of ``sum(score)`` over everyone scored, in (0, 1].
    tree : Node
        The parsed rule (set on validation).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    rule: str = Field(min_length=1)
    score: str | None = None
    min_score: float | None = Field(None, ge=0.0, le=1.0)
    keep_expected_conversions: float | None = Field(None, gt=0.0, le=1.0)
    _tree: Node | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _threshold_fields(self) -> Segment:
        given = (self.min_score is not None) + (self.keep_expected_conversions is not None)
        if self.score is not None and given != 1:
            raise ValueError(
                "'score' needs exactly one of 'min_score', 'keep_expected_conversions'"
            )
        if self.score is None and given:
            raise ValueError("'min_score' / 'keep_expected_conversions' need a 'score'")
        if self.score is not None and self.score not in SCORES:
            raise ValueError(f"'score' must be one of {', '.join(SCORES)}, got {self.score!r}")
        return self

    @property
    def tree(self) -> Node:
        """The parsed rule."""
        if self._tree is None:
            object.__setattr__(self, "_tree", parse_rule(self.rule))
        assert self._tree is not None
        return self._tree

    def threshold(self, scores: np.ndarray) -> float | None:
        """The score threshold over everyone scored (NaN = not scored); None without one.

        Parameters
        ----------
        scores : ndarray of float
            Calibrated probabilities of ``score``.

        Returns
        -------
        float or None
            ``min_score``, or :func:`~serving.targeting.threshold.
            expected_conversions_threshold` at ``keep_expected_conversions``; None when
            the segment has no score threshold.
        """
        if self.score is None:
            return None
        if self.keep_expected_conversions is None:
            return float(self.min_score or 0.0)
        return expected_conversions_threshold(scores, self.keep_expected_conversions)


def parse_segments(
    data: Any, source: str, schema: Mapping[str, Kind] | None = None
) -> dict[str, Segment]:
    """Validate parsed YAML ``{"segments": {name: fields}}`` and every rule.

    Parameters
    ----------
    data : object
        The parsed YAML.
    source : str
        File name used in messages.
    schema : mapping of str to kind, optional
        Known names; default :func:`serving.segments.schema.default_schema`.

    Returns
    -------
    dict of str to Segment

    Raises
    ------
    ConfigError
        ``invalid segments config <source> (N problem(s))`` and one line per problem:
        ``<source>: segment '<name>', rule '<rule>': <problem>`` or
        ``<source>: segment '<name>', field '<f>': <message>``.
    """
    segments, problems = validate_named(data, "segments", "segment", Segment, source)
    known = default_schema() if schema is None else schema
    out: dict[str, Segment] = {}
    for name, seg in segments.items():
        try:
            found = check_types(seg.tree, known)
        except RuleError as exc:
            found = [str(exc)]
        problems.extend(f"{source}: segment {name!r}, rule {seg.rule!r}: {p}" for p in found)
        if not found:
            out[name] = seg
    raise_problems(problems, "segments", source)
    return out


def load_segments(path: str | Path | None = None) -> dict[str, Segment]:
    """Read and validate a segments YAML file (default: the packaged one).

    Raises
    ------
    ConfigError
        Missing file, invalid YAML (with line and column) or any problem of
        :func:`parse_segments`.
    """
    data, source = read_yaml(path, DEFAULT_SEGMENTS, "segments")
    return parse_segments(data, source)


def get_segments(settings: Settings) -> dict[str, Segment]:
    """The segments of ``settings.segments_file`` (or the packaged defaults)."""
    return load_segments(settings.segments_file)


__all__ = ["DEFAULT_SEGMENTS", "Segment", "get_segments", "load_segments", "parse_segments"]
