#!/bin/sh
# skip.sh REASON: stands for a test whose program or package this machine
# lacks, so the test is still registered and counted: it says why and exits
# 77, which scripts/test counts as skipped and fails the run (unless the
# registration declares the test optional, tests/meson.build).
echo "SKIP: $1"
exit 77
