#!/usr/bin/env bash
# The main job, end to end and offline (README, first command). Sets up .venv-<stack> with the pinned
# stack (paddle CPU build + the harness), then runs `harness rehearse`: a mini-zoo built from the real
# configs (random-initialised weights, synthetic COCO images, the pinned PaddleDetection archive) is
# served on 127.0.0.1 and the harness runs against it. Random weights: AP ≈ 0 is expected.
#   scripts/rehearse.sh                          current stack, ./rehearsal
#   HARNESS_STACK=previous scripts/rehearse.sh   paddle 2.6.2 + PaddleDetection v2.7.0
#   scripts/rehearse.sh --dir /tmp/r --images 8  options go to `harness rehearse`
set -euo pipefail
cd "$(dirname "$0")/.."
STACK=${HARNESS_STACK:-current}
VENV=.venv-$STACK
PY=${PYTHON:-python3}
[ -f "constraints/$STACK.txt" ] || { echo "no constraints/$STACK.txt: HARNESS_STACK must name a stack" >&2; exit 2; }
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "need Python >= 3.11 (set PYTHON=...)" >&2; exit 2; }
want=$(cat pyproject.toml "constraints/$STACK.txt" | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.installed" 2>/dev/null)" != "$want" ]; then
  echo "setting up $VENV (paddle + PaddleDetection's runtime dependencies, pinned by constraints/$STACK.txt)" >&2
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  PIP_CONSTRAINT="constraints/$STACK.txt" "$VENV/bin/python" -m pip install --quiet -e ".[ppdet,cpu]"
  PIP_CONSTRAINT="constraints/$STACK.txt" "$VENV/bin/python" -m pip install --quiet --no-deps imgaug==0.4.0 paddleslim==2.6.0
  echo "$want" > "$VENV/.installed"
fi
HARNESS_STACK=$STACK exec "$VENV/bin/harness" rehearse "$@"
