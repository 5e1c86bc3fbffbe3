import numpy as np
import pytest

from cxr.labels import FINDINGS, UnknownLabelError, finding_index, format_labels, parse_labels


def test_nih_order_and_count():
    assert len(FINDINGS) == 14
    assert FINDINGS[0] == "Atelectasis" and FINDINGS[3] == "Infiltration"
    assert FINDINGS[-2:] == ("Pleural_Thickening", "Hernia")


def test_parse_multi_label_and_no_finding():
    vec = parse_labels("Effusion|Mass")
    assert vec.dtype == np.uint8 and vec.sum() == 2
    assert vec[FINDINGS.index("Effusion")] == 1 and vec[FINDINGS.index("Mass")] == 1
    assert parse_labels("No Finding").sum() == 0


def test_round_trip_format():
    for text in ["No Finding", "Atelectasis|Hernia", "Pleural_Thickening"]:
        assert format_labels(parse_labels(text)) == text


def test_unknown_label_names_row_and_string():
    with pytest.raises(UnknownLabelError, match=r"row 7.*'Pneumonitis'"):
        parse_labels("Effusion|Pneumonitis", where="row 7")


def test_bbox_spelling_alias():
    assert finding_index("Infiltrate") == finding_index("Infiltration") == 3
