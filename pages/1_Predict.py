"""Predict: upload a film (PNG, JPEG or DICOM, recognised by content), see per-finding
probabilities with MC-dropout uncertainty and Grad-CAM overlays; with the checkpoint's readout
(`cxr calibrate`), calibrated probabilities and a call per finding at the chosen operating
point, and an out-of-distribution film announced before any number.
Logic: cxr/dashboard/analysis.py."""
from __future__ import annotations

import hashlib
from functools import partial

import streamlit as st

import app_ui
from cxr.dashboard import analysis, charts, mc_histogram, plain
from cxr.dashboard.points import point_caption
from cxr.dashboard.runs import best_run, list_runs
from cxr.dashboard.status import overview
from cxr.data.layout import trained_on_synthetic
from cxr.evaluation.operating_points import POINTS
from cxr.evaluation.recalibrate import in_force
from cxr.models import model_info
from cxr.readout import ReadoutError
from cxr.uncertainty import describe_rule, rule_for

app_ui.viewer()  # signed in (or local mode), else only the sign-in screen
r = app_ui.roots()
st.title("Predict")
st.caption("Upload a frontal chest film. " + app_ui.DISCLAIMER)

runs = [run for run in list_runs(r.runs) if run.has_best]
if not runs:
    st.info(f"No trained checkpoint yet under `{r.runs}`. The demo trains a fusion model "
            "first; this page works as soon as its `best.pt` exists. Follow it on **Train**.")
    app_ui.demo_banner(overview(r).demo)
    st.stop()

by_name = {run.name: run for run in runs}
names = list(by_name)
with st.sidebar:
    st.subheader("Model")
    name = st.selectbox("Checkpoint", names, index=names.index(best_run(runs, "fusion").name),
                        format_func=lambda n: app_ui.run_label(by_name[n]), key="checkpoint",
                        help="default: the fusion run with the best validation AUC")
    run = by_name[name]
    passes = st.slider("MC-dropout passes", 2, 100, 25, help="the report uses 25 to 100")
    point = st.selectbox("Operating point", POINTS, format_func=analysis.POINT_LABELS.get,
                         key="point", help="where each finding's call is made, chosen on the "
                         "run's validation split by `cxr calibrate`: Youden's J, or the "
                         "threshold whose validation sensitivity (or specificity) is >= 0.90 "
                         "with 95% confidence (its lower confidence bound)")
device = analysis.device_name()

upload = st.file_uploader("Chest X-ray (PNG, JPEG or DICOM; any file name)", type=None,
                          key="film")
# Loaded (on CPU: exported to ONNX Runtime, seconds) while the clinician picks a film, not
# after the upload; cached per checkpoint version, so later runs of the page get it at once.
try:
    model, meta = app_ui.model_for(run.checkpoint, device)
except Exception as exc:  # a checkpoint being rewritten or broken: say so, keep the app up
    st.error(f"Cannot load checkpoint {plain.code(run.checkpoint)}: {plain.md(exc)}")
    st.stop()
try:
    readout, readout_mtime = app_ui.readout_for(run.checkpoint)
except ReadoutError as exc:  # fitted for another checkpoint (retrained): never used silently
    st.error(f"Cannot use this checkpoint's readout: {plain.md(exc)}")
    st.stop()
st.caption(plain.md(in_force(readout)))  # validation fit, or refitted on reviewed cases
if upload is None:
    st.info("Waiting for a film. Nothing you upload is stored; DICOM patient fields are never "
            "read out or shown.")
    st.stop()

data = upload.getvalue()
digest = hashlib.sha256(data).hexdigest()
try:
    img = analysis.read_upload(data, upload.name)
except analysis.UploadError as exc:
    st.error(f"Cannot analyse this file: {exc}")  # the uploader's own file, their session
    st.caption(analysis.ACCEPTED)
    st.stop()


# cache_resource, not cache_data: the Analysis holds the readout (its OOD precision is a CxC
# float64 matrix, 13 MB for efficientnet_b0), which cache_data would pickle into every entry and
# unpickle on every rerun. The result is only read, never changed, so sessions can share it.
@st.cache_resource(max_entries=32, show_spinner="Running MC dropout…")
def predict(digest: str, ckpt: str, mtime: float, readout_mtime, passes: int, rule: str,
            name: str, _pixels, _model, _readout):
    # keyed by the film's hash and name (its dropout seed, as `cxr predict` draws it) and the
    # checkpoint's and readout's versions; the arrays themselves are not hashed
    return analysis.analyse(_model, _pixels, passes=passes, rule=rule, name=name,
                            readout=_readout)


@st.cache_data(max_entries=64, show_spinner="Computing Grad-CAM…")
def cam(digest: str, ckpt: str, mtime: float, finding: str, _pixels, _model):
    return analysis.explain(_model, _pixels, [finding])[finding]


key = (digest, str(run.checkpoint), run.checkpoint.stat().st_mtime)
lock = app_ui.model_lock(run.checkpoint, device)
rule, rule_origin = rule_for(meta)  # the run's uncertainty_rule (old checkpoints: the default)
with lock:
    result = predict(*key, readout_mtime, passes, rule, upload.name, img.pixels, model, readout)

