"""End to end in a REAL browser: `streamlit run app.py` headless on 127.0.0.1, driven by Debian's
headless Chromium through Selenium + chromedriver (no browser download anywhere).

Upload a real ChestX-ray14 film on Predict to a demo-like model (trained on synthetic phantoms,
with the readout `cxr calibrate` fits): the out-of-distribution warning must come, above the
numbers. Then a synthetic film of the model's own data: no such warning, the 14 probabilities,
calls and a Grad-CAM overlay. On Triage choose the most-uncertain order, sort by uncertainty,
record a decision, reload and find it persisted. Screenshots of every page go to
tests/artifacts/ (git-ignored). Skips, saying why, without chromium/chromedriver/selenium or the
real NIH images.

    .venv/bin/python -m pytest tests/browser -s        # CXR_E2E_KEEP=1 keeps the server log

By default the world is a tiny one built for the test (tests/app/dashboard_env.py, calibrated:
a `cxr synth` dataset, the fusion run's split of it and its readout). With CXR_E2E_DEMO=REPO (a
checkout where `./run.sh` has finished) the same test runs against the trained demo instead: its
checkpoints, evaluations and data read in place, its worklist copied (the test's decision stays
out of the user's), and a synthetic demo test film uploaded. The README's screenshots come from
that run:

    CXR_E2E_DEMO=$PWD .venv/bin/python -m pytest tests/browser -s && \
        cp tests/artifacts/*.png docs/screenshots/
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import dashboard_env
from browser import (SLOW, By, Keys, body, case_header, chromium, choose, open_page, shot,
                     streamlit_app, top_of, upload, wait_for, wait_idle, wait_text)

REPO = dashboard_env.REPO
NIH_DIR = Path(os.environ.get("CXR_NIH_DIR", REPO.parent / "shared" / "data" / "nih"))
FILM = "00000100_000.png"
DEMO = Path(os.environ["CXR_E2E_DEMO"]) if os.environ.get("CXR_E2E_DEMO") else None


OOD_TEXT = "unlike the films this model was trained on"  # the Predict page's OOD warning


@pytest.fixture(scope="module")
def nih_film() -> Path:
    path = next(iter(sorted((NIH_DIR / "images").glob(FILM))), None)
    if path is None:
        pytest.skip(f"real NIH film {FILM} not found under {NIH_DIR}/images (set CXR_NIH_DIR)")
    return path


@pytest.fixture(scope="module")
def film(world) -> Path:
    """A synthetic film of the default model's own data (no OOD warning expected)."""
    return demo_film(DEMO / "data" / "demo") if DEMO else world.synthetic_film


def demo_film(data: Path) -> Path:
    """A demo test-split film with a large, visible finding (Mass, else Effusion)."""
    import pandas as pd
    test = set((data / "test_list.txt").read_text().split())
    entry = pd.read_csv(data / "Data_Entry_2017.csv")
    entry = entry[entry["Image Index"].isin(test)]
    for finding in ("Mass", "Effusion"):
        hits = entry[entry["Finding Labels"] == finding]
        if len(hits):
            return data / "images" / hits["Image Index"].iloc[0]
    return data / "images" / entry["Image Index"].iloc[0]


def demo_world(repo: Path, root: Path) -> dashboard_env.DashboardEnv:
    status = repo / "checkpoints" / "demo_status.json"
    if not status.is_file() or '"finished' not in status.read_text():
        pytest.skip(f"CXR_E2E_DEMO={repo}: the demo has not finished there ({status})")
    import sqlite3
    worklist = root / "worklist.sqlite"
    with sqlite3.connect(repo / "data" / "worklist.sqlite") as src, \
            sqlite3.connect(worklist) as dst:
        src.backup(dst)  # WAL mode: copying the file alone could miss recent rows
    fusion = repo / "checkpoints" / "demo-fusion"
    if not (fusion / "best.readout.pt").is_file():
        pytest.skip(f"CXR_E2E_DEMO={repo}: demo-fusion has no readout (best.readout.pt); "
                    "./run.sh fits it with `cxr calibrate`")
    return dashboard_env.DashboardEnv(root, repo / "checkpoints", repo / "data", worklist,
                                      fusion, [])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if DEMO:
        return demo_world(DEMO, tmp_path_factory.mktemp("e2e-demo"))
    env = dashboard_env.build(tmp_path_factory.mktemp("e2e"), calibrated=True)
    dashboard_env.write_run(env.runs / "tiny-cnn", "simple_cnn", val_auc=0.55)
    return env


