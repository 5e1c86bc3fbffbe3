"""Audit: one model's queue against its reviewers at this site (cxr/audit.py): per-finding
rates with CIs, does uncertainty predict disagreement, reviewer throughput. For signed-in
reviewers (local mode counts). Logic: cxr/dashboard/audit.py."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import streamlit as st

import app_ui
from cxr.dashboard import audit, orders, plain, triage
from cxr.dashboard.runs import list_runs
from cxr.readout import ReadoutError
from cxr.worklist import SchemaMismatch, Worklist, WorklistUnavailable, mask

who = app_ui.viewer()  # signed in (or local mode), else only the sign-in screen
r = app_ui.roots()
st.title("Audit")
st.warning("Research use only, not for diagnosis. " + audit.LIMITS, icon=":material/info:")


@st.cache_data(max_entries=8, show_spinner="Auditing the decided cases…")
def report_for(db: str, checkpoint_hash: str, checkpoint: str | None, n_decisions: int):
    # n_decisions: a new decision on the queue makes a new report
    return audit.queue_audit(Worklist(db, create=False), checkpoint_hash,
                             Path(checkpoint) if checkpoint else None)


def page() -> None:
    try:
        wl = Worklist(r.worklist, create=False)  # reading writes nothing
    except FileNotFoundError:
        st.info(f"No worklist at {plain.code(mask(r.worklist))} yet: the audit needs reviewed "
                "cases.")
        st.stop()
    runs = list_runs(r.runs)
    choice = app_ui.pick_queue(wl, runs, key="a_queue").checkpoint_hash
    ckpt = triage.checkpoint_for(choice, runs)
    if ckpt is not None:
        try:
            st.caption(plain.md(orders.readout_in_force(app_ui.readout_for(ckpt)[0])))
        except ReadoutError as exc:
            st.error(f"Cannot use this checkpoint's readout: {plain.md(exc)}")
    n_decisions = int(wl.cases(checkpoint_hash=choice)["n_decisions"].sum())
    report = report_for(str(r.worklist), choice, str(ckpt) if ckpt else None, n_decisions)
    if report is None:
        st.info("No case of this queue is decided yet: record decisions on the Triage page.")
        st.stop()
    note = audit.simulated_note(report)
    if note:
        st.error(note, icon=":material/smart_toy:")
    st.caption(plain.md(audit.caption(report)))
    st.markdown(audit.headline(report))
    st.subheader("Per finding, against the reviewers (95% bootstrap CI)")
    st.caption(f"Operating point in force: {', '.join(report['operating_point']) or 'none'}; "
               f"left out: {report['left_out']}. Validation prevalence from "
               f"{report['validation_prevalence_from'] or 'n/a (run not found)'}.")
    st.dataframe(audit.finding_frame(report), hide_index=True, width="stretch")
    st.subheader("Does uncertainty predict disagreement?")
    figs = audit.figures(report)
    c1, c2 = st.columns(2)
    for col, key in ((c1, "uncertainty"), (c2, "ood")):
        with col:
            st.pyplot(figs[f"disagreement_by_{key}.png"])
            st.dataframe(audit.decile_frame(report, key), hide_index=True, key=f"dec_{key}")
    st.pyplot(figs["rates_by_finding.png"])
    for fig in figs.values():
        plt.close(fig)
    st.subheader("Reviewers")
    st.dataframe(audit.reviewer_frame(report), hide_index=True)


try:
    page()
except (WorklistUnavailable, SchemaMismatch, OSError) as exc:  # the server went away, an old
    st.error(plain.md(triage.worklist_problem(exc)), icon=":material/database:")  # schema
