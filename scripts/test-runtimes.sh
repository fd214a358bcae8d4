#!/usr/bin/env bash
# Runs the built test suite on each maintained Node line, and the smoke run on Bun and Deno,
# each runtime had from the npm registry (scripts/runtime.sh). Run `npm run build` first.
#
#   scripts/test-runtimes.sh              # node 22, 24, 26, then bun and deno
#   scripts/test-runtimes.sh 24 deno      # only those
#
# Prints one line per runtime with its result and time, and exits 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(22 24 26 bun deno)
[ -f dist/test/smoke/runtimes.js ] || { echo "test-runtimes.sh: no build; run npm run build first" >&2; exit 2; }

summary=()
status=0
for target in "${targets[@]}"; do
  start=$SECONDS
  if [[ "$target" =~ ^[0-9]+$ ]]; then
    exe=$(scripts/runtime.sh node "$target") || { summary+=("node $target: could not be installed"); status=1; continue; }
    label="node $("$exe" --version)"
    echo "=== the test suite on $label"
    "$exe" scripts/run-tests.mjs
  else
    exe=$(scripts/runtime.sh "$target") || { summary+=("$target: could not be installed"); status=1; continue; }
    label="$target $("$exe" --version | head -n 1)"
    echo "=== the smoke run on $label"
    case "$target" in
      deno) "$exe" run -A dist/test/smoke/runtimes.js ;;
      *) "$exe" dist/test/smoke/runtimes.js ;;
    esac
  fi
  code=$?
  result=passed
  [ $code -eq 0 ] || { result="FAILED (exit $code)"; status=1; }
  summary+=("$label: $result in $((SECONDS - start)) s")
done

echo "=== runtimes"
printf '%s\n' "${summary[@]}"
exit $status
