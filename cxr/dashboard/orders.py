"""The Triage page's queue order (cxr/triage_order.py): the choice list, its captions, and the
ordered queue with each case's reason.

    order = st.selectbox("Queue order", list(ORDER_LABELS), format_func=ORDER_LABELS.get)
    table, problem = ordered_queue(cases, order, readout)     # problem: a message, or None
    st.caption(order_caption(order, readout))
    st.caption(readout_in_force(readout))

On the page the Sort by box applies with the `uncertain` order only (its default sort is that
order; page_queue keeps the query's rows then); `urgent` and `likely-negative` have an order of
their own, and the box is disabled while one of them is chosen.
The likely-negative list is never called "normal": its caption states the validation
sensitivity of the high-sensitivity operating point it is drawn at.
"""
from __future__ import annotations

import pandas as pd

from cxr.evaluation.recalibrate import in_force
from cxr.triage_order import DEFAULT_URGENT, order_cases, sensitivity_sentence

ORDER_LABELS = {
    "urgent": "Urgent first",
    "uncertain": "Most uncertain first",
    "likely-negative": "Likely negative (a list to check quickly)",
}
DEFAULT_ORDER = "urgent"


def order_caption(order: str, readout=None, urgent=DEFAULT_URGENT) -> str:
    """What the chosen order does, in a sentence or two."""
    if order == "urgent":
        return (f"Urgent first: positive calls for {', '.join(urgent)} first, then out-of-"
                "distribution and uncertain cases, then other positive calls, then the rest; "
                "each group by its own score (ties: earlier case first). The reason column "
                "says why each case is where it is.")
    if order == "uncertain":
        return ("Most uncertain first: by each case's image uncertainty score under its rule "
                "(the report's order; ties: earlier case first).")
    return ("Likely negative: no positive call at the high-sensitivity operating point, in "
            "distribution and not uncertain; clearest first. " + sensitivity_sentence(readout)
            + " These films still need a reviewer's look: the list is not a statement that "
            "a film has no finding. Research use only, not for diagnosis.")


def sensitivity_table(readout) -> pd.DataFrame:
    """Per finding the high-sensitivity threshold (calibrated scale) and its validation
    sensitivity and specificity."""
    rows = [{"finding": f, "threshold": p.get("threshold"),
             "validation sensitivity": p.get("val_sensitivity"),
             "validation specificity": p.get("val_specificity")}
            for f, p in ((f, readout.points["sensitivity"][f]) for f in readout.labels)]
    return pd.DataFrame(rows)


def ordered_queue(cases: pd.DataFrame, order: str, readout=None,
                  urgent=DEFAULT_URGENT) -> tuple[pd.DataFrame, str | None]:
    """(cases in `order` with group and reason, None) or (an empty frame, why not)."""
    thresholds = None
    if order == "likely-negative" and readout is not None:
        thresholds = readout.thresholds("sensitivity")
    try:
        return order_cases(cases, order, urgent=urgent, sensitivity_thresholds=thresholds), None
    except ValueError as exc:
        return cases.iloc[0:0].assign(reason=[]), str(exc)


def page_queue(cases: pd.DataFrame, order: str, readout=None,
               urgent=DEFAULT_URGENT) -> tuple[pd.DataFrame, str | None]:
    """The Triage page's queue: ordered_queue, except that with `uncertain` the rows keep the
    order of `cases` (the query's, by the page's Sort by box, whose default is this order),
    each with its reason."""
    table, problem = ordered_queue(cases, order, readout, urgent)
    if order != "uncertain" or problem is not None:
        return table, problem
    reasons = dict(zip(table["id"], table["reason"]))
    return cases.reset_index(drop=True).assign(reason=[reasons[i] for i in cases["id"]]), None


def sort_caption(order: str, sort: str, ascending: bool, default_sort: str, readout=None,
                 urgent=DEFAULT_URGENT) -> str:
    """order_caption, or what the Sort by box did instead (the `uncertain` order only)."""
    if order == "uncertain" and (sort != default_sort or ascending):
        return (f"Sorted by {sort}, {'lowest' if ascending else 'highest'} first (the Sort by "
                "box; its default is the most uncertain first). The reason column gives each "
                "case's uncertainty.")
    return order_caption(order, readout, urgent)


def readout_in_force(readout) -> str:
    """Which readout the page uses: the validation fit, or refitted on reviewed cases."""
    return in_force(readout)
