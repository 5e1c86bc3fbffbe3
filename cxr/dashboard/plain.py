"""Text that others typed or named (reviewer notes and names, image and model names, run names,
file paths, error messages that quote them) shown as plain text inside Markdown: Streamlit
renders Markdown in st.markdown, captions, headings, alerts, st.table cells, image captions and
progress texts, so a note holding `![x](http://host/x.png)` would load that image in every
reviewer's browser, and `**x**`, `:red[x]` or `$x$` would change how a case reads.

    st.caption(f"model {plain.md(case['model'])} · status **{case['status']}**")
    st.markdown(f"Signed in as {plain.code(who.identity)}")

Where a value needs no Markdown around it, prefer st.text, st.code or a dataframe cell, which
never render Markdown.
"""
from __future__ import annotations

import re

# The characters that start Markdown inline syntax, all escaped (an escaped one is always
# literal in CommonMark): links and images ([ ] ( ) !), emphasis (* ~), code (`), HTML (< > &),
# tables (|), headings (#), math ($), Streamlit's directives (:red[..]: the bracket) and the
# backslash itself. An underscore only emphasises at a word's edge (client_secret stays as it
# is), and block syntax (lists, quotes, rules) only at the start of the (single) line.
_ALWAYS = re.compile(r"([\\`*\[\]()!<>&|#~${}])")
_EDGE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_BLOCK_START = re.compile(r"^(\s*\d+|\s*)((?<=\d)[.)]|[-+=])")


def md(text: object) -> str:
    """`text` escaped so that Markdown shows it literally (line breaks become spaces)."""
    flat = " ".join(str(text).splitlines())
    out = _EDGE_UNDERSCORE.sub(r"\\_", _ALWAYS.sub(r"\\\1", flat))
    return _BLOCK_START.sub(lambda m: f"{m.group(1)}\\{m.group(2)}", out)


def code(text: object) -> str:
    """`text` as an inline code span (monospace, nothing inside rendered), fenced with more
    backticks than any run of them in the text, so no backtick in it can close the span."""
    flat = " ".join(str(text).splitlines())
    runs = [len(r) for r in re.findall(r"`+", flat)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat.strip() else ""
    return f"{fence}{pad}{flat}{pad}{fence}"
