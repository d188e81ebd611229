#!/bin/sh
# install_example.sh BUILD_ROOT EXAMPLE_C: the installed way of
# docs/libkeybroker.md, into a staging directory (DESTDIR) rather than the
# system: `meson install --destdir`, then pkg-config on the staged
# keybroker.pc (PKG_CONFIG_SYSROOT_DIR), `cc`, and a run on the staged
# libkeybroker.so (it reports the missing broker).
set -eu
root=$1 src=$2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$root" --no-rebuild --destdir "$stage" >"$stage.log" 2>&1 ||
	{ cat "$stage.log"; rm -f "$stage.log"; exit 1; }
rm -f "$stage.log"
pc=$(find "$stage" -name keybroker.pc)
[ -n "$pc" ] || { echo "meson install put no keybroker.pc under $stage"; exit 1; }
export PKG_CONFIG_SYSROOT_DIR="$stage" PKG_CONFIG_PATH="$(dirname "$pc")"
libdir=$(pkg-config --variable=libdir keybroker)  # under the sysroot already
# shellcheck disable=SC2046
${CC:-cc} -Wall -Wextra -Werror "$src" $(pkg-config --cflags --libs keybroker) -o "$stage/example"
LD_LIBRARY_PATH="$libdir" ldd "$stage/example" | grep -q "libkeybroker.so.0 => $libdir/" ||
	{ echo "example does not load the staged library:"; LD_LIBRARY_PATH="$libdir" ldd "$stage/example"; exit 1; }
got=$(LD_LIBRARY_PATH="$libdir" KEYBROKER_SOCKET=/nonexistent/kb.sock "$stage/example" aes 2>&1) && rc=0 || rc=$?
case "$rc:$got" in
"1:connect: io_error: cannot connect to /nonexistent/kb.sock"*) ;;
*) echo "example exited $rc: $got"; exit 1 ;;
esac
