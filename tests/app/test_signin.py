"""Sign-in (app_ui.viewer and the pages' guards) with Streamlit's AppTest, which fakes `st.user`
and the secrets: without a session only the sign-in screen; decisions under the signed-in
identity; a reviewer's Train and Evaluate pages are read-only; local mode says so. The real
OpenID Connect round trip is tests/browser/test_signin.py."""
from __future__ import annotations

import json
import time
import tomllib
from secrets import token_hex

import pytest
from apptest_util import button, no_exception, page_text
from streamlit.testing.v1 import AppTest

from cxr.worklist import Worklist

REPO = __import__("dashboard_env").REPO
SECRETS = {
    "auth": {"redirect_uri": "http://127.0.0.1:8501/oauth2callback",
             "cookie_secret": token_hex(32),
             "client_id": "cxr", "client_secret": "c",
             "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"},
    "cxr": {"trainers": ["lead@hospital.example"]},
}
TRAINER = {"is_logged_in": True, "email": "lead@hospital.example", "sub": "t1", "name": "Lead"}
REVIEWER = {"is_logged_in": True, "email": "reader@hospital.example", "sub": "r2",
            "name": "Reader"}
ANONYMOUS = {"is_logged_in": False}
PAGES = ("pages/1_Predict.py", "pages/2_Train.py", "pages/3_Evaluate.py", "pages/4_Triage.py")


def assert_sign_in_screen_only(at, world) -> None:
    no_exception(at)
    assert [b.label for b in at.button] == ["Sign in"]
    assert [t.value for t in at.title] == ["CXR Review"]
    for kind in ("dataframe", "metric", "text_input", "selectbox", "file_uploader", "table"):
        assert not at.get(kind), kind
    text = page_text(at)
    assert "not for diagnosis" in text
    # nothing of the runs, the worklist or its films reaches the page
    for secret in ("tiny-fusion", world.films[0].name, str(world.runs), "Sign out"):
        assert secret not in text


def test_without_a_session_every_page_shows_only_the_sign_in_screen(app, world, monkeypatch):
    at = app(world, secrets=SECRETS, user=ANONYMOUS)
    assert_sign_in_screen_only(at, world)
    # each page guards itself too: before app.py first calls st.navigation, Streamlit runs a
    # page of the pages/ folder directly (its multipage v1 mode)
    world.apply(monkeypatch)
    for page in PAGES:
        at = AppTest.from_file(str(REPO / page), default_timeout=60)
        at.secrets, at.user = SECRETS, ANONYMOUS
        at.run()
        assert_sign_in_screen_only(at, world)


def test_misconfigured_sign_in_fails_closed(app, world):
    at = app(world, secrets={"auth": {**SECRETS["auth"], "client_secret": ""}}, user=TRAINER)
    no_exception(at)
    assert [e.value for e in at.error] == [
        "Sign-in is misconfigured: .streamlit/secrets.toml [auth]: client_secret missing"]
    assert not at.button and not at.metric


@pytest.mark.parametrize("page", ["app.py", *PAGES])
def test_the_example_cookie_secret_stops_every_page_saying_how_to_make_one(app, world, page):
    """The secrets.example.toml value (anyone who read it could sign a session cookie and be
    any trainer) never gets as far as a sign-in button, even for a user already signed in."""
    example = tomllib.loads((REPO / ".streamlit" / "secrets.example.toml").read_text())
    known = example["auth"]["cookie_secret"]
    secrets = {**SECRETS, "auth": {**SECRETS["auth"], "cookie_secret": known}}
    at = app(world, None if page == "app.py" else page, secrets=secrets, user=TRAINER)
    no_exception(at)
    [error] = [e.value for e in at.error]
    assert error.startswith("Sign-in is misconfigured: .streamlit/secrets.toml [auth]: "
                            "cookie_secret is a placeholder")
    assert 'python -c "import secrets; print(secrets.token_hex(32))"' in error
    assert known not in page_text(at)
    assert not at.button and not at.metric and not at.dataframe and not at.title


def test_a_decision_is_recorded_under_the_signed_in_identity(app, fresh_world):
    at = app(fresh_world, "pages/4_Triage.py", secrets=SECRETS, user=REVIEWER)
    no_exception(at)
    assert not [t for t in at.text_input if t.label == "Reviewer"]  # no name to type
    assert "Signed in as `reader@hospital.example` (reviewer)" in [m.value for m in at.markdown]
    assert "sign_out_triage" in [b.key for b in at.button]  # the page's own Sign out
    case_id = int(at.dataframe[0].value["id"].iloc[0])
    [decision] = [r for r in at.radio if r.label == "Decision"]  # its key holds the case id
    decision.set_value("agree")
    button(at, "Record decision").click()
    at.run()
    no_exception(at)
    assert any("by reader@hospital.example" in s.value for s in at.success)
    history = Worklist(fresh_world.worklist).history(case_id)
    assert history["reviewer"].tolist() == ["reader@hospital.example"]


