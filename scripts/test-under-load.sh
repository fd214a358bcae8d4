#!/bin/sh
# Runs the whole test suite RUNS times in a row (default 20) beside a process that burns one
# core, and stops at the first failing run. Each run's output is kept in a temp directory,
# whose path is printed. Build first (npm run build).
#
# usage: scripts/test-under-load.sh [RUNS] [extra node --test options...]
set -u
cd "$(dirname "$0")/.." || exit 2
runs=${1:-20}
[ $# -gt 0 ] && shift
logs=$(mktemp -d "${TMPDIR:-/tmp}/simple-ipc-load.XXXXXX")
node -e 'for (;;);' &
burner=$!
trap 'kill "$burner" 2>/dev/null' EXIT INT TERM
echo "logs in $logs"
i=1
while [ "$i" -le "$runs" ]; do
  start=$(date +%s)
  node --test --test-reporter=dot "$@" dist/test/*.test.js >"$logs/run-$i.log" 2>&1
  rc=$?
  echo "run $i of $runs: exit $rc in $(($(date +%s) - start)) s" | tee -a "$logs/summary"
  if [ "$rc" -ne 0 ]; then
    echo "failed: see $logs/run-$i.log"
    exit 1
  fi
  i=$((i + 1))
done
echo "$runs runs passed"
