"""cxr.pacs.viewer_link: the Triage page's link to a case's study in the site's viewer."""
from __future__ import annotations

from collections import namedtuple

import pandas as pd
import pytest

from cxr.pacs import viewer_link

CASE = {"study_uid": "1.2.840.1", "series_uid": "1.2.840.1.2", "sop_uid": "1.2.840.1.2.3"}


def test_the_template_gets_the_cases_uids():
    assert (viewer_link("https://v.example.org/viewer?StudyInstanceUIDs={study}", CASE)
            == "https://v.example.org/viewer?StudyInstanceUIDs=1.2.840.1")
    assert (viewer_link("http://pacs/{study}/{series}/{sop}", pd.Series(CASE))
            == "http://pacs/1.2.840.1/1.2.840.1.2/1.2.840.1.2.3")
    row = namedtuple("Row", CASE)(**CASE)
    assert viewer_link("x?s={study}", row) == "x?s=1.2.840.1"


def test_values_are_quoted_so_a_damaged_uid_cannot_change_the_link():
    assert viewer_link("x?s={study}", {"study_uid": "1.2&admin=1"}) == "x?s=1.2%26admin%3D1"


@pytest.mark.parametrize("case", [{}, {"study_uid": None}, {"study_uid": float("nan")},
                                  {"study_uid": " "}])
def test_no_link_for_a_case_without_a_study(case):
    assert viewer_link("x?s={study}", case) is None


def test_no_link_without_a_template_or_a_uid_it_needs():
    assert viewer_link(None, CASE) is None and viewer_link("", CASE) is None
    assert viewer_link("x/{sop}", {"study_uid": "1.2"}) is None


def test_an_unknown_placeholder_is_named():
    with pytest.raises(ValueError, match=r"unknown placeholder\(s\) \{studyuid\}"):
        viewer_link("x?s={studyuid}", CASE)
