#!/bin/sh
# pkgconfig_example.sh BUILD_ROOT EXAMPLE_C: build EXAMPLE_C from the build
# tree as docs/libkeybroker.md says: PKG_CONFIG_PATH=BUILD_ROOT/meson-uninstalled
# (keybroker-uninstalled.pc), `cc example.c $(pkg-config --cflags --libs
# keybroker)`, then run it with LD_LIBRARY_PATH=BUILD_ROOT/client and check
# that it ran on this build's libkeybroker (it reports the missing broker).
set -eu
root=$1 src=$2
export PKG_CONFIG_PATH="$root/meson-uninstalled"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# shellcheck disable=SC2046
${CC:-cc} -Wall -Wextra -Werror "$src" $(pkg-config --cflags --libs keybroker) -o "$out/example"
LD_LIBRARY_PATH="$root/client" ldd "$out/example" | grep -q "libkeybroker.so.0 => $root/client/" ||
	{ echo "example does not load $root/client/libkeybroker.so.0:"; LD_LIBRARY_PATH="$root/client" ldd "$out/example"; exit 1; }
got=$(LD_LIBRARY_PATH="$root/client" KEYBROKER_SOCKET=/nonexistent/kb.sock "$out/example" aes 2>&1) && rc=0 || rc=$?
case "$rc:$got" in
"1:connect: io_error: cannot connect to /nonexistent/kb.sock"*) ;;
*) echo "example exited $rc: $got"; exit 1 ;;
esac
