#!/usr/bin/env bash
# All benchmarks, one command (README: "Benchmarks"). Runs the rehearsal first if ./rehearsal is missing,
# then writes reports/bench-*.md. About 35 minutes on 2 cores (the scoring benchmarks dominate).
#   scripts/bench.sh                 all of them
#   scripts/bench.sh cli scoring     a selection: cli, scoring, scoring_parallel, eval, parallel, timing,
#                                    checkpoint, site
set -euo pipefail
cd "$(dirname "$0")/.."
STACK=${HARNESS_STACK:-current}
PY=.venv-$STACK/bin/python
[ -d rehearsal ] && [ -x "$PY" ] || scripts/rehearse.sh
which=${*:-cli scoring scoring_parallel eval parallel timing checkpoint site}
for b in $which; do
  echo "== scripts/bench_$b.py" >&2
  out=(); [ "$b" = site ] && out=(--year --out reports/bench-site.md)
  "$PY" "scripts/bench_$b.py" "${out[@]}"
done
