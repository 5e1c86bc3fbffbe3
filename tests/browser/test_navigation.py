"""The sidebar's page list in a real browser when the first request of a fresh server opens a
page by its URL (a bookmark, a shared link): the home entry is "Home", as app.py names it, and
not "app" (Streamlit's page list from the `pages/` folder, which it uses until app.py has run
st.navigation once)."""
from __future__ import annotations

import pytest

import dashboard_env
from browser import By, chromium, open_page, streamlit_app, wait_for


@pytest.mark.parametrize("path, marker", [("Predict", "No trained checkpoint yet"),
                                          ("Triage", "No worklist at")])
def test_opening_a_page_by_its_url_lists_home_as_home(tmp_path, path, marker):
    world = dashboard_env.DashboardEnv(tmp_path, tmp_path / "runs", tmp_path / "data",
                                       tmp_path / "data" / "worklist.sqlite",
                                       tmp_path / "runs" / "none", [])
    secrets = tmp_path / "secrets.toml"
    secrets.write_text("")  # single-user local mode
    with streamlit_app(world.env(), tmp_path / "streamlit-nav.log", secrets) as url, \
            chromium() as d:
        open_page(d, url, path, marker)  # the server's first request
        links = wait_for(d, lambda d: [a.text.strip().splitlines()[-1] for a in d.find_elements(
            By.CSS_SELECTOR, "[data-testid=stSidebarNav] a")] or None, 60, "the page list")
        # (each link's text is its icon's name, then its title: the title is the last line)
        assert links[0] == "Home" and "app" not in links, links
        assert {"Predict", "Train", "Evaluate", "Triage"} <= set(links[1:]), links
        assert d.current_url.rstrip("/").endswith(path)  # still on the page asked for
