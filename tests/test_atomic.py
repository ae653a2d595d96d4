"""atomic_directory: the folder appears whole or not at all; a failure keeps the old one."""

from __future__ import annotations

from pathlib import Path

import pytest

from klantbeeld.atomic import atomic_directory


def test_writes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "model"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with atomic_directory(target) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]  # no leftovers


def test_failure_keeps_previous_folder(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("good")
    with pytest.raises(RuntimeError, match="boom"), atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("boom")
    assert (target / "a.txt").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
