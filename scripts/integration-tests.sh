#!/usr/bin/env bash
# Integration tests with the real peers: a private Postfix, miltertest, the built binary.
#   scripts/integration-tests.sh [pytest args]     e.g. -k overload, -x, -v, IntegrationTests/test_overload.py
# BREAKWATER_BIN names the binary under test (default .build/debug/breakwater, what `make test` builds).
# Here a missing peer (postfix, miltertest, the binary) fails the run instead of skipping its tests;
# set BREAKWATER_REQUIRE_PEERS=0 to let them skip. BW_KEEP_TMP=1 keeps the logs and Postfix instances.
set -euo pipefail
cd "$(dirname "$0")/.."
export BREAKWATER_REQUIRE_PEERS="${BREAKWATER_REQUIRE_PEERS:-1}"
export BREAKWATER_BIN="${BREAKWATER_BIN:-.build/debug/breakwater}"
if ! ls IntegrationTests/test_*.py >/dev/null 2>&1; then
  echo "no integration tests yet"
  exit 0
fi
if ! python3 -c 'import pytest' 2>/dev/null; then
  echo "integration-tests: python3-pytest is missing (scripts/setup.sh --test installs it)" >&2
  exit 1
fi
# Test paths given on the command line replace the default, the whole IntegrationTests/ directory.
paths=(IntegrationTests)
for a in "$@"; do [[ "$a" != -* && -e "${a%%::*}" ]] && paths=(); done
exec python3 -m pytest -q -p no:cacheprovider "${paths[@]}" "$@"
