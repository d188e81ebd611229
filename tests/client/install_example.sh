#!/bin/sh
# install_example.sh BUILD_ROOT EXAMPLE_C: the installed way of
# docs/libkeybroker.md, into a staging directory (DESTDIR) rather than the
# system: `meson install --destdir`, then pkg-config on the staged
# keybroker.pc (PKG_CONFIG_SYSROOT_DIR), `cc`, and a run on the staged
# libkeybroker.so (it reports the missing broker).
set -eu
# shellcheck source-path=SCRIPTDIR source=example_runs.sh
. "$(dirname "$0")/example_runs.sh"
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
example_runs "$src" "$libdir" "$stage"
