#!/bin/sh
# run_go.sh SRC BUILD TEST: runs one test of client/go (go test -run '^TEST$')
# offline: no proxy, no toolchain download, caches in the build tree (so it
# works as root in CI without a network or a $HOME). Skips (77) without go.
set -eu
src=$1 build=$2 name=$3
command -v go >/dev/null || { echo "SKIP: go is not installed (scripts/packages/clients.txt: golang-go)"; exit 77; }
export GOPATH="$build/tests/clients/gopath" GOCACHE="$build/tests/clients/gocache"
export GOPROXY=off GOTOOLCHAIN=local GOFLAGS= GO111MODULE=on GOTMPDIR=
export KB_FIX="$src/tests/clients/kbfix.py"
mkdir -p "$GOPATH" "$GOCACHE"
cd "$src/client/go"
if [ "$name" = vet ]; then
	exec go vet ./...
fi
exec go test -count=1 -v -run "^$name\$" ./...