@pytest.fixture(scope="module")
def server(world):
    no_secrets = world.root / "secrets.toml"  # empty: single-user local mode
    no_secrets.write_text("")
    with streamlit_app(world.env(), world.root / "streamlit.log", no_secrets) as url:
        yield url


@pytest.fixture(scope="module")
def driver():
    with chromium() as d:
        yield d


# -- the test -------------------------------------------------------------------------------

def test_predict_then_triage_in_a_real_browser(server, driver, nih_film, film, world):
    from cxr.worklist import Worklist
    d = driver

    open_page(d, server, "", "What to do next")
    assert "not for diagnosis" in body(d)
    shot(d, "home")

    # Predict: a real ChestX-ray14 film on a model of phantoms is out of distribution, and the
    # page says so above every number (the bars, the table).
    open_page(d, server, "Predict", "Waiting for a film")
    upload(d, nih_film)
    assert OOD_TEXT in body(d) and "not to be trusted" in body(d)
    alert = top_of(d, "[data-testid=stAlert]", OOD_TEXT)
    assert alert < top_of(d, ".js-plotly-plot") and alert < top_of(d, "[data-testid=stDataFrame]")
    assert "learned from drawn phantoms" in body(d)
    shot(d, "predict-ood")

    # A synthetic film of the model's own data: no OOD warning; probabilities, calls, Grad-CAM.
    upload(d, film)
    wait_for(d, lambda d: OOD_TEXT not in body(d), SLOW, "the OOD warning to go")
    wait_idle(d)
    assert OOD_TEXT not in body(d) and "learned from drawn phantoms" in body(d)
    assert "calls at Youden's J" in body(d)
    from cxr.labels import FINDINGS
    bars = wait_for(d, lambda d: d.execute_script(  # plotly draws after the page settles
        "const c = document.querySelector('.js-plotly-plot');"
        "return c ? Array.from(c.querySelectorAll('g.ytick text')).map(t => t.textContent) : [];"
    ), 60, "the probability bars")
    assert sorted(bars) == sorted(FINDINGS)  # one bar per finding
    assert len([t for t in body(d).split("\n") if " ± " in t]) >= 1
    def loaded_images(d):  # the film and at least one overlay, decoded by the browser
        imgs = d.find_elements(By.CSS_SELECTOR, "[data-testid=stImage] img")
        return len(imgs) >= 2 and all(i.get_attribute("naturalWidth") not in ("0", None)
                                      for i in imgs)
    wait_for(d, loaded_images, 60, "the film and the Grad-CAM overlay images")
    shot(d, "predict")

    open_page(d, server, "Train", "All runs")
    shot(d, "train")
    open_page(d, server, "Evaluate", "Table 2")
    wait_for(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")) >= 6, SLOW,
             "the comparison plots")
    shot(d, "evaluate")

    # Triage: sort by uncertainty, record a decision, reload, find it.
    open_page(d, server, "Triage", "Your review")
    wl = Worklist(world.worklist)
    by_image = wl.cases(sort="image", ascending=True).iloc[0]
    most_uncertain = wl.cases(sort="uncertainty").iloc[0]
    assert by_image["id"] != most_uncertain["id"]
    choose(d, "Queue order", "Most uncertain first")  # the order the Sort by box applies in
    choose(d, "Sort by", "image")
    choose(d, "Sort by", "uncertainty (image score, by rule)")
    case_id = int(most_uncertain["id"])
    wait_for(d, lambda d: case_header(d).startswith(f"Case {case_id}:"), 60,
             f"case {case_id} (the most uncertain) to be shown first")
    d.find_element(By.XPATH, "//label[.//p[text()='Agree']]").click()
    d.find_element(By.CSS_SELECTOR, "textarea[aria-label='Note']").send_keys("clear lungs")
    reviewer = d.find_element(By.CSS_SELECTOR, "input[aria-label='Reviewer']")
    reviewer.send_keys("e2e reviewer")
    reviewer.send_keys(Keys.TAB)  # the name is outside the form: a rerun (it claims the case)
    wait_idle(d)
    d.find_element(By.XPATH, "//button[.//p[text()='Record decision']]").click()
    wait_text(d, f"for case {case_id} by e2e reviewer", SLOW)
    d.refresh()
    wait_text(d, f"History of case {case_id} (1 decision(s))", SLOW)
    wait_idle(d)
    assert "e2e reviewer" in body(d) and "clear lungs" in body(d)
    history = wl.history(case_id)
    assert history[["decision", "reviewer", "note"]].values.tolist() == [
        ["agree", "e2e reviewer", "clear lungs"]]
    shot(d, "triage")