def running_and_stopped_runs(world) -> None:
    """A run training now (its heartbeat is fresh) and a stopped one with a last.pt."""
    for name, status in (("live", "running"), ("halted", "stopped")):
        run = world.runs / name
        run.mkdir()
        (run / "progress.json").write_text(json.dumps(
            {"status": status, "model": "simple_cnn", "fraction": 0.5, "updated": time.time()}))
    (world.runs / "halted" / "last.pt").write_bytes(b"")


@pytest.mark.parametrize("user, can_train", [(TRAINER, True), (REVIEWER, False)])
def test_only_trainers_launch_stop_and_resume_training(app, fresh_world, user, can_train):
    running_and_stopped_runs(fresh_world)
    at = app(fresh_world, "pages/2_Train.py", secrets=SECRETS, user=user)
    no_exception(at)
    assert button(at, "Launch").disabled is not can_train
    read_only = [i.value for i in at.info if i.value.startswith("Read-only")]
    assert bool(read_only) is not can_train
    # everyone may monitor: the running run is watched, every run is listed
    assert at.selectbox(key="watch").value == "live"
    assert sorted(at.dataframe[0].value["run"]) == ["halted", "live", "tiny-fusion"]
    for run, control in (("live", "Stop this run"), ("halted", "Resume from last.pt")):
        at.selectbox(key="watch").set_value(run)
        at.run()
        no_exception(at)
        assert any(b.label == control for b in at.button) is can_train, (run, control)
    if not can_train:
        assert "the 1 user(s) in [cxr] trainers" in read_only[0]


def train_page_texts(at, data: str) -> list[str]:
    """What the Train page says once `data` is typed as the dataset folder."""
    at.text_input(key="t_data").set_value(data)
    at.run()
    no_exception(at)
    return [e.value for kind in ("markdown", "caption", "warning", "error", "info")
            for e in at.get(kind)]


@pytest.mark.parametrize("user, can_train", [(TRAINER, True), (REVIEWER, False)])
def test_only_trainers_get_the_cost_estimate_that_reads_server_paths(app, world, user,
                                                                     can_train):
    """The estimate reads the folder typed in: its answer would tell a reviewer which paths
    exist on the server. A reviewer's page reads the same for a real dataset and for none."""
    at = app(world, "pages/2_Train.py", secrets=SECRETS, user=user)
    there, absent = train_page_texts(at, str(world.root)), train_page_texts(at, "/no/such/dir")
    steps = [t for t in there + absent  # the estimate's own lines (cxr/dashboard/cost.py)
             if t.startswith(("Steps per epoch need the dataset", "No estimate"))
             or "steps per epoch**" in t]
    if can_train:
        assert there != absent and steps
    else:
        assert there == absent and not steps
        assert "Cost estimates are for users with the trainer role." in there
        assert button(at, "Estimate cost").disabled


@pytest.mark.parametrize("user, can_train", [(TRAINER, True), (REVIEWER, False)])
def test_only_trainers_launch_an_evaluation(app, fresh_world, user, can_train):
    import dashboard_env
    dashboard_env.write_run(fresh_world.runs / "fresh", "simple_cnn", evaluate=False)
    at = app(fresh_world, "pages/3_Evaluate.py", secrets=SECRETS, user=user)
    no_exception(at)
    assert any(b.label == "Evaluate on its test split" for b in at.button) is can_train
    assert any(c.value.startswith("Read-only") for c in at.caption) is not can_train


def bound_to(monkeypatch, address: str) -> None:
    import streamlit
    get_option = streamlit.get_option
    monkeypatch.setattr(streamlit, "get_option", lambda name: address
                        if name == "server.address" else get_option(name))


def test_local_mode_says_so_on_the_home_page(app, world, monkeypatch):
    bound_to(monkeypatch, "127.0.0.1")
    at = app(world)
    no_exception(at)
    assert any("Single-user local mode" in i.value and "(127.0.0.1)" in i.value for i in at.info)
    assert not any(b.label == "Sign out" for b in at.button)
    bound_to(monkeypatch, "0.0.0.0")
    at = app(world)
    assert any("Single-user local mode on a network" in e.value for e in at.error)


def test_signed_in_home_has_no_local_mode_notice(app, world):
    at = app(world, secrets=SECRETS, user=TRAINER)
    no_exception(at)
    assert not any("local mode" in i.value for i in at.info)
    assert "Signed in as `lead@hospital.example` (trainer)" in [m.value for m in at.markdown]
    assert {m.label for m in at.metric} >= {"Trained runs", "Worklist cases"}
