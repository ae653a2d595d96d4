"""The Spark tests' skip marker: no Java runtime, no Spark (the session fixture,
``spark``, is in ``conftest.py``)."""

from __future__ import annotations

import shutil

import pytest

requires_java = pytest.mark.skipif(
    shutil.which("java") is None,
    reason="no Java runtime on PATH: Spark needs one (apt-get install default-jre-headless)",
)
