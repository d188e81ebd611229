#!/bin/sh
# doc_example.sh DOC EXAMPLE_C: the first ```c block of DOC must be EXAMPLE_C,
# byte for byte, so the program the tests build is the one the doc shows.
set -eu
awk '/^```c$/ && !done { on = 1; next } /^```$/ && on { on = 0; done = 1 } on' "$1" |
	diff -u "$2" - || { echo "$1: the example differs from $2; copy it over"; exit 1; }
