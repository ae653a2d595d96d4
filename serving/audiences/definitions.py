"""Audience definitions: which score, which threshold; read from YAML and validated.

An audience is ``score >= threshold`` on one model's batch scores. The threshold is either
given (``min_score``) or chosen to keep a share of the *expected* conversions
(``keep_expected_conversions``): scores are calibrated probabilities, so the expected
conversions of a group are the sum of its scores, and the threshold is the lowest score
of the smallest top-ranked group whose sum reaches that share of the total.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from klantbeeld.errors import ConfigError
from klantbeeld.settings import Settings
from serving.yaml_config import raise_problems, read_yaml, validate_named

log = logging.getLogger(__name__)

DEFAULT_AUDIENCES = "audiences/audiences.yaml"


class AudienceDefinition(BaseModel):
    """One audience: ``score >= threshold`` (ads consent and data quality always apply).

    Attributes
    ----------
    name : str
    description : str
    score : str
        Model whose batch score ranks customers (``conversion_intent``, ``churn``).
    min_score : float or None
        Fixed threshold (probability).
    keep_expected_conversions : float or None
        Share of expected conversions (sum of scores) the audience must keep, in (0, 1].
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    score: str = Field(min_length=1)
    min_score: float | None = Field(None, ge=0.0, le=1.0)
    keep_expected_conversions: float | None = Field(None, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _one_threshold(self) -> AudienceDefinition:
        if (self.min_score is None) == (self.keep_expected_conversions is None):
            raise ValueError("give exactly one of 'min_score' and 'keep_expected_conversions'")
        return self

    def threshold(self, scores: np.ndarray) -> float:
        """The score threshold for these scores (NaN = not scored, ignored).

        Parameters
        ----------
        scores : ndarray of float
            Calibrated probabilities of every scored customer.

        Returns
        -------
        float
            ``min_score``, or the threshold keeping ``keep_expected_conversions`` of
            ``sum(scores)``; 1.0 above every score when nobody is scored.
        """
        if self.keep_expected_conversions is None:
            return float(self.min_score or 0.0)
        s = np.sort(scores[np.isfinite(scores)])[::-1]
        if len(s) == 0 or s.sum() <= 0:
            return 1.0
        cum = np.cumsum(s)
        k = int(np.searchsorted(cum, self.keep_expected_conversions * cum[-1] - 1e-12))
        return float(s[min(k, len(s) - 1)])


def parse_audiences(data: Any, source: str) -> dict[str, AudienceDefinition]:
    """Validate the parsed YAML (``{"audiences": {name: fields}}``).

    Raises
    ------
    ConfigError
        Listing every problem as ``<file>: audience '<name>', field '<f>': <message>``.
    """
    out, problems = validate_named(data, "audiences", "audience", AudienceDefinition, source)
    raise_problems(problems, "audiences", source)
    return out


def load_audiences(path: str | Path | None = None) -> dict[str, AudienceDefinition]:
    """Read and validate an audiences YAML file (default: the packaged one).

    Raises
    ------
    ConfigError
        Missing file, invalid YAML (with line and column) or a schema problem.
    """
    data, source = read_yaml(path, DEFAULT_AUDIENCES, "audiences")
    return parse_audiences(data, source)


def get_audience(settings: Settings, name: str) -> AudienceDefinition:
    """The audience ``name`` from ``settings.audiences_file`` (or the packaged defaults).

    Raises
    ------
    ConfigError
        Unknown name (the message lists the known ones) or an invalid file.
    """
    audiences = load_audiences(settings.audiences_file)
    if name not in audiences:
        raise ConfigError(f"unknown audience {name!r}; defined: {', '.join(sorted(audiences))}")
    return audiences[name]


__all__ = ["AudienceDefinition", "get_audience", "load_audiences", "parse_audiences"]
