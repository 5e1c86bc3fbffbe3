"""Shared by the benchmarks: replace one section of BENCHMARKS.md, leaving the others as they are.

`text` starts with the section's own '## ' heading; the section runs to the next '## ' heading.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cxr.atomic import write_text  # noqa: E402

BENCHMARKS = REPO / "BENCHMARKS.md"


def write_section(text: str, path: Path = BENCHMARKS) -> None:
    heading = text.splitlines()[0]
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    start = old.find(heading + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    else:
        end = old.find("\n## ", start + len(heading))
        rest = "" if end < 0 else "\n" + old[end + 1:]
        new = old[:start] + text.rstrip("\n") + "\n" + rest
    write_text(path, new)
