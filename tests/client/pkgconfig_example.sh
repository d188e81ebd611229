#!/bin/sh
# pkgconfig_example.sh BUILD_ROOT EXAMPLE_C: compile and link EXAMPLE_C the way
# docs/libkeybroker.md says, `cc example.c $(pkg-config --cflags --libs
# keybroker)`, against the uninstalled library of this build tree
# (pkg-config prefers keybroker-uninstalled.pc when it is on the path).
set -eu
root=$1 src=$2
export PKG_CONFIG_PATH="$root/meson-uninstalled"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# shellcheck disable=SC2046
${CC:-cc} -Wall -Wextra -Werror "$src" $(pkg-config --cflags --libs keybroker) -o "$out/example"
test -x "$out/example"
