"""The browser test reuses the AppTest tests' tiny world builder (tests/app/dashboard_env.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
