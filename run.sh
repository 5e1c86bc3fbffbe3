#!/usr/bin/env bash
# One command from a fresh clone to the dashboard on the built-in synthetic demo:
# sets up .venv, then `cxr demo` generates data/demo if absent, starts the dashboard on
# http://127.0.0.1:8501 and trains, evaluates and triages the demo models in the background.
# Extra arguments go to `cxr demo` (see `.venv/bin/cxr demo --help`).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup-env.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/cxr demo "$@"
