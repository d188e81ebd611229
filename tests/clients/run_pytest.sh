#!/bin/sh
# run_pytest.sh SRC TEST: runs one test of test_python.py with Debian's pytest.
# Skips (77) without it.
set -eu
src=$1 name=$2
command -v pytest-3 >/dev/null || { echo "SKIP: pytest-3 is not installed (scripts/packages/clients.txt: python3-pytest)"; exit 77; }
exec pytest-3 -v -p no:cacheprovider "$src/tests/clients/test_python.py::$name"
