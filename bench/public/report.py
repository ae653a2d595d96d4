"""Generated sections of docs/benchmarks.md: the provenance line and the splice."""

from __future__ import annotations

import platform
from datetime import datetime
from pathlib import Path

from klantbeeld.atomic import atomic_write_text


def generated_line(command: str) -> str:
    """``Generated <now> by `command` on <machine>.`` for the top of a generated section."""
    machine = f"{platform.node()}, {platform.machine()}, Python {platform.python_version()}"
    return f"Generated {datetime.now():%Y-%m-%d %H:%M} by `{command}` on {machine}."


def splice(path: Path, text: str, begin: str, end: str) -> None:
    """Replace the part of ``path`` from marker ``begin`` to ``end`` by ``text`` (which
    holds both markers), or append ``text`` when the markers are absent; atomic write."""
    doc = Path(path).read_text()
    head, _, rest = doc.partition(begin)
    _, _, tail = rest.partition(end)
    atomic_write_text(Path(path), head + text + tail if rest else doc + "\n" + text + "\n")
