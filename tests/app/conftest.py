"""Fixtures for the dashboard's AppTest tests: a tiny world on disk, the env pointing at it."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dashboard_env  # noqa: E402

REPO = dashboard_env.REPO


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> "dashboard_env.DashboardEnv":
    """Built once per session (a fusion checkpoint takes a few seconds); tests that write
    (decisions, launches) use `fresh_world`."""
    return dashboard_env.build(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="session")
def calibrated_world(tmp_path_factory) -> "dashboard_env.DashboardEnv":
    """The world with a demo-like fusion run: a `cxr synth` dataset, the run's split of it and
    the readout `cxr calibrate` fits (dashboard_env's docstring); built only for the tests that
    need a readout."""
    return dashboard_env.build(tmp_path_factory.mktemp("calibrated"), calibrated=True)


@pytest.fixture
def fresh_world(tmp_path, world) -> "dashboard_env.DashboardEnv":
    """A private copy of the world (for tests that write: decisions, runs, jobs)."""
    return world.copy_to(tmp_path / "world")


@pytest.fixture
def empty_world(tmp_path) -> "dashboard_env.DashboardEnv":
    """Nothing yet: no dataset, no run, no worklist (a fresh clone before ./run.sh)."""
    return dashboard_env.DashboardEnv(tmp_path, tmp_path / "runs", tmp_path / "data",
                                      tmp_path / "data" / "worklist.sqlite",
                                      tmp_path / "runs" / "none", [])


# Secrets of a local-mode app. Any non-empty dict replaces the real secrets in AppTest, so a
# developer's own .streamlit/secrets.toml never turns sign-in on in these tests.
LOCAL_SECRETS = {"cxr": {}}


@pytest.fixture
def app(monkeypatch, world):
    """A factory: app(world, page) -> AppTest run on that page with the env set; `secrets`
    and `user` (what st.user holds) for the sign-in tests."""
    from streamlit.testing.v1 import AppTest

    def make(env=world, page: str | None = None, timeout: float = 60,
             secrets: dict | None = None, user: dict | None = None):
        env.apply(monkeypatch)
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=timeout)
        at.secrets = secrets or LOCAL_SECRETS
        if user is not None:
            at.user = user
        at.run()
        if page:
            at.switch_page(page)
            at.run()
        return at
    return make

