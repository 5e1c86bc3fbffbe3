"""ARCHITECTURE.md stays true: every module of `cxr/` is named in its module tree, under its own
package (Alembic's migration scripts by their folder), and every run file the trainer writes
(cxr.rundir.RUN_FILES) is named in it."""
from __future__ import annotations

import re
from pathlib import Path

from cxr.rundir import RUN_FILES

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "ARCHITECTURE.md").read_text()


def tree_entries() -> dict[str, str]:
    """The module tree's top-level entries under `cxr/` ("labels.py", "data/", ...) -> their
    text, nested lines and continuation lines included."""
    block = re.search(r"```\ncxr/\n(.*?)```", DOC, re.S)
    assert block, "ARCHITECTURE.md has no module tree (a ``` block starting with cxr/)"
    entries, current = {}, None
    for line in block.group(1).splitlines():
        top = re.match(r"  (\S+)", line)  # exactly two spaces: a module or package of cxr/
        if top and not line.startswith("   "):
            current = top.group(1)
            entries[current] = ""
        elif re.match(r"\S", line):  # app.py, pages/, ...: outside cxr/
            current = None
        if current is not None:
            entries[current] += line + "\n"
    return entries


def test_every_module_of_cxr_is_named_in_the_module_tree():
    entries = tree_entries()
    missing = []
    for path in sorted((REPO / "cxr").rglob("*.py")):
        rel = path.relative_to(REPO / "cxr")
        if path.name == "__init__.py":
            continue
        if len(rel.parts) == 1:
            named = rel.name in entries or (rel.name == "__main__.py" and "cxr/__main__.py" in DOC)
        elif "migrations" in rel.parts:  # Alembic's env.py and version scripts: the folder
            named = "migrations" in entries.get(f"{rel.parts[0]}/", "")
        else:
            named = re.search(rf"\b{re.escape(rel.name)}\b", entries.get(f"{rel.parts[0]}/", ""))
        if not named:
            missing.append(f"cxr/{rel.as_posix()}")
    assert not missing, ("ARCHITECTURE.md's module tree does not name these modules (one line "
                         "each, under their package): " + ", ".join(missing))


def test_every_run_file_is_named():
    missing = [name for name in RUN_FILES if f"`{name}`" not in DOC]
    assert not missing, "ARCHITECTURE.md does not name these run files (RUN_FILES): " + \
        ", ".join(missing)
