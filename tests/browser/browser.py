"""What the real-browser tests share: `streamlit run app.py` on 127.0.0.1 in a subprocess, Debian's
headless Chromium through Selenium + chromedriver (no browser download anywhere), and waits on
what the page shows. Importing this skips the test module, saying why, without them."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SLOW = 300  # seconds: the first prediction imports timm and loads the model on a busy 2-core box

if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install "
                "chromium chromium-driver; .ci/run does)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -e '.[test]')")
from selenium.common.exceptions import (NoSuchElementException,  # noqa: E402
                                        StaleElementReferenceException)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402,F401 (for the tests)
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_app(env: dict, log_path: Path, secrets: Path, port: int | None = None):
    """The dashboard on http://127.0.0.1:PORT (yields that URL) with `env` added and its
    secrets read from `secrets` only (never the checkout's .streamlit/secrets.toml)."""
    port = port or free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port),
         "--secrets.files", str(secrets)],
        cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"streamlit exited ({proc.returncode}): "
                                     f"{log_path.read_text()[-2000:]}")
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise AssertionError("streamlit did not answer on its health endpoint in 120 s")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        if os.environ.get("CXR_E2E_KEEP"):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(log_path, ARTIFACTS / log_path.name)


@contextlib.contextmanager
def chromium(*args: str):
    """Headless Chromium; `args` are extra command-line switches."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="cxr-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-extensions",
                f"--user-data-dir={profile}", "--window-size=1440,1000", *args):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield d
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


def body(d) -> str:
    return d.find_element(By.TAG_NAME, "body").text


def main_text(d) -> str:
    """The page's main column (no sidebar)."""
    found = d.find_elements(By.CSS_SELECTOR, "[data-testid=stMain]")
    return found[0].text if found else ""


def wait_for(d, what, timeout: float = 60, message: str = ""):
    """Wait until what(d) is truthy; a failure says what the page showed. An element that goes
    stale while the page is replaced (a redirect, a rerun) is looked for again."""
    try:
        return WebDriverWait(d, timeout, poll_frequency=0.5, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException)).until(lambda d: what(d))
    except Exception as exc:
        shot(d, "failure")
        raise AssertionError(f"timed out after {timeout}s waiting for {message or what}; page "
                             f"{d.current_url} text:\n{body(d)[-3000:]}") from exc


def wait_text(d, text: str, timeout: float = 60):
    return wait_for(d, lambda d: text in body(d), timeout, repr(text))


def wait_idle(d, timeout: float = SLOW):
    """Streamlit shows its status widget while a script run is in progress."""
    time.sleep(0.5)
    wait_for(d, lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-testid=stStatusWidget]"),
             timeout, "the script run to finish")


def shot(d, name: str) -> Path:
    """Screenshot of the whole page: the window is made as tall as the main column."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = d.execute_script(
        "const m = document.querySelector('[data-testid=stMain]');"
        "return m ? m.scrollHeight : document.body.scrollHeight;")
    d.set_window_size(1440, max(900, min(int(height) + 40, 4000)))
    time.sleep(1.0)  # let plotly re-layout to the new size
    path = ARTIFACTS / f"{name}.png"
    d.save_screenshot(str(path))
    d.set_window_size(1440, 1000)
    return path


def open_page(d, server: str, path: str, marker: str):
    d.get(f"{server}/{path}")
    wait_text(d, marker, SLOW)
    wait_idle(d)


def buttons(d, label: str) -> list:
    """Streamlit buttons (and form submit buttons) whose label is `label`."""
    return d.find_elements(By.XPATH, f"//button[.//p[text()='{label}']]")


def choose(d, label: str, option: str):
    """Pick `option` in the st.selectbox labelled `label`."""
    box = wait_for(d, lambda d: [b for b in d.find_elements(By.CSS_SELECTOR,
                                                            "[data-testid=stSelectbox]")
                                 if b.find_elements(By.CSS_SELECTOR,
                                                    f"input[aria-label='{label}']")],
                   SLOW, f"the {label!r} selectbox")[0]
    box.find_element(By.CSS_SELECTOR, "button[aria-label=Open]").click()
    wait_for(d, lambda d: [o for o in d.find_elements(By.CSS_SELECTOR, "[role=option]")
                           if o.text == option], 20, f"option {option!r}")[0].click()
    wait_for(d, lambda d: box.find_element(By.CSS_SELECTOR, "input").get_attribute("value")
             == option, 20, f"{label} = {option!r}")
    wait_idle(d)


def top_of(d, css: str, text: str | None = None) -> float:
    """The page y of the first element matching css (and containing text)."""
    found = [e for e in d.find_elements(By.CSS_SELECTOR, css) if text is None or text in e.text]
    assert found, f"no {css} element" + (f" with {text!r}" if text else "")
    return found[0].location["y"]


def upload(d, film: Path) -> None:
    """Upload a film on Predict and wait until its results, Grad-CAM overlay included, are in."""
    d.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(film))
    wait_for(d, lambda d: film.name in body(d), SLOW, f"{film.name} to be uploaded")
    wait_text(d, ": p = ", SLOW)  # the Grad-CAM overlay's caption
    wait_idle(d)


def case_header(d) -> str:
    return next(h.text for h in d.find_elements(By.CSS_SELECTOR, "h3")
                if h.text.startswith("Case "))
