#!/usr/bin/env bash
# Nightly reproduction of the zoo on a GPU machine: one shard (or all) of `harness run` (README: "Nightly on
# a GPU runner"). Sets up its virtualenv once (paddle's GPU build + the harness), fetches with --locked,
# then verifies with one model per GPU; a killed run is resumed by running this again.
#   scripts/nightly.sh                                   the whole zoo on this machine's GPUs
#   scripts/nightly.sh --shard 2/3 --run-id "$RUN_ID"    one of three machines
# Environment:
#   PADDLE_GPU_SPEC    paddle's GPU requirement (default: paddlepaddle-gpu==3.3.1)
#   PADDLE_GPU_INDEX   the package index serving that wheel for this machine's CUDA (paddle's own index;
#                      PyPI's paddlepaddle-gpu stops at 2.6.2). Empty: pip's configured index.
#   HARNESS_CACHE      persistent artifact cache (weights, PaddleDetection source, COCO val2017: ~1.6 GB)
#   HARNESS_GPUS       GPUs to use, one model each (default: all)
#   HARNESS_TIMEOUT    per-model timeout in seconds (default: 14400)
#   HARNESS_OUT        run directory (default: runs/nightly-<UTC date>)
#   HARNESS_LOCKED     --locked (default) refuses artifacts without a sha256 in zoo.lock; set empty to allow
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HARNESS_VENV:-.venv-gpu}
SPEC=${PADDLE_GPU_SPEC:-paddlepaddle-gpu==3.3.1}
OUT=${HARNESS_OUT:-runs/nightly-$(date -u +%Y%m%d)}
want=$( (cat pyproject.toml constraints/current.txt; echo "$SPEC") | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.installed" 2>/dev/null)" != "$want" ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  if [ -n "${PADDLE_GPU_INDEX:-}" ]; then
    "$VENV/bin/python" -m pip install --quiet "$SPEC" --index-url "$PADDLE_GPU_INDEX"
  else
    "$VENV/bin/python" -m pip install --quiet "$SPEC"
  fi
  "$VENV/bin/python" -c "import paddle; paddle.utils.run_check()"
  # the ppdet extra does not name paddle: pip keeps the GPU build installed above
  PIP_CONSTRAINT=constraints/current.txt "$VENV/bin/python" -m pip install --quiet -e ".[ppdet,report]"
  PIP_CONSTRAINT=constraints/current.txt "$VENV/bin/python" -m pip install --quiet --no-deps imgaug==0.4.0 paddleslim==2.6.0
  echo "$want" > "$VENV/.installed"
fi
locked=${HARNESS_LOCKED---locked}
"$VENV/bin/harness" fetch --dataset $locked
exec "$VENV/bin/harness" run --device gpu --gpus "${HARNESS_GPUS:-all}" --timeout "${HARNESS_TIMEOUT:-14400}" \
  --resume --out "$OUT" $locked "$@"
