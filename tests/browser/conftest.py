"""The browser tests reuse the AppTest tests' tiny world builder (tests/app/dashboard_env.py)
and share browser.py (the app in a subprocess, headless Chromium, waits)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
