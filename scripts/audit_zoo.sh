#!/usr/bin/env bash
# `harness audit` of the whole imported zoo on both stacks, merged into reports/zoo-audit.md.
# Each stack's PaddleDetection is its pinned commit's archive (default: the trimmed fixtures in
# $HARNESS_SHARED/fixtures, which hold configs/ and ppdet/), extracted to a temporary directory; a directory
# without .git has no commit of its own, so the archive's (`git get-tar-commit-id`, checked against the zoo's pin)
# is written into each stack's JSON before the merge. Needs the stacks' virtualenvs (.tox/current, .tox/previous:
# `tox -e current,previous --notest`). About 4-5 minutes per stack on 2 cores.
#   usage: scripts/audit_zoo.sh [ZOO]
set -euo pipefail
cd "$(dirname "$0")/.."
zoo=${1:-zoos/paddledetection.yaml}
fixtures=${HARNESS_SHARED:-../shared}/fixtures
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
declare -A commits=([current]=666f597fd00d3157e84dd9fb2dd3f40bf9918ebc [previous]=7d6dc4079379b7827351c511f76e23ccea4910fd)
for stack in current previous; do
  commit=${commits[$stack]}
  archive=$fixtures/PaddleDetection-$commit.tar.gz
  [ "$(git get-tar-commit-id < <(gzip -dc "$archive"))" = "$commit" ] || { echo "$archive is not of $commit" >&2; exit 2; }
  tar -xzf "$archive" -C "$tmp"
  PYTHONPATH=$PWD HARNESS_STACK=$stack KMP_BLOCKTIME=0 ".tox/$stack/bin/python" -m harness audit --zoo "$zoo" \
    --stack "$stack" --ppdet-root "$tmp/PaddleDetection-$commit" --json "$tmp/audit-$stack.json" > /dev/null
  python3 - "$tmp/audit-$stack.json" "$commit" <<'PY'
import json, sys
path, commit = sys.argv[1], sys.argv[2]
data = json.load(open(path))
data["tree"]["commit"] = commit  # the archive's own commit id (checked above); the tree id is hashed from the files
json.dump(data, open(path, "w"))
PY
done
PYTHONPATH=$PWD .tox/current/bin/python -m harness audit --merge "$tmp/audit-current.json" "$tmp/audit-previous.json" \
  --out reports/zoo-audit.md
