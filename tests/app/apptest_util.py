"""Small helpers for reading an AppTest tree in the dashboard tests."""
from __future__ import annotations


def page_text(at) -> str:
    """Every element's protobuf as text: what the browser would receive (for 'never shown')."""
    parts = []

    def walk(node):
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)
    walk(at._tree)
    return "\n".join(parts)


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def button(at, label: str):
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return matches[0]


# Markdown others could plant in a note or a name (issue 18 item 7): a remote image, bold text
PLANTED = ("![x](http://127.0.0.1:9/x.png)", "**bold**")
# the elements whose text Streamlit renders as Markdown (st.table cells and image captions too)
MARKDOWN_TYPES = {"markdown", "caption", "title", "header", "subheader", "error", "warning",
                  "info", "success", "toast", "table", "image", "progress", "expandable"}


def unrendered(at) -> list[str]:
    """The Markdown-rendering elements that carry a PLANTED string unescaped (outside a code
    span, inside which nothing is rendered)."""
    import re
    found = []

    def walk(node):
        if getattr(node, "type", None) in MARKDOWN_TYPES:
            text = re.sub(r"(`+)(?:(?!\1).)+?\1", "", str(node.proto))
            found.extend(f"{node.type}: {p}" for p in PLANTED if p in text)
        for child in getattr(node, "children", {}).values():
            walk(child)
    walk(at._tree)
    return found
