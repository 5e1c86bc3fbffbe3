"""A link to a case's study in the site's PACS viewer, from a configurable URL template.

    >>> viewer_link("https://viewer.example.org/viewer?StudyInstanceUIDs={study}",
    ...             {"study_uid": "1.2.3", "series_uid": "1.2.3.4", "sop_uid": "1.2.3.4.5"})
    'https://viewer.example.org/viewer?StudyInstanceUIDs=1.2.3'

Placeholders: {study}, {series}, {sop} (the case's Study / Series / SOP Instance UIDs, as the
PACS pull stored them in the worklist). None when there is no template or the case has no
Study Instance UID (a case imported from a folder, not from a PACS), or lacks a UID the template
uses. A placeholder other than these three is a ValueError naming it (a mistyped setting).
Examples: OHIF `.../viewer?StudyInstanceUIDs={study}`, Orthanc's Stone viewer
`.../stone-webviewer/index.html?study={study}`, dcm4chee's `.../ohif/viewer/{study}`.
"""
from __future__ import annotations

import math
import string
from urllib.parse import quote

FIELDS = {"study": "study_uid", "series": "series_uid", "sop": "sop_uid"}


def viewer_link(template: str | None, case) -> str | None:
    """`case`: a mapping or a row (dict, pandas Series, namedtuple) with study_uid etc."""
    if not template or not str(template).strip():
        return None
    used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = used - set(FIELDS)
    if unknown:
        raise ValueError(f"viewer URL template {template!r}: unknown placeholder(s) "
                         f"{', '.join('{' + u + '}' for u in sorted(unknown))}; use {{study}}, "
                         "{series} or {sop}")
    values = {}
    for name in used | {"study"}:
        value = _get(case, FIELDS[name])
        if value is None or pd_isna(value) or not str(value).strip():
            return None
        values[name] = quote(str(value).strip(), safe="")
    return template.format(**values)


def pd_isna(value) -> bool:
    """NaN (a pandas row's missing value) without importing pandas."""
    return isinstance(value, float) and math.isnan(value)


def _get(case, key: str):
    if hasattr(case, "get"):
        return case.get(key)
    return getattr(case, key, None)