# Before any number: an out-of-distribution film, a model of phantoms, no readout.
app_ui.show_notices(analysis.notices(result, trained_on_synthetic(meta), run.checkpoint))
film = analysis.display_film(img.pixels)
left, right = st.columns([2, 3])
with left:
    view = f" · view {plain.md(img.meta['view'])}" if "view" in img.meta else ""
    st.image(film, caption=f"{plain.md(img.meta.get('format', '?'))} · {img.pixels.shape[1]}×"
             f"{img.pixels.shape[0]} px{view}", clamp=True, width="stretch")
with right:
    rule_text = (f"image uncertainty {result.score:.3f}, rule "
                 f"{describe_rule(result.rule, result.threshold)}")
    wide = (f" Findings with std above {result.threshold}: {', '.join(result.uncertain)}."
            if result.uncertain else "")
    if result.flagged:
        st.warning(f"**Uncertain**: {rule_text}.{wide} Treat these estimates with caution; a "
                   "human read is needed.", icon=":material/help:")
    else:
        st.success(f"Not flagged uncertain: {rule_text}.{wide}")
    calibrated = result.readout is not None
    st.plotly_chart(charts.probability_bars(
        result.labels, result.shown_mean, result.shown_std, result.threshold,
        uncertain=result.std > result.threshold,
        axis=("calibrated probability ± std of the calibrated MC samples" if calibrated
              else "mean probability (MC dropout) ± std")), width="stretch", key="bars")
    readout_text = (f"calls at {analysis.POINT_LABELS[point]} (validation-chosen thresholds, "
                    f"{result.readout.calibration.method} calibration), OOD score "
                    f"{result.ood_score:.2f} (threshold {result.readout.ood.threshold:.2f})"
                    if calibrated else "no readout")
    st.caption(f"{plain.md(run.name)} ({plain.md(meta['model']['name'])}, "
               f"{meta['preprocess']['input_size']} px), "
               f"{passes} passes on {device}; uncertainty rule {rule} from {rule_origin}; "
               f"{readout_text}.")

number = lambda label, **kw: st.column_config.NumberColumn(label, format="%.3f", **kw)  # noqa
st.dataframe(result.table(point), hide_index=True, width="stretch", key="probs", column_config={
    "probability": st.column_config.ProgressColumn(
        "raw probability" if calibrated else "probability", min_value=0.0, max_value=1.0,
        format="%.3f", help="the MC-dropout mean before calibration" if calibrated else None),
    "calibrated": st.column_config.ProgressColumn(
        "calibrated probability", min_value=0.0, max_value=1.0, format="%.3f",
        help="the MC mean through the run's validation-fitted calibration"),
    "std": number("MC std (uncertainty)", help="std of the raw MC-dropout passes: what the "
                  "uncertainty rule uses"),
    "call": st.column_config.TextColumn("call", help="positive / negative at the operating "
                                        "point; uncertain when the MC passes fall on both sides "
                                        "of it; n/a when validation had one class"),
    "threshold": number("threshold", help="the operating point, on the calibrated scale"),
    "val sensitivity": number("val sensitivity"),
    "val specificity": number("val specificity"),
    "val sensitivity (95% CI)": st.column_config.TextColumn(
        "val sensitivity (95% CI)", help="exact (Clopper-Pearson) interval on the validation "
        "films the threshold was chosen on"),
    "val specificity (95% CI)": st.column_config.TextColumn("val specificity (95% CI)")})
if calibrated:
    st.caption(point_caption(result.readout, point))

st.subheader("MC-dropout samples")
top_k = st.slider("Findings to show", 1, 6, 3, key="top_k")
st.plotly_chart(charts.mc_histograms(result.labels, result.shown_samples, result.top(top_k),
                                     "calibrated probability" if calibrated else "probability"),
                width="stretch", key="hist")
figure_finding = st.selectbox("Histogram to download (the report's Figure 7)", result.labels,
                              index=result.top(1)[0], key="figure_finding")
st.download_button(  # the PNG is drawn only when clicked (partial binds this run's values)
    "Download the histogram (PNG)", key="figure_png", icon=":material/download:",
    on_click="ignore", mime="image/png", file_name=f"mc_histogram_{figure_finding}.png",
    data=partial(mc_histogram.histogram_png,
                 result.shown_samples[:, result.labels.index(figure_finding)], figure_finding,
                 "calibrated probability" if calibrated else "probability"))

st.subheader("Grad-CAM")
explain = st.multiselect("Findings to explain", result.labels,
                         default=[result.labels[result.top(1)[0]]], key=f"explain-{digest}",
                         help="each finding costs one backward pass")
opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.4, 0.05, key="opacity")
st.caption(f"Heatmaps from {model_info(meta['model']['name']).feature_map}: where the evidence "
           "for each finding's logit lies.")
cols = st.columns(3)
for i, finding in enumerate(explain):
    with lock:
        heat = cam(*key, finding, img.pixels, model)
    k = result.labels.index(finding)
    cols[i % len(cols)].image(analysis.overlay(film, heat, opacity), width="stretch",
                              caption=f"{finding}: p = {result.shown_mean[k]:.2f} ± "
                                      f"{result.shown_std[k]:.2f}")
