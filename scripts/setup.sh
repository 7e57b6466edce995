#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs o1jax with its pinned dependencies.
#   bash scripts/setup.sh          runtime dependencies
#   bash scripts/setup.sh --test   plus the test-only ones (pytest, torch CPU, transformers)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
if [ "${1:-}" = "--test" ]; then
  # torch first, pinned, so nothing later pulls a CUDA build.
  .venv/bin/python -m pip install --quiet torch==2.13.0
  .venv/bin/python -m pip install --quiet -r requirements-test.txt
fi
.venv/bin/python -m pip install --quiet --no-deps -e .
