"""Sign-in for real: an OpenID Connect provider runs in this process (oidc-provider-mock), the
dashboard is configured against it through a secrets file of its own (the checkout's .streamlit/
stays untouched), and headless Chromium signs in through the provider's own login form.

- A request without a session sees only the sign-in screen (asked for first, on a page URL).
- A trainer signs in, records a decision, finds it in the worklist under their e-mail address,
  may launch training, and signs out.
- A reviewer without the trainer role (the ID token's `groups` claim decides) sees the Train
  page read-only: the Launch button is disabled.

The app is opened on 127.0.0.1, the host of its redirect_uri: on another host name (localhost)
the sign-in cookie would not come back and sign-in would silently fail.

    .venv/bin/python -m pytest tests/browser/test_signin.py -s    # CXR_E2E_KEEP=1 keeps the log
"""
from __future__ import annotations

import logging
from secrets import token_hex
import warnings

import pytest

import dashboard_env
from browser import (By, buttons, chromium, free_port, main_text, open_page, streamlit_app,
                     wait_for, wait_idle, wait_text)

# The provider (and Authlib's server side it runs on) warn about their own deprecated
# internals: at import (authlib.deprecate sets an "always" filter, so ours goes in after it)
# and in every test.
with warnings.catch_warnings():
    import authlib.deprecate  # noqa: F401
    warnings.simplefilter("ignore", DeprecationWarning)
    oidc_provider_mock = pytest.importorskip("oidc_provider_mock", reason="oidc-provider-mock "
                                             "is not installed (pip install -e '.[test]')")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TRAINER = oidc_provider_mock.User(sub="t-001", claims={
    "email": "trainer@hospital.example", "name": "Tess Trainer",
    "groups": ["radiology", "cxr-trainers"]})
READER = oidc_provider_mock.User(sub="r-002", claims={
    "email": "reader@hospital.example", "name": "Rex Reader", "groups": ["radiology"]})


@pytest.fixture(scope="module")
def provider():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    with oidc_provider_mock.run_server_in_thread(user_claims=[TRAINER, READER]) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return dashboard_env.build(tmp_path_factory.mktemp("signin"), model="simple_cnn")


@pytest.fixture(scope="module")
def server(world, provider):
    port = free_port()
    secrets = world.root / "secrets.toml"
    secrets.write_text(f"""
[auth]
redirect_uri = "http://127.0.0.1:{port}/oauth2callback"
cookie_secret = "{token_hex(32)}"
client_id = "cxr-review"
client_secret = "test-client-secret"
server_metadata_url = "{provider}/.well-known/openid-configuration"

[cxr]
trainer_claim = "groups"
trainer_value = "cxr-trainers"
""")
    # the app's server fetches the provider's metadata and tokens: never through a proxy
    env = {**world.env(), "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    with streamlit_app(env, world.root / "streamlit-signin.log", secrets, port) as url:
        yield url


@pytest.fixture(scope="module")
def driver():
    with chromium() as d:
        yield d


def sign_in(d, server: str, user) -> None:
    """From a fresh browser session through the provider's form back to the signed-in app."""
    d.delete_all_cookies()
    d.get(server)
    wait_for(d, lambda d: buttons(d, "Sign in"), 120, "the Sign in button")
    wait_idle(d)
    buttons(d, "Sign in")[0].click()
    wait_text(d, "Authorize Client")  # the provider's page
    d.find_element(By.XPATH, f"//button[@value='{user.sub}']").click()
    wait_text(d, f"Signed in as {user.claims['email']}", 120)
    wait_idle(d)


def test_a_request_without_a_session_sees_only_the_sign_in_screen(server, driver, world):
    d = driver
    d.delete_all_cookies()
    # A page's URL first: right after the server starts, Streamlit runs a page of pages/
    # directly, without app.py; the page's own guard must stop it.
    for path in ("Train", "Triage", ""):
        d.get(f"{server}/{path}")
        wait_for(d, lambda d: buttons(d, "Sign in"), 120, f"the sign-in screen at /{path}")
        wait_idle(d)
        main = main_text(d)
        assert "not for diagnosis" in main and "Sign in" in main
        for hidden in ("Launch a training run", "Monitor", "Your review", "What to do next",
                       world.run_dir.name, world.films[0].name, str(world.runs)):
            assert hidden not in main, (path, hidden)
        assert not d.find_elements(By.CSS_SELECTOR, "input, textarea"), path
        assert not buttons(d, "Sign out")


def test_a_trainer_signs_in_and_decisions_carry_their_identity(server, driver, world):
    from cxr.worklist import Worklist
    d = driver
    sign_in(d, server, TRAINER)
    assert "Signed in as trainer@hospital.example (trainer)" in d.find_element(
        By.CSS_SELECTOR, "[data-testid=stSidebar]").text

    open_page(d, server, "Triage", "Your review")
    assert not d.find_elements(By.CSS_SELECTOR, "input[aria-label='Reviewer']")  # no typed name
    wait_text(d, "Recorded as trainer@hospital.example")
    case_id = int(d.find_element(By.XPATH, "//h3[starts-with(., 'Case ')]").text
                  .split(":")[0].removeprefix("Case "))
    d.find_element(By.XPATH, "//label[.//p[text()='Agree']]").click()
    d.find_element(By.CSS_SELECTOR, "textarea[aria-label='Note']").send_keys("signed-in read")
    buttons(d, "Record decision")[0].click()
    wait_text(d, f"for case {case_id} by trainer@hospital.example", 120)
    history = Worklist(world.worklist).history(case_id)
    assert history[["decision", "reviewer", "note"]].values.tolist() == [
        ["agree", "trainer@hospital.example", "signed-in read"]]

    open_page(d, server, "Train", "All runs")
    assert "Read-only" not in main_text(d)
    launch = buttons(d, "Launch")
    assert len(launch) == 1 and launch[0].is_enabled()

    # Sign out: the provider's end-session page, then back to the sign-in screen
    buttons(d, "Sign out")[0].click()
    wait_text(d, "End Session")
    d.find_element(By.XPATH, "//button[text()='End session']").click()
    wait_for(d, lambda d: buttons(d, "Sign in"), 120, "the sign-in screen after signing out")
    assert "Signed in as" not in d.find_element(By.TAG_NAME, "body").text


def test_a_reviewer_without_the_trainer_role_cannot_launch_training(server, driver, world):
    d = driver
    sign_in(d, server, READER)
    assert "Signed in as reader@hospital.example (reviewer)" in d.find_element(
        By.CSS_SELECTOR, "[data-testid=stSidebar]").text
    open_page(d, server, "Train", "All runs")
    main = main_text(d)
    assert "Read-only: only users with the trainer role" in main
    assert "'groups' claim holds 'cxr-trainers'" in main
    assert world.run_dir.name in main  # monitoring is for everyone
    d.find_element(By.XPATH, "//summary[.//p[contains(., 'trainers only')]]").click()
    launch = wait_for(d, lambda d: buttons(d, "Launch"), 20, "the Launch button")
    assert len(launch) == 1 and not launch[0].is_enabled()
