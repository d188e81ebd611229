#!/bin/sh
# cli_expect.sh RC TEXT PROGRAM [ARGS...]: run PROGRAM with stdin from
# /dev/null; pass if it exits with RC and its output (stdout and stderr
# together) contains TEXT (a fixed string; empty matches anything).
# With KB_TTY=1 stdout is a terminal (through script(1)).
rc=$1 text=$2
shift 2
if [ "${KB_TTY:-}" = 1 ]; then
	# script(1) runs a shell command line; quote each argument for it.
	cmd=""
	for a in "$@"; do
		cmd="$cmd '$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'"
	done
	out=$(script -qec "$cmd < /dev/null" /dev/null 2>&1)
	got=$?
else
	out=$("$@" < /dev/null 2>&1)
	got=$?
fi
if [ "$got" -ne "$rc" ]; then
	printf 'expected exit %s, got %s; output:\n%s\n' "$rc" "$got" "$out"
	exit 1
fi
case $out in
*"$text"*) exit 0 ;;
esac
printf 'output lacks "%s":\n%s\n' "$text" "$out"
exit 1
