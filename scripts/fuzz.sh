#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/, declared in Package.swift only when BREAKWATER_FUZZ=1) with
# AddressSanitizer into .build-fuzz, then runs each for FUZZ_SECONDS (default 60) on a working
# corpus (.build-fuzz/corpus/<target>, kept between runs) seeded from Fuzz/corpus/<target>.
# Fails (exit 1) on any finding: a crash, a broken invariant (fatalError), an ASan report, a leak,
# a timeout or out-of-memory; the input is left in .build-fuzz/findings/<target>/.
#   scripts/fuzz.sh [target...]     targets: assembly wave config signature control http (default all)
#   FUZZ_SECONDS=600 scripts/fuzz.sh wave
set -uo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-$(command -v swift || echo /opt/swift/usr/bin/swift)}
seconds=${FUZZ_SECONDS:-60}
scratch=.build-fuzz
all=(assembly wave config signature control http)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

product() {
    case $1 in
        assembly) echo FuzzAssembly ;; wave) echo FuzzWave ;; config) echo FuzzConfig ;;
        signature) echo FuzzSignature ;; control) echo FuzzControl ;; http) echo FuzzHTTP ;;
        *) echo "unknown fuzz target '$1' (one of: ${all[*]})" >&2; exit 2 ;;
    esac
}

build() {
    # One -sanitize= flag: swiftc keeps only the last one given, and SwiftPM passes its --sanitize
    # options in a varying (hashed) order, so `--sanitize=fuzzer --sanitize=address` builds some
    # modules without coverage and others without ASan. ld.gold warns about every ASan check symbol
    # it cannot export: noise, not ours.
    if ! BREAKWATER_FUZZ=1 "$SWIFT" build --scratch-path "$scratch" --product "$1" \
            --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address >"$scratch.$1.build.log" 2>&1; then
        grep -v 'ld.gold: warning: Cannot export local symbol' "$scratch.$1.build.log" | tail -30
        echo "fuzz: building $1 failed" >&2
        exit 1
    fi
    rm -f "$scratch.$1.build.log"
}

for t in "${targets[@]}"; do product "$t" >/dev/null || exit 2; done
for t in "${targets[@]}"; do build "$(product "$t")"; done
# Both instrumentations reached our code (see build): ASan here, coverage checked at each run.
if [ "$(nm "$scratch/debug/BreakwaterCore.build/Config.swift.o" | grep -c __asan_report_load)" = 0 ]; then
    echo "fuzz: BreakwaterCore was built without AddressSanitizer" >&2
    exit 1
fi

failed=()
for t in "${targets[@]}"; do
    p=$(product "$t")
    corpus=$scratch/corpus/$t findings=$scratch/findings/$t log=$scratch/logs/$t.log
    mkdir -p "$corpus" "$findings" "$(dirname "$log")"
    # SWIFT_BACKTRACE=enable=no: Swift's own crash backtracer would symbolicate for minutes on a finding
    # (libFuzzer prints its own stack). Leaks are findings (detect_leaks, on by default under ASan).
    SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
        nice -n "${FUZZ_NICE:-10}" "$scratch/debug/$p" \
        -max_total_time="$seconds" -max_len="${FUZZ_MAX_LEN:-16384}" -rss_limit_mb=2048 -timeout=25 \
        -print_final_stats=1 -artifact_prefix="$findings/" "$corpus" "Fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
    if ! grep -q '^INFO: Loaded 1 modules' "$log"; then
        failed+=("$t")
        echo "fuzz $t: the binary has no coverage instrumentation"
    elif [ $rc -ne 0 ]; then
        failed+=("$t")
        echo "fuzz $t: FINDING (exit $rc) after ${execs:-?} executions; log $log, input(s):"
        ls -1 "$findings" | sed "s|^|  $findings/|"
        grep -E 'Fatal error|ERROR: |SUMMARY' "$log" | head -5 | sed 's/^/  /'
    else
        echo "fuzz $t: ok, ${execs:-?} executions in ${seconds} s, $cov, corpus $(ls "$corpus" | wc -l) inputs"
    fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: findings in: ${failed[*]}" >&2; exit 1; }
