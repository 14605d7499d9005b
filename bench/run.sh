#!/usr/bin/env bash
# Runs every benchmark in bench/ that exists, one after the other (never two at once: the machine
# has two cores and the figures are only comparable inside one run).
#
#   bench/run.sh [--quick] [--rounds N] [--only NAME[,NAME]]   NAME: scan, metrics, milter, waves, reload, scale
#
# `scale` (bench/scale_bench.py on the official-scale stand-in, about 2 GiB per engine, 15-25 minutes)
# runs only when named; with --quick it uses a stand-in at 1 % of full size.
#
# Binary: $BREAKWATER_BIN, default .build/release/breakwater (`make bench` builds it as the package does,
# with the Swift runtime linked in).
# Corpus: $BENCH_CORPUS (a directory with manifest.tsv) and, for the milter benchmark,
# $BENCH_WAVE_CORPUS; otherwise bench/corpus/generate.py makes the milter benchmark's corpora once into
# out/bench/corpora, and the other benches use their own defaults (the same generator).
# Results: out/bench/ (gitignored); the milter benchmark writes out/bench/milter-TIMESTAMP/results.{md,json}.
# The milter benchmark runs every configuration in two file-system layouts, interleaved: /tmp and the
# Postfix queue on disk (as Debian 12 ships: its run directories under /var/tmp) and all on a tmpfs
# (/dev/shm). $BENCH_BASELINE_BIN (another build of breakwater, e.g. the commit before a change) adds
# it as the configuration "baseline" in the same rounds.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

quick=0
rounds=""
only="scan,metrics,milter,waves,reload"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --rounds) rounds="$2"; shift ;;
    --rounds=*) rounds="${1#*=}" ;;
    --only) only="$2"; shift ;;
    --only=*) only="${1#*=}" ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

export BREAKWATER_BIN="${BREAKWATER_BIN:-$REPO/.build/release/breakwater}"
case "$BREAKWATER_BIN" in /*) ;; *) BREAKWATER_BIN="$REPO/$BREAKWATER_BIN" ;; esac
if [ ! -x "$BREAKWATER_BIN" ]; then
  echo "bench/run.sh: no breakwater binary at $BREAKWATER_BIN (swift build -c release, or set BREAKWATER_BIN)" >&2
  exit 2
fi
PY=${PYTHON:-python3}
GEN="$REPO/bench/corpus/generate.py"
mkdir -p out/bench
status=0
wants() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

run() {  # name, command...
  local name=$1; shift
  echo "=== bench: $name: $*"
  "$@"
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "=== bench: $name exited with $rc" >&2
    status=1
  fi
}

if wants scan && [ -f bench/scan_bench.py ]; then
  args=(--bin "$BREAKWATER_BIN")
  [ -n "${BENCH_CORPUS:-}" ] && args+=(--corpus "$BENCH_CORPUS")
  [ -n "$rounds" ] && args+=(--rounds "$rounds")
  [ $quick -eq 1 ] && args+=(--rounds 1 --count 200)
  run scan "$PY" bench/scan_bench.py "${args[@]}"
fi

if wants waves && [ -f bench/wave_bench.py ]; then
  args=(--bin "$BREAKWATER_BIN")
  [ -n "${BENCH_CORPUS:-}" ] && args+=(--corpus "$BENCH_CORPUS")
  [ -n "$rounds" ] && args+=(--rounds "$rounds")
  [ $quick -eq 1 ] && args+=(--rounds 1 --count 200)
  run waves "$PY" bench/wave_bench.py "${args[@]}"
fi

if wants reload && [ -f bench/reload_bench.py ]; then
  args=(--bin "$BREAKWATER_BIN")
  [ -n "$rounds" ] && args+=(--rounds "$rounds")
  [ $quick -eq 1 ] && args+=(--rounds 1 --synthetic 300000)
  run reload "$PY" bench/reload_bench.py "${args[@]}"
fi

if wants scale && [ -f bench/scale_bench.py ]; then
  args=(--bin "$BREAKWATER_BIN")
  [ -n "${BENCH_CORPUS:-}" ] && args+=(--corpus "$BENCH_CORPUS")
  [ -n "$rounds" ] && args+=(--rounds "$rounds")
  [ $quick -eq 1 ] && args+=(--scale 0.01 --count 200 --anchor-count 50 --fork-count 50)
  run scale "$PY" bench/scale_bench.py "${args[@]}" --json out/bench/scale.json
fi

if wants metrics && [ -f bench/metrics_bench.py ]; then
  args=(--bin "$BREAKWATER_BIN")
  [ -n "${BENCH_CORPUS:-}" ] && args+=(--corpus "$BENCH_CORPUS")
  [ -n "$rounds" ] && args+=(--rounds "$rounds")
  [ $quick -eq 1 ] && args+=(--rounds 2 --messages 500)
  run metrics "$PY" bench/metrics_bench.py "${args[@]}"
fi

if wants milter && [ -f bench/milter_bench.py ]; then
  args=(--breakwater "$BREAKWATER_BIN")
  if [ -n "${BENCH_CORPUS:-}" ] && [ -n "${BENCH_WAVE_CORPUS:-}" ]; then
    args+=(--corpus "$BENCH_CORPUS" --wave-corpus "$BENCH_WAVE_CORPUS")
  else
    args+=(--generator "$GEN")
    [ -n "${BENCH_CORPUS:-}" ] && args+=(--corpus "$BENCH_CORPUS")
  fi
  [ -n "${BENCH_BASELINE_BIN:-}" ] && args+=(--baseline "$BENCH_BASELINE_BIN")
  [ -n "$rounds" ] && args+=(--rounds "$rounds")
  [ $quick -eq 1 ] && args+=(--quick)
  run milter "$PY" bench/milter_bench.py "${args[@]}"
fi
exit $status
