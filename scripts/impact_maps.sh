#!/usr/bin/env bash
# The impact maps of the whole imported zoo on the pinned stacks: reports/impact/<stack>-<pinned tree, 12>.json, what
# `harness run --changed-since` reads by default. Each stack's traced workers run in its virtualenv (.tox/current,
# .tox/previous: `tox -e current,previous --notest`) on the pinned commit's archive (the trimmed fixture in
# $HARNESS_SHARED/fixtures when it is there: the map is then the pin's, see docs/nightly.md#impact-map). The
# stacks build at once: a traced worker runs on one thread, so two builds share 2 cores. Progress and the run
# output: /tmp/harness-impact-<stack>.log and /tmp/harness-impact-<stack>/runs.log. Time: docs/nightly.md.
#   usage: scripts/impact_maps.sh [STACK ...]     (default: current previous)
set -euo pipefail
cd "$(dirname "$0")/.."
stacks=("$@")
[ ${#stacks[@]} -gt 0 ] || stacks=(current previous)
pids=()
for stack in "${stacks[@]}"; do
  [ -x ".tox/$stack/bin/python" ] || { echo "no .tox/$stack: run \`tox -e $stack --notest\` first" >&2; exit 2; }
  PYTHONPATH=$PWD HARNESS_STACK=$stack KMP_BLOCKTIME=0 nice ".tox/$stack/bin/python" -m harness impact build \
    --zoo zoos/paddledetection.yaml --stack "$stack" --work "/tmp/harness-impact-$stack" \
    > "/tmp/harness-impact-$stack.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then tail -n 3 "/tmp/harness-impact-${stacks[$i]}.log"
  else echo "${stacks[$i]}: the build failed (see /tmp/harness-impact-${stacks[$i]}.log)" >&2; status=1; fi
done
exit $status
