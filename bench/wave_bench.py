#!/usr/bin/env python3
"""Benchmark: what wave detection costs per message, and what it finds, on the generated corpus.

    bench/wave_bench.py [--corpus DIR] [--signatures DIR] [--bin PATH] [--rounds 3] [--count 1000]

1. Cost: `breakwater waves bench` scans every message twice in one process, interleaved, with two
   engines loaded from the same signatures: one without the file-inspection callback (as with
   `waves = no`), one with it, feeding each decoded text layer to the fingerprint and counting the
   message in a wave store (as `breakwater run` does). Times are the scanning thread's CPU time; each
   round builds fresh engines, so libclamav's clean-file cache never turns a scan into a cache hit;
   which engine goes first alternates per message. Reported: the overhead over the scan in total and
   the median per message, and the share of fingerprint finishing plus the store. Target (issue 7):
   under 10 % of the scan time. Reported, not enforced.
2. Detection: `breakwater waves replay` runs the messages in corpus order (0.1 s apart) through the
   scan and the store with default wave settings; the corpus manifest says which messages are wave
   spam. Reported: the waves found, their members by class, and ham counted into a wave (should be 0).

Corpus: --corpus DIR (a directory with manifest.tsv, as bench/corpus/generate.py makes); by default
`bench/corpus/generate.py --seed 1 --count 1000`, generated once into
$TMPDIR/breakwater-bench-generated-seed1-1000 (the same directory bench/scan_bench.py uses).
Signatures: --signatures DIR; default bench/sigs/ (the names the generated corpus expects).
Binary: --bin, or $BREAKWATER_BIN, default .build/release/breakwater.
Results: out/bench/waves-TIMESTAMP/results.{md,json}.
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGNATURES = os.path.join(REPO, "bench", "sigs")

from scan_bench import default_corpus, log  # noqa: E402  (bench/ is on sys.path: the script's folder)


def manifest(corpus):
    """[(file, class, kind)] in corpus order."""
    rows = []
    with open(os.path.join(corpus, "manifest.tsv")) as f:
        for line in f.read().splitlines()[1:]:
            parts = line.split("\t")
            rows.append((parts[0], parts[1], parts[3]))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus")
    ap.add_argument("--signatures")
    ap.add_argument("--bin", default=os.environ.get("BREAKWATER_BIN", os.path.join(REPO, ".build/release/breakwater")))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--count", type=int, default=1000)
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"wave_bench: no breakwater binary at {binary} (swift build -c release, or --bin)")
    corpus = args.corpus or default_corpus(args.count)
    sigs = args.signatures or SIGNATURES
    rows = manifest(corpus)
    files = [os.path.join(corpus, r[0]) for r in rows]
    outdir = os.path.join(REPO, "out", "bench", time.strftime("waves-%Y%m%d-%H%M%S"))
    os.makedirs(outdir, exist_ok=True)

    # 1. cost
    log(f"cost: {binary} waves bench --rounds {args.rounds} ({len(files)} messages, signatures {sigs})")
    r = subprocess.run([binary, "waves", "bench", "--json", "--rounds", str(args.rounds), "--signatures", sigs, *files],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"wave_bench: waves bench exited {r.returncode}: {r.stderr}")
    cost = json.loads(r.stdout)

    # 2. detection
    log(f"detection: {binary} waves replay (corpus order, 0.1 s apart)")
    r = subprocess.run([binary, "waves", "replay", "--interval", "0.1", "--signatures", sigs, *files],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"wave_bench: waves replay exited {r.returncode}: {r.stderr}")
    kind_of = {os.path.join(corpus, f): (c, k) for f, c, k in rows}
    members = collections.defaultdict(collections.Counter)   # wave -> Counter(kind)
    totals = collections.Counter()
    for line in r.stdout.splitlines():
        d = json.loads(line)
        c, k = kind_of[d["path"]]
        label = k if c == "spam" else c
        totals[label] += 1
        if d["wave"]:
            members[d["wave"]][label] += 1
    ham_in_waves = sum(m["ham"] for m in members.values())

    result = {"messages": len(files), "rounds": cost["rounds"], "corpus": corpus, "signatures": sigs,
              "scan_ms_per_message": cost["scan_ms_per_message"],
              "scan_with_waves_ms_per_message": cost["scan_with_waves_ms_per_message"],
              "overhead_total": cost["overhead_total"], "overhead_median_per_message": cost["overhead_median_per_message"],
              "fingerprint_and_store_share": cost["fingerprint_and_store_share"],
              "target": 0.10, "met": cost["overhead_total"] < 0.10,
              "waves": {w: dict(m) for w, m in members.items()}, "classes": dict(totals),
              "ham_in_waves": ham_in_waves}
    md = [f"# Wave detection benchmark ({time.strftime('%Y-%m-%d %H:%M')})", "",
          f"{len(files)} messages of {corpus}, signatures {sigs}, {cost['rounds']} interleaved rounds.", "",
          "| | CPU ms per message |", "|---|---|",
          f"| scan, no inspection | {cost['scan_ms_per_message']:.3f} |",
          f"| scan with inspection + fingerprint + store | {cost['scan_with_waves_ms_per_message']:.3f} |", "",
          f"Overhead: **{cost['overhead_total'] * 100:.2f} %** of the scan time in total "
          f"(median per message {cost['overhead_median_per_message'] * 100:.2f} %; "
          f"fingerprint finish + store alone {cost['fingerprint_and_store_share'] * 100:.2f} %). "
          f"Target < 10 %: {'met' if result['met'] else 'NOT met'}.", "",
          "Detection (default settings, corpus order, 0.1 s apart):", ""]
    for w, m in members.items():
        md.append(f"- wave {w}: " + ", ".join(f"{n} {k}" for k, n in m.most_common()))
    md.append(f"- messages per class: " + ", ".join(f"{n} {k}" for k, n in totals.most_common()))
    md.append(f"- ham counted into a wave: {ham_in_waves}")
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    log("\n".join(md))
    log(f"\nresults: {outdir}/results.{{md,json}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
