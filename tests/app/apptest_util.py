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
