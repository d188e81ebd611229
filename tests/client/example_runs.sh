# example_runs.sh, sourced by pkgconfig_example.sh and install_example.sh:
# example_runs SRC LIBDIR OUT builds SRC with `cc $(pkg-config --cflags --libs
# keybroker)` (pkg-config set up by the caller) into OUT/example, checks that it
# loads libkeybroker.so.0 from LIBDIR, and runs it against a missing broker,
# which it must report.
example_runs() {
	src=$1 libdir=$2 out=$3
	# shellcheck disable=SC2046
	${CC:-cc} -Wall -Wextra -Werror "$src" $(pkg-config --cflags --libs keybroker) -o "$out/example"
	LD_LIBRARY_PATH="$libdir" ldd "$out/example" | grep -q "libkeybroker.so.0 => $libdir/" ||
		{ echo "example does not load $libdir/libkeybroker.so.0:"; LD_LIBRARY_PATH="$libdir" ldd "$out/example"; exit 1; }
	got=$(LD_LIBRARY_PATH="$libdir" KEYBROKER_SOCKET=/nonexistent/kb.sock "$out/example" aes 2>&1) && rc=0 || rc=$?
	case "$rc:$got" in
	"1:connect: io_error: cannot connect to /nonexistent/kb.sock"*) ;;
	*) echo "example exited $rc: $got"; exit 1 ;;
	esac
}
