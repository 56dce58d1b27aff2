#!/usr/bin/env bash
# The test command (README): installs tox into .venv-tools, then runs the suite on every pinned stack
# (tox builds one virtualenv per stack from constraints/<stack>.txt) and ruff, the stacks at the same time
# (tox run-parallel: each env's output is printed when it finishes).
#   scripts/test.sh                     all stacks + lint
#   TOX_ENVS=current scripts/test.sh -k cache     one stack, a subset of tests
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "need Python >= 3.11 (set PYTHON=...)" >&2; exit 2; }
[ -x .venv-tools/bin/tox ] || { "$PY" -m venv .venv-tools && .venv-tools/bin/pip install --quiet 'tox>=4.11,<5'; }
exec .venv-tools/bin/tox run-parallel --parallel all --parallel-no-spinner -e "${TOX_ENVS:-current,previous,lint}" -- "$@"
