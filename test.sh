#!/usr/bin/env bash
# Sets up .venv and runs the whole test suite (CPU only, tiny data; about 10 minutes on 2 cores).
# Extra arguments go to pytest, e.g. ./test.sh tests/data -x
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup-env.sh test
export HF_HUB_OFFLINE=1   # timm must never wait on the model hub
exec .venv/bin/python -m pytest "$@"
