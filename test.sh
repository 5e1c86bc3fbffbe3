#!/usr/bin/env bash
# Sets up .venv, runs ruff, then the whole test suite (CPU only, tiny data; about 10 minutes on
# 2 cores).
# Extra arguments go to pytest, e.g. ./test.sh tests/data -x
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup-env.sh test
export HF_HUB_OFFLINE=1   # timm must never wait on the model hub
.venv/bin/ruff check .    # the linter first (a second; pyproject's [tool.ruff]), then the tests
exec .venv/bin/python -m pytest "$@"
