"""Every MLproject entry point calls a `klantbeeld` command that exists, with options it takes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from klantbeeld.cli import app

ENTRY_POINTS = yaml.safe_load((Path(__file__).parents[1] / "MLproject").read_text())["entry_points"]


def _commands():
    for name, ep in ENTRY_POINTS.items():
        for part in ep["command"].split("&&"):
            yield name, shlex.split(part.strip())


@pytest.mark.parametrize(("entry", "argv"), list(_commands()), ids=lambda v: str(v)[:40])
def test_entry_point_commands_and_options_exist(entry, argv):
    assert argv[0] == "klantbeeld", entry
    words = [w for w in argv[1:] if not w.startswith("{")]
    command = [w for w in words if not w.startswith("-")][:2]
    # the command's --help lists every option the entry point passes
    res = CliRunner().invoke(app, [*command[:1], "--help"])
    assert res.exit_code == 0, res.output
    sub = CliRunner().invoke(app, [*command, "--help"])
    text = sub.output if sub.exit_code == 0 else res.output
    for opt in (w for w in words if w.startswith("--")):
        assert re.search(re.escape(opt) + r"\b", text), f"{entry}: {opt} not in {command}"
