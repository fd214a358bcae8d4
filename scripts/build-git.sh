#!/usr/bin/env bash
# Builds the Git that the live tests talk to: `git` (with its builtin filesystem monitor) and
# Git's `t/helper/test-tool` (its Simple-IPC C client and test daemon), from Git's source at
# a pinned tag, into the layout test/git-build.ts reads (OUT/bin/git, OUT/helper/test-tool).
# Use: scripts/build-git.sh OUT [TAG]; then SIMPLE_IPC_GIT_DIR=OUT npm test. GIT_SOURCE names
# another clone URL (a mirror, or file:///path/to/git.git) to build from.
# Needs a C compiler, make, and zlib's headers; no curl, gettext, Perl or Python.
set -euo pipefail
out=${1:?usage: scripts/build-git.sh OUT [TAG]}
tag=${2:-v2.55.0}
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git clone --quiet --depth 1 --branch "$tag" "${GIT_SOURCE:-https://github.com/git/git.git}" "$src"
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
make -C "$src" -j"$jobs" NO_CURL=1 NO_GETTEXT=1 NO_TCLTK=1 NO_PERL=1 NO_PYTHON=1 \
  NO_EXPAT=1 NO_OPENSSL=1 git t/helper/test-tool >/dev/null
mkdir -p "$out/bin" "$out/helper"
cp "$src/git" "$out/bin/git"
cp "$src/t/helper/test-tool" "$out/helper/test-tool"
GIT_EXEC_PATH="$out/bin" "$out/bin/git" --version
