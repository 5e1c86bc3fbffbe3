"""Two dashboard replicas on one PostgreSQL worklist (issue 20 item 5): two real `streamlit run
app.py` processes on two ports, CXR_WORKLIST naming the same database. A decision recorded
through one replica's Triage page in a real browser (or by the library, as `cxr` on another
machine would) is in the other's Triage table on its next page load, read over Streamlit's own
WebSocket as the browser would receive it (tests/browser/test_host.py's client, reading on
past a run that ends early for a rerun). Skips, saying
why, without PostgreSQL or Chromium (browser.py).

    .venv/bin/python -m pytest tests/browser/test_replicas.py
"""
from __future__ import annotations

import pytest
from test_host import elements, session

import dashboard_env
from browser import (By, Keys, case_header, chromium, open_page, streamlit_app, wait_idle,
                     wait_text)


@pytest.fixture
def replicas(tmp_path, pg_url):
    """(the worklist URL, the two replicas' ports)."""
    from cxr.hashing import file_sha256
    from cxr.worklist import Worklist
    world = dashboard_env.build(tmp_path / "world", model="simple_cnn")
    Worklist(pg_url).import_predictions(world.root / "predictions.csv", "simple_cnn",
                                        file_sha256(world.run_dir / "best.pt"),
                                        images_root=world.data / "tiny" / "images")
    env = {**world.env(), "CXR_WORKLIST": pg_url}
    secrets = world.root / "no-secrets.toml"  # local mode
    with streamlit_app(env, world.root / "replica-a.log", secrets) as a, \
            streamlit_app(env, world.root / "replica-b.log", secrets) as b:
        yield pg_url, [int(u.rsplit(":", 1)[1]) for u in (a, b)]


def page_load(port: int, page: str) -> list:
    """What a new page load of `page` draws, as test_host's session reads it (a first run that
    ends early for a rerun dropped)."""
    return session(port, f"127.0.0.1:{port}", page, drop_early_run=True)


def triage_table(port: int):
    """The Triage page's case table as replica `port` sends it to a new page load."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
    frames = [convert_arrow_bytes_to_pandas_df(e.dataframe.arrow_data.data)
              for e in elements(page_load(port, "Triage"))
              if e.WhichOneof("type") == "dataframe"]
    [table] = [f for f in frames if "uncertainty" in f.columns and "reason" in f.columns]
    return table.set_index("id")


def test_a_decision_is_in_both_replicas_tables_on_their_next_load(replicas):
    from cxr.worklist import Worklist
    url, (a, b) = replicas
    before = [triage_table(port) for port in (a, b)]
    assert before[0].index.tolist() == before[1].index.tolist()  # one worklist, one queue
    assert len(before[0]) == dashboard_env.N_CASES and set(before[0]["status"]) == {"pending"}
    case_id = int(before[0].index[2])
    # a decision recorded while both replicas are serving (as a reviewer on either would)
    Worklist(url).record_decision(case_id, "disagree", reviewer="dr replica",
                                  corrected=["Effusion"])
    for port in (a, b):
        table = triage_table(port)
        assert table.loc[case_id, "status"] == "disagree", port
        assert table.loc[case_id, "reviewer"] == "dr replica", port
        others = table.drop(index=case_id)
        assert set(others["status"]) == {"pending"}, port


def test_a_decision_recorded_in_one_replicas_page_is_in_the_others_table(replicas):
    from cxr.worklist import Worklist
    url, (a, b) = replicas
    assert set(triage_table(b)["status"]) == {"pending"}
    with chromium() as d:
        open_page(d, f"http://127.0.0.1:{a}", "Triage", "Your review")
        case_id = int(case_header(d).split(":")[0].removeprefix("Case "))
        d.find_element(By.XPATH, "//label[.//p[text()='Disagree']]").click()
        d.find_element(By.CSS_SELECTOR, "textarea[aria-label='Note']").send_keys("via replica a")
        reviewer = d.find_element(By.CSS_SELECTOR, "input[aria-label='Reviewer']")
        reviewer.send_keys("dr a")
        reviewer.send_keys(Keys.TAB)  # outside the form: a rerun (it claims the case)
        wait_idle(d)
        d.find_element(By.XPATH, "//button[.//p[text()='Record decision']]").click()
        wait_text(d, f"for case {case_id} by dr a", 120)
    assert Worklist(url).history(case_id)["note"].tolist() == ["via replica a"]
    table = triage_table(b)  # the other replica, on its next load
    assert table.loc[case_id, "status"] == "disagree"
    assert table.loc[case_id, "reviewer"] == "dr a"
    assert set(table.drop(index=case_id)["status"]) == {"pending"}
