#!/usr/bin/env bash
# Filters `go test -v` output for people: the whole output goes to the log
# file given (default bin/test.log); the terminal gets package results,
# test results, failure messages and the figures tests print as
# `name: key=value ...` lines.
set -euo pipefail
log=${1:-bin/test.log}
mkdir -p "$(dirname "$log")"
echo "full test output: $log" >&2
tee "$log" | grep -E --line-buffered \
  -e '^(ok|FAIL|panic:)' \
  -e '^ *--- (PASS|FAIL|SKIP)' \
  -e '^ +[^ ]+_test\.go:[0-9]+:' \
  -e '^[a-z][a-z0-9_-]*: .*[a-z0-9_]+=[^ ]+' || true
