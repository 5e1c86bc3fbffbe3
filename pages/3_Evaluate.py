"""Evaluate: compare evaluated runs (Table 2, macro AUC with CIs, ROC, loss curves, calibration,
selective prediction); evaluate a trained run in the background. Data: RUN_DIR/eval/ from
`cxr evaluate` (cxr/dashboard/evaluations.py)."""
from __future__ import annotations

import numpy as np
import streamlit as st

import app_ui
from cxr.dashboard import charts, jobs, plain
from cxr.dashboard.evaluations import (Evaluation, best_per_row, ood_table, table2,
                                       table_with_cis)
from cxr.dashboard.runs import list_runs
from cxr.dashboard.status import overview
from cxr.labels import FINDINGS

who = app_ui.viewer()  # signed in (or local mode), else only the sign-in screen
r = app_ui.roots()
st.title("Evaluate")
runs = list_runs(r.runs)
evaluated = [run for run in runs if run.evaluated]


# -- evaluation jobs ---------------------------------------------------------------------------
def eval_jobs_running() -> list:
    return [run for run in runs if jobs.job_state(run.path, "evaluate") == "running"]


@st.fragment(run_every=3 if eval_jobs_running() else None)
def job_panel():
    running = eval_jobs_running()
    for run in running:
        st.info(f"Evaluating {plain.code(run.name)}… (background job; this page updates when "
                "it is done)")
        tail = jobs.log_tail(run.path, "evaluate", 5)
        if tail:
            st.code(tail, language=None)
    if not running and st.session_state.get("eval_waiting"):
        st.session_state.pop("eval_waiting")
        st.rerun()  # the whole page: the new evaluation joins the comparison
    for run in runs:
        code = jobs.exit_code(run.path, "evaluate")
        if code not in (None, 0) and not run.evaluated:
            st.error(f"Evaluating {plain.code(run.name)} failed (exit status {code}):")
            st.code(jobs.log_tail(run.path, "evaluate", 8), language=None)


candidates = [run for run in runs if run.has_best and not run.evaluated and not run.active]
with st.expander(f"Evaluate a trained run ({len(candidates)} not evaluated yet)",
                 expanded=not evaluated and bool(candidates)):
    if not who.can_train:
        st.caption(app_ui.read_only("launch an evaluation"))
    elif candidates:
        pick = st.selectbox("Run", [c.name for c in candidates], key="eval_pick")
        if st.button("Evaluate on its test split", key="eval_go"):
            run = next(c for c in candidates if c.name == pick)
            try:
                pid = jobs.launch("evaluate", jobs.evaluate_args(run.path), run.path)
            except jobs.JobError as exc:
                st.error(str(exc))
            else:
                st.session_state["eval_waiting"] = True
                st.success(f"Evaluation of {plain.code(pick)} started (pid {pid}).")
                st.rerun()
    else:
        st.caption("Every trained run is evaluated (or still training).")
job_panel()

if not evaluated:
    st.info("No evaluated run yet. The demo evaluates each model after training it; or "
            "evaluate a trained run above (`cxr evaluate --checkpoint RUN/best.pt`).")
    app_ui.demo_banner(overview(r).demo)
    st.stop()

names = [run.name for run in evaluated]
chosen = st.multiselect("Runs to compare", names, default=names, key="compare")
if not chosen:
    st.stop()
evals = []
for run in evaluated:
    if run.name in chosen:
        try:
            evals.append(Evaluation.load(run.path, run.name))
        except FileNotFoundError as exc:
            st.error(str(exc))
if not evals:
    st.stop()
with st.expander("Provenance (split, seed, data version) of each evaluation"):
    for e in evals:
        st.markdown(f"- **{plain.md(e.name)}**: {plain.md(e.provenance())}")

# -- Table 2 -----------------------------------------------------------------------------------
st.subheader("Table 2: AUC per finding (95% CI by patient bootstrap)")
auc, cis = table2(evals)
best = best_per_row(auc)
text = table_with_cis(auc, cis)


