#!/bin/sh
# pkgconfig_example.sh BUILD_ROOT EXAMPLE_C: build EXAMPLE_C from the build
# tree as docs/libkeybroker.md says: PKG_CONFIG_PATH=BUILD_ROOT/meson-uninstalled
# (keybroker-uninstalled.pc), `cc example.c $(pkg-config --cflags --libs
# keybroker)`, then run it with LD_LIBRARY_PATH=BUILD_ROOT/client and check
# that it ran on this build's libkeybroker (it reports the missing broker).
set -eu
# shellcheck source-path=SCRIPTDIR source=example_runs.sh
. "$(dirname "$0")/example_runs.sh"
root=$1 src=$2
export PKG_CONFIG_PATH="$root/meson-uninstalled"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
example_runs "$src" "$root/client" "$out"
