"""Text cells made safe for spreadsheets (CSV injection): a cell that begins with `=`, `+`, `-`,
`@` (also after white space), a tab, a carriage return or a line feed is run as a formula by
Excel, LibreOffice and Sheets; prefixing it with `'` makes it text.
Numbers are left as they are (a negative number is not a formula).

    >>> csv_safe(pd.DataFrame({"note": ["=HYPERLINK(...)", "ok"], "p": [-0.5, 1]}))
"""
from __future__ import annotations

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
# after leading white space too: LibreOffice's import (with "trim spaces") and some spreadsheets
# drop it and then run the formula
FORMULA_SIGNS = ("=", "+", "-", "@")


def safe_cell(value):
    """`'` + value when value is a string a spreadsheet would run; anything else unchanged."""
    if isinstance(value, str) and (value.startswith(FORMULA_STARTS)
                                   or value.lstrip().startswith(FORMULA_SIGNS)):
        return "'" + value
    return value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with every text cell passed through safe_cell."""
    out = frame.copy()
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]) and \
                not pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].map(safe_cell, na_action="ignore")
    return out
