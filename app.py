"""CXR Review dashboard: `streamlit run app.py` (the README's ./run.sh starts it for you).

The home page and the router: st.navigation lists the pages in `pages/`; each page only calls
`cxr` (logic in cxr/dashboard/, shared widgets in app_ui.py). Folders come from the environment:
CXR_RUNS_DIR (default checkpoints/), CXR_DATA_DIR (data/), CXR_WORKLIST (data/worklist.sqlite).
Sign-in: with an [auth] section in .streamlit/secrets.toml every page needs a signed-in user
(cxr/dashboard/auth.py); without one the app is in single-user local mode.
"""
from __future__ import annotations

import streamlit as st

import app_ui
from cxr.dashboard import status as status_mod


def home() -> None:
    r = app_ui.roots()
    st.title("CXR Review")
    st.markdown(
        "Multi-label chest X-ray classification of the 14 NIH ChestX-ray14 findings with "
        "Monte-Carlo-dropout uncertainty and Grad-CAM explanations: the report's "
        "attention-fusion network (DenseNet121 + EfficientNet-B3) and three baselines.")
    st.error(app_ui.DISCLAIMER, icon=":material/warning:")
    if WHO.local:
        app_ui.local_mode_notice()
    cols = st.columns(4)
    cols[0].page_link(PREDICT, label="**Predict**: upload a film")
    cols[1].page_link(TRAIN, label="**Train**: launch and watch runs")
    cols[2].page_link(EVALUATE, label="**Evaluate**: compare the models")
    cols[3].page_link(TRIAGE, label="**Triage**: review the worklist")
    status_panel(r)


def status_panel(r) -> None:
    view = status_mod.overview(r)
    # Refresh on its own while something is happening (demo pipeline, training); a fragment
    # reruns only this panel, and a full rerun restarts it without the timer once all is done.
    active = view.demo_active or bool(view.running)

    @st.fragment(run_every=3 if active else None)
    def panel():
        v = status_mod.overview(r)
        if (v.demo_active or bool(v.running)) != active:
            st.rerun()
        st.subheader("Status")
        app_ui.demo_banner(v.demo)
        c = st.columns(4)
        c[0].metric("Datasets", len(v.datasets),
                    help="folders under the data root with a Data_Entry_2017 CSV")
        c[1].metric("Trained runs", len(v.trained), delta=f"{len(v.running)} running"
                    if v.running else None, delta_color="off")
        c[2].metric("Evaluated runs", len(v.evaluated))
        c[3].metric("Worklist cases", v.worklist["cases"] if v.worklist else 0,
                    delta=f"{v.worklist['pending']} pending" if v.worklist else None,
                    delta_color="off")
        st.markdown("**What to do next**")
        for step in v.steps or ["Everything is in place: explore the pages."]:
            st.markdown(f"- {step}")
        for run in v.running:
            app_ui.show_progress(run)
        rows, total = status_mod.timeline(v.demo)
        if rows:
            with st.expander(f"Demo timeline: {total}", expanded=v.demo_active):
                st.dataframe(rows, hide_index=True, key="demo_timeline")
        if v.datasets:
            st.caption("Datasets: " + "; ".join(f"`{d}` ({n:,} images)" for d, n in v.datasets))

    panel()


st.set_page_config(page_title="CXR Review", page_icon=":material/radiology:", layout="wide")
WHO = app_ui.viewer()  # without a session: the sign-in screen only, no page list
PREDICT = st.Page("pages/1_Predict.py", title="Predict", icon=":material/radiology:")
TRAIN = st.Page("pages/2_Train.py", title="Train", icon=":material/model_training:")
EVALUATE = st.Page("pages/3_Evaluate.py", title="Evaluate", icon=":material/monitoring:")
TRIAGE = st.Page("pages/4_Triage.py", title="Triage", icon=":material/fact_check:")
AUDIT = st.Page("pages/5_Audit.py", title="Audit", icon=":material/query_stats:")
page = st.navigation([st.Page(home, title="Home", icon=":material/home:", default=True),
                      PREDICT, TRAIN, EVALUATE, TRIAGE, AUDIT])
app_ui.sidebar(app_ui.roots(), WHO)
page.run()