def highlight(frame):
    styles = np.full(frame.shape, "", dtype=object)
    for i, row in enumerate(frame.index):
        if best[row] is not None and len(frame.columns) > 1:
            styles[i, list(frame.columns).index(best[row])] = "font-weight: bold; " \
                "background-color: rgba(44, 160, 44, 0.25)"
    return styles


st.dataframe(text.style.apply(highlight, axis=None), width="stretch", key="table2",
             height=36 * (len(text) + 1) + 2)
st.caption("Bold/green: the best model per finding. Findings without both classes in the "
           "scored split have no AUC (blank).")
st.download_button("Download Table 2 (CSV)", text.to_csv().encode(), "table2.csv", "text/csv")

c1, c2 = st.columns(2)
c1.plotly_chart(charts.macro_auc_bars([e.name for e in evals], [e.macro for e in evals],
                                      [e.macro_ci[0] for e in evals],
                                      [e.macro_ci[1] for e in evals]), key="macro")
c2.plotly_chart(charts.selective_figure({e.name: e.selective() for e in evals}), key="selective")

# -- ROC ---------------------------------------------------------------------------------------
st.subheader("ROC curves")
finding = st.selectbox("Finding", FINDINGS, key="roc_finding")
curves = {}
for e in evals:
    roc = e.roc()
    curves[e.name] = (roc[roc["finding"] == finding] if not roc.empty else roc, e.auc(finding))
if all(c[0].empty for c in curves.values()):
    st.info(f"No ROC for {finding}: the scored split has no positive (or no negative) case.")
else:
    st.plotly_chart(charts.roc_figure(curves, finding), key="roc")

# -- training curves, calibration --------------------------------------------------------------
st.subheader("Training: train vs validation loss (the report's Figure 6)")
histories = {e.name: e.run.read_history() for e in evals}
loss, val_auc = charts.history_figures(histories)
c1, c2 = st.columns(2)
c1.plotly_chart(loss, key="loss")
c2.plotly_chart(val_auc, key="val_auc")

st.subheader("Calibration (reliability)")
cal_finding = st.selectbox("Finding", ["all findings", *FINDINGS], key="cal_finding")
cal_key = None if cal_finding == "all findings" else cal_finding
# each table read once per rerun: both charts below draw the uncalibrated one
before = {e.name: e.calibration() for e in evals}
st.plotly_chart(charts.calibration_figure(before, cal_key), key="calibration")
if cal_key:
    ece = {e.name: e.metrics.get("per_finding", {}).get(cal_key, {}).get("ece") for e in evals}
    st.caption("ECE: " + ", ".join(f"{k} {v:.3f}" for k, v in ece.items() if v is not None))

# Calibration fitted on validation by `cxr calibrate` (the checkpoint's readout), scored here.
after = {e.name: e.calibrated() for e in evals}
calibrated = [e for e in evals if not after[e.name].empty]
if calibrated:
    st.plotly_chart(charts.calibration_before_after(
        {e.name: (before[e.name], after[e.name]) for e in calibrated}, cal_key),
        key="calibration_readout")
    eces = {e.name: e.ece_before_after(cal_key) for e in calibrated}
    st.caption("ECE before → after calibration (fitted on validation): " + ", ".join(
        f"{name} {b:.3f} → {a:.3f}" for name, (b, a) in eces.items()))
else:
    st.caption("No calibrated reliability curve: none of these runs has a readout. "
               "`cxr calibrate --checkpoint RUN/best.pt`, then `cxr evaluate`, adds one.")

# -- OOD guard ---------------------------------------------------------------------------------
st.subheader("Out-of-distribution guard on the scored split")
st.dataframe(ood_table(evals), hide_index=True, width="stretch", key="ood")
st.caption("Expected: the share of in-distribution films the readout's conformal threshold "
           "flags (95% interval of that promise). Observed: the share of this split's films "
           "flagged (exact Clopper-Pearson 95% CI). Within promise: the count lies in the 95% "
           "range the promise gives for that many films. " + app_ui.DISCLAIMER)
held = [text for text in (e.targets_held() for e in evals) if text]
if held:
    st.caption("High-sensitivity / high-specificity points on the scored split: "
               + ". ".join(held) + ". " + app_ui.DISCLAIMER)
