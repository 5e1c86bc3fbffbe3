"""cxr/dashboard/plain.py: others' text shown literally inside Markdown."""
from __future__ import annotations

import re

from cxr.dashboard import plain

PAYLOAD = "![x](http://127.0.0.1:9/x.png) **bold** :red[red] $x$ <img src=y> `code` # h"


def unescape(text: str) -> str:
    """What CommonMark shows for backslash escapes (each escaped punctuation character)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


def test_md_escapes_what_starts_markdown_and_shows_the_text_unchanged():
    out = plain.md(PAYLOAD)
    assert "![" not in out and "**" not in out and "](" not in out and ":red[" not in out
    assert "\\<img" in out and "\\$x\\$" in out and "\\`code\\`" in out
    # no character that opens inline Markdown is left unescaped, and the reader sees the text
    assert re.search(r"(?<!\\)[!\[\]()*`$<>#|~]", out.replace("\\\\", "")) is None
    assert unescape(out) == PAYLOAD
    assert plain.md("dr a\n# heading") == "dr a \\# heading"  # one line: no block Markdown
    assert plain.md(12) == "12"


def test_md_leaves_plain_messages_as_they_read():
    for text in ("client_secret missing", "Run failed: RuntimeError: CUDA out of memory",
                 "upload.bin: multi-frame DICOM (2 frames)"[:26], "dr a"):
        assert plain.md(text) == text
    assert plain.md("_x_ and a_b") == "\\_x\\_ and a_b"  # emphasis only at a word's edge
    assert plain.md("- item") == "\\- item" and plain.md("1. x") == "1\\. x"  # no list
    assert plain.md("+ y") == "\\+ y" and plain.md("12) z") == "12\\) z"


def test_code_spans_cannot_be_closed_by_a_backtick_in_the_text():
    assert plain.code("dr a") == "`dr a`"
    span = plain.code("a `b` ``c`` ![x](y)")
    fence = re.match(r"`+", span).group()
    assert len(fence) == 3 and span.endswith(fence)
    assert "```" not in span[len(fence):-len(fence)]
    assert plain.code("`x`") == "`` `x` ``"
