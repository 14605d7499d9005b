#!/usr/bin/env bash
# The Swift formatter, with the repository's configuration (.swift-format at the root).
#   scripts/format.sh           formats every Swift file in place (Sources, Tests, Package.swift)
#   scripts/format.sh --check   changes nothing; exits 1 with the findings if a file is not as the
#                               formatter would write it (CI runs this: make format-check)
# swift-format ships with the toolchain: SWIFT (as in the Makefile) or `swift` on PATH, else /opt/swift.
set -euo pipefail
cd "$(dirname "$0")/.."

SWIFT=${SWIFT:-$(command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)}
PATHS=(Sources Tests Package.swift)

case "${1:-}" in
    "")
        "$SWIFT" format format --in-place --parallel --recursive "${PATHS[@]}"
        ;;
    --check)
        findings=$(mktemp)
        trap 'rm -f "$findings"' EXIT
        if "$SWIFT" format lint --strict --parallel --no-color-diagnostics --recursive "${PATHS[@]}" 2>"$findings"; then
            exit 0
        fi
        cat "$findings" >&2
        n=$(grep -c ': error: ' "$findings" || true)
        echo "format check failed: $n finding(s) above. Run 'make format' (scripts/format.sh) to fix the layout;" \
            "a finding it leaves (a name, an end-of-line comment past the line length) needs a hand edit." >&2
        exit 1
        ;;
    *)
        echo "usage: scripts/format.sh [--check]" >&2
        exit 2
        ;;
esac
