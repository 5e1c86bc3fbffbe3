"""The 14 ChestX-ray14 findings, in NIH order, and the label-string parser.

"No Finding" is the all-zero vector; any other string is an error that names it.
"""
from __future__ import annotations

import numpy as np

FINDINGS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
)
NUM_CLASSES = len(FINDINGS)
NO_FINDING = "No Finding"
# The bbox list spells Infiltration this way; nothing else does.
ALIASES = {"Infiltrate": "Infiltration"}
_INDEX = {name: i for i, name in enumerate(FINDINGS)}


class UnknownLabelError(ValueError):
    """A label string that is neither one of the 14 findings nor 'No Finding'."""


def finding_index(name: str) -> int:
    """Index of a finding in NIH order, accepting the bbox list's spelling."""
    name = ALIASES.get(name.strip(), name.strip())
    if name not in _INDEX:
        raise UnknownLabelError(f"unknown finding {name!r}; expected one of {', '.join(FINDINGS)}")
    return _INDEX[name]


def parse_labels(text: str, where: str = "") -> np.ndarray:
    """'Effusion|Mass' -> 14-vector of 0/1 (uint8). `where` names the row in errors."""
    vec = np.zeros(NUM_CLASSES, dtype=np.uint8)
    for part in str(text).split("|"):
        part = part.strip()
        if part == NO_FINDING:
            continue
        try:
            vec[finding_index(part)] = 1
        except UnknownLabelError:
            raise UnknownLabelError(f"{where}: unknown label {part!r} in {text!r}" if where
                                    else f"unknown label {part!r} in {text!r}") from None
    return vec


def format_labels(vec) -> str:
    """Inverse of parse_labels: 14-vector -> 'A|B' or 'No Finding'."""
    names = [FINDINGS[i] for i, v in enumerate(vec) if v]
    return "|".join(names) if names else NO_FINDING
