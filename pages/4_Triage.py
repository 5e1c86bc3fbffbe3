"""Triage: the review worklist (cxr/worklist.py, SQLite), one model's queue at a time (the best
fusion run's by default), most uncertain cases first; filter by finding, call, OOD flag, status
and uncertainty; select a case to see its film, Grad-CAM, probabilities and calls, then record a
decision (kept with history).
Logic: cxr/dashboard/triage.py."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

import app_ui
from cxr.dashboard import analysis, charts, triage
from cxr.dashboard.runs import list_runs
from cxr.dashboard.status import overview, worklist_counts
from cxr.labels import FINDINGS
from cxr.worklist import DECISIONS, STATUSES, Worklist

DECISION_LABELS = {"agree": "Agree", "disagree": "Disagree", "second_read": "Needs second read"}

who = app_ui.viewer()  # signed in (or local mode), else only the sign-in screen
r = app_ui.roots()
st.title("Triage")
if worklist_counts(r.worklist) is None:
    st.info(f"No worklist at `{r.worklist}` yet. The demo fills it with its test-split "
            "predictions after evaluation; or run `cxr worklist import PREDICTIONS.csv --model M "
            f"--checkpoint RUN/best.pt --db {r.worklist}`.")
    app_ui.demo_banner(overview(r).demo)
    st.stop()
wl = Worklist(r.worklist)
runs = list_runs(r.runs)
queues = {q.checkpoint_hash: q for q in triage.queues(wl, runs)}
if not queues:
    st.info("The worklist has no case yet.")
    st.stop()

# -- the queue: one model's readings, so a film appears once -----------------------------------
default = triage.default_queue(list(queues.values()))
choice = st.selectbox("Queue (one model's readings)", list(queues),
                      index=list(queues).index(default.checkpoint_hash), key="f_queue",
                      format_func=lambda h: queues[h].label,
                      help="each model's predictions are a queue of their own; default: the "
                           "fusion run with the best validation AUC")
queue = queues[choice]

# -- filters -----------------------------------------------------------------------------------
with st.container(border=True):
    c1, c2, c3, c4, c5, c6, c7 = st.columns([2, 1, 2, 2, 2, 2, 2])
    finding = c1.selectbox("Finding", [triage.ANY, *FINDINGS], key="f_finding")
    min_prob = c2.number_input("min P", 0.0, 1.0, 0.5, 0.05, key="f_min_prob",
                               disabled=finding == triage.ANY)
    call = c3.selectbox("Call", triage.CALL_CHOICES, key="f_call",
                        help="the call of the chosen finding, or of any finding ('positive' "
                             "with finding 'any': any positive call)")
    ood = c4.selectbox("Out of distribution", list(triage.OOD_CHOICES), key="f_ood")
    status = c5.selectbox("Status", [triage.ANY, *STATUSES], key="f_status")
    top = triage.MAX_UNCERTAINTY
    uncertainty = c6.slider("Uncertainty (image score)", 0.0, top, (0.0, top), 0.01, key="f_unc",
                            help="each case's score under its uncertainty rule")
    sort = c7.selectbox("Sort by", list(triage.SORTS), key="f_sort")
    ascending = c7.toggle("ascending", key="f_asc")

cases = triage.find_cases(wl, finding, min_prob, status, uncertainty, sort, ascending,
                          queue=queue.checkpoint_hash, call=call, ood=ood)
calls_text = (f"Calls at the {queue.operating_point} operating point (chosen on validation)."
              if queue.operating_point else
              "This queue came without a readout: no calls and no out-of-distribution flags "
              "(run `cxr calibrate` on its checkpoint, evaluate or predict again, and import).")
st.caption(f"{len(cases)} case(s) shown; {queue.pending} pending in this queue, "
           f"{worklist_counts(r.worklist)['pending']} in the worklist. {calls_text} "
           + triage.rules_caption(cases))
if cases.empty:
    st.info("No case matches these filters.")
    st.stop()

event = st.dataframe(
    triage.case_table(cases), hide_index=True, width="stretch", height=360, key="cases",
    on_select="rerun", selection_mode="single-row",
    selection_default={"selection": {"rows": [0]}},
    column_config={
        "id": st.column_config.NumberColumn("case", width="small"),
        "OOD": st.column_config.TextColumn(
            "OOD", help="out of distribution: the film is unlike the films the model was "
            "trained on, and its numbers are not to be trusted"),
        "OOD score": st.column_config.NumberColumn("OOD score", format="%.2f"),
        "uncertainty": st.column_config.NumberColumn(
            "uncertainty", format="%.3f", help="the image score under the case's rule: mean = "
            "mean MC-dropout std over the findings (the report's), any = the largest"),
        "top P": st.column_config.ProgressColumn("top P", min_value=0.0, max_value=1.0,
                                                 format="%.2f"),
        **{f: st.column_config.ProgressColumn(f, min_value=0.0, max_value=1.0, format="%.2f")
           for f in FINDINGS}})
rows = event.selection.rows if event is not None else []
row = rows[0] if rows and rows[0] < len(cases) else 0  # nothing selected: the first case
case = cases.iloc[row]
case_id = int(case["id"])

# -- the case ------------------------------------------------------------------------------------
st.subheader(f"Case {case_id}: {case['image']}")
st.caption(f"model {case['model']} · status **{case['status']}** · uncertainty "
           f"{case['uncertainty']:.3f} (rule {case['uncertainty_rule']})"
           if case["uncertainty"] == case["uncertainty"]
           else f"model {case['model']} · status **{case['status']}**")
mean, std = triage.case_probabilities(case)
if case["ood"] == 1:  # before the case's numbers, as on the Predict page
    st.error(f"**Out of distribution.** This film is unlike the films this model was trained "
             f"on (OOD score {case['ood_score']:.2f}): its numbers are not to be trusted.")
calls = triage.case_calls(case)


@st.cache_data(max_entries=16, show_spinner="Loading the film…")
def film(path: str):
    return analysis.read_upload(Path(path).read_bytes(), Path(path).name).pixels


left, right = st.columns([2, 3])
with right:
    st.plotly_chart(charts.probability_bars(list(FINDINGS), mean, std), key="case_bars")
    if calls is not None:
        called = {c: [f for f, x in zip(FINDINGS, calls) if x == c] for c in ("positive",
                                                                              "uncertain")}
        st.caption(f"Calls at the {case['operating_point']} operating point: positive "
                   f"{', '.join(called['positive']) or 'none'}; uncertain "
                   f"{', '.join(called['uncertain']) or 'none'}; the others negative or n/a.")
with left:
    path = case["path"]
    pixels = None
    if not path or not Path(path).is_file():
        st.info(f"Film not available here ({path or 'no path recorded'}).")
    else:
        try:
            pixels = analysis.display_film(film(path))
        except (analysis.UploadError, OSError) as exc:
            st.error(f"Cannot read the film: {exc}")
    if pixels is not None:
        ckpt = triage.checkpoint_for(case["checkpoint_hash"], runs)
        show = st.selectbox("Grad-CAM for", ["(film only)", *FINDINGS],
                            index=1 + int(mean.argmax()) if ckpt else 0, key=f"cam_{case_id}")
        if show != "(film only)" and ckpt:
            device = analysis.device_name()
            model, _ = app_ui.model_for(ckpt, device)
            with app_ui.model_lock(ckpt, device):
                heat = analysis.explain(model, film(path), [show])[show]
            st.image(analysis.overlay(pixels, heat, 0.4), width="stretch",
                     caption=f"Grad-CAM: {show}")
        else:
            if show != "(film only)":
                st.caption("The checkpoint that made these predictions is not among the runs; "
                           "showing the film only.")
            st.image(pixels, clamp=True, width="stretch")

# -- decision --------------------------------------------------------------------------------------
if not who.local:
    app_ui.signed_in(who, key="sign_out_triage")
with st.form("decision", clear_on_submit=False):
    st.markdown("**Your review**")
    c1, c2 = st.columns([1, 2])
    decision = c1.radio("Decision", DECISIONS, format_func=DECISION_LABELS.get, key="d_decision")
    corrected = c2.multiselect("Findings present (if you disagree)", FINDINGS, key="d_corrected",
                               help="leave empty with 'Disagree' to mean No Finding")
    note = st.text_area("Note", key="d_note")
    if who.local:  # single-user local mode: the reviewer says who they are
        reviewer = st.text_input("Reviewer", key="d_reviewer")
    else:  # signed in: always the signed-in identity, never a typed name
        reviewer = who.identity
        st.caption(f"Recorded as `{who.identity}`, the signed-in identity.")
    if st.form_submit_button("Record decision", type="primary"):
        try:
            triage.record_decision(wl, case_id, decision, reviewer, note, corrected)
        except ValueError as exc:
            st.error(str(exc))
        else:
            st.session_state["recorded"] = f"Recorded **{DECISION_LABELS[decision]}** for case " \
                                           f"{case_id} by {reviewer.strip()}."
            st.rerun()
if "recorded" in st.session_state:
    st.success(st.session_state.pop("recorded"))

history = wl.history(case_id)
st.markdown(f"**History of case {case_id}** ({len(history)} decision(s))")
if history.empty:
    st.caption("No decision yet.")
else:
    st.table(history[["created_at", "reviewer", "decision", "corrected", "note"]])

# -- export (the CSV is made when a button is clicked, not on every rerun) ------------------------
c1, c2 = st.columns(2)
c1.download_button("Export cases with status (CSV)",
                   lambda: wl.export_table().to_csv(index=False).encode(), "worklist_cases.csv",
                   "text/csv", key="export_cases")
c2.download_button("Export every decision (CSV)",
                   lambda: wl.export_table(history=True).to_csv(index=False).encode(),
                   "worklist_decisions.csv", "text/csv", key="export_history")
