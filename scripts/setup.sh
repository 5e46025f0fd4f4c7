#!/usr/bin/env bash
# Install activeadv into ./.venv on a fresh machine (idempotent: re-running is quick).
# torch: the pinned CPU wheel (2.13.0) when this machine has it on disk; otherwise pip's default
# build. Set ACTIVEADV_TORCH="torch==X" to choose another (e.g. a CUDA build on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "${ACTIVEADV_TORCH:-torch==2.13.0}" 2>&1 | grep -v "^WARNING: Location" || true
fi
.venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import activeadv, torch; print(f'activeadv {activeadv.__version__} ready (torch {torch.__version__}) in .venv')"
