#!/usr/bin/env bash
# Creates .venv (if absent) and installs the project with its pinned dependencies.
# Re-runs are cheap: pip is skipped while pyproject.toml is unchanged since the last install.
# Usage: scripts/setup-env.sh [extra]   (extra: "test" also installs the test dependencies)
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Python >= 3.11 is required (found $("$PY" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# The stamp holds pyproject's hash and the extra installed with it; a test install also
# satisfies a plain one (run.sh after test.sh installs nothing).
stamp=".venv/.cxr-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have=""; have_extra=""
[ -f "$stamp" ] && read -r have have_extra < "$stamp"
if [ "${have:-}" != "$want" ] || { [ -n "$extra" ] && [ "${have_extra:-}" != "$extra" ]; }; then
  echo "Installing dependencies into .venv (torch comes from the local wheel cache where present)..."
  spec="."; [ -n "$extra" ] && spec=".[$extra]"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
  echo "$want $extra" > "$stamp"
fi
