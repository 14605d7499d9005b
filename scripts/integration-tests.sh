#!/usr/bin/env bash
# Integration tests with the real peers: a private Postfix, miltertest, the built binary.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d tests ] && ls tests/test_*.py >/dev/null 2>&1; then
  python3 -m pytest -q tests
else
  echo "no integration tests yet"
fi
