#!/usr/bin/env python3
"""What a hot reload costs: time and peak memory of `breakwater reload` on a running daemon.

    bench/reload_bench.py [--bin PATH] [--rounds 3] [--synthetic 1000000] [--no-stream]

Two signature sets, each in its own daemon (`breakwater run`, two scan slots, directory watch off):
 - the shipped set (Signatures/);
 - a synthetic set of --synthetic body signatures (.ndb, random 20-byte hex patterns, generated
   once into out/bench/reload-sigs/, reused while the count is the same), plus the shipped set.
For each round: the daemon's peak RSS is reset (/proc/PID/clear_refs 5), `breakwater reload` is run
(it returns once the new generation is in), and we record its wall time, the build time the daemon
reports (status: buildSeconds), the RSS before, the peak during (VmHWM) and the RSS a second after
(the old engine is freed by its last scan). Unless --no-stream, one client keeps sending the shipped
ham and samples through the milter during every reload: each message must get its usual verdict (no
4xx, no error), and the slowest answer during a reload is reported (scanning goes on on the old engine).

Binary: --bin or $BREAKWATER_BIN, default .build/release/breakwater. Stops what it started, by PID.
Results are printed as a table; exit status 1 if a reload failed or a streamed message got a wrong answer.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "IntegrationTests"))

from harness.breakwater import BreakwaterDaemon  # noqa: E402
from harness.milterclient import MilterConnection  # noqa: E402


def log(*a):
    print(*a, flush=True)


def proc_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def synthetic_set(count):
    """A directory with `count` random .ndb body signatures, made once and reused."""
    d = os.path.join(REPO, "out", "bench", "reload-sigs", str(count))
    path = os.path.join(d, "synthetic.ndb")
    if os.path.exists(path):
        return d
    os.makedirs(d, exist_ok=True)
    rnd = random.Random(count)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for i in range(count):
            f.write(f"Breakwater.Bench.Synthetic{i}:0:*:{rnd.getrandbits(160):040x}\n")
    os.rename(tmp, path)
    return d


def load_stream_messages():
    out = []
    for sub, expect in (("ham", "accept"), ("samples", "reject")):
        base = os.path.join(REPO, "Signatures", sub)
        for dirpath, _, files in os.walk(base):
            for name in sorted(files):
                if name.endswith(".eml"):
                    with open(os.path.join(dirpath, name), "rb") as f:
                        out.append((name, f.read(), expect))
    return out


class Stream(threading.Thread):
    """One client sending messages in a loop; records answers and their times."""

    def __init__(self, spec, messages):
        super().__init__(daemon=True)
        self.spec, self.messages = spec, messages
        self.stop_flag = threading.Event()
        self.records = []  # (start, end, name, expect, kind, code)

    def run(self):
        i = 0
        while not self.stop_flag.is_set():
            name, raw, expect = self.messages[i % len(self.messages)]
            i += 1
            t0 = time.monotonic()
            try:
                with MilterConnection.open(self.spec) as m:
                    m.negotiate()
                    r = m.send_message(raw)
                    kind, code = r.kind, r.smtp_code
            except Exception as e:  # a dropped session is a failure, recorded
                kind, code = f"error {e}", None
            self.records.append((t0, time.monotonic(), name, expect, kind, code))


def verdict_ok(expect, kind, code):
    if expect == "accept":
        return kind in ("accept", "continue")
    return code is not None and str(code).startswith("5")


def bench_set(binary, label, sigdirs, rounds, stream):
    work = tempfile.mkdtemp(prefix="bw-reload-")
    args = ["--workers", "2", "--self-check", "0", "--metrics", ""]
    for d in sigdirs:
        args += ["--signatures", d]
    bw = BreakwaterDaemon(binary, work, args)
    t0 = time.monotonic()
    bw.start(timeout=600)
    start_s = time.monotonic() - t0
    ctl = ["--control", os.path.join(bw.run_dir, "control.sock")]
    rows, failures = [], []
    s = None
    try:
        st = json.loads(subprocess.run([binary, "status", "--json", *ctl], capture_output=True, text=True).stdout)
        sigs = st["engine"]["signatures"]
        if stream:
            s = Stream(bw.milter_spec, load_stream_messages())
            s.start()
            time.sleep(1.0)
        for r in range(rounds):
            pid = bw.pid
            time.sleep(1.0)
            before = proc_kb(pid, "VmRSS")
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
            t1 = time.monotonic()
            p = subprocess.run([binary, "reload", *ctl], capture_output=True, text=True, timeout=900)
            t2 = time.monotonic()
            peak = proc_kb(pid, "VmHWM")
            time.sleep(1.0)
            after = proc_kb(pid, "VmRSS")
            st = json.loads(subprocess.run([binary, "status", "--json", *ctl], capture_output=True, text=True).stdout)
            build = st["engine"]["build_seconds"]
            if p.returncode != 0:
                failures.append(f"{label}: reload {r + 1} exited {p.returncode}: {p.stderr.strip()}")
            rows.append(dict(wall=t2 - t1, build=build, before=before, peak=peak, after=after, t1=t1, t2=t2))
            log(f"  {label} round {r + 1}: reload {t2 - t1:.2f} s (build {build}), RSS before {before / 1024:.0f} MB, "
                f"peak {peak / 1024:.0f} MB, after {after / 1024:.0f} MB: {p.stdout.strip() or p.stderr.strip()}")
    finally:
        if s:
            s.stop_flag.set()
            s.join(120)
        rc = bw.stop(timeout=60)
    if rc != 0:
        failures.append(f"{label}: daemon exited {rc}")
    during_max = None
    answered = 0
    if s:
        bad = [x for x in s.records if not verdict_ok(x[3], x[4], x[5])]
        for x in bad[:5]:
            failures.append(f"{label}: streamed {x[2]} expected {x[3]}, got {x[4]} {x[5]}")
        answered = len(s.records)
        during = [x[1] - x[0] for x in s.records for row in rows if x[1] >= row["t1"] and x[0] <= row["t2"]]
        during_max = max(during) if during else None
    return dict(label=label, sigs=sigs, start=start_s, rows=rows, answered=answered, during_max=during_max,
                streamed_bad=len(bad) if s else 0), failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("BREAKWATER_BIN", os.path.join(REPO, ".build/release/breakwater")))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--synthetic", type=int, default=1_000_000)
    ap.add_argument("--no-stream", action="store_true")
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    if not os.access(a.bin, os.X_OK):
        sys.exit(f"reload_bench: no binary at {a.bin} (swift build -c release)")
    shipped = os.path.join(REPO, "Signatures")
    sets = [("shipped", [shipped])]
    if a.synthetic > 0:
        t = time.monotonic()
        d = synthetic_set(a.synthetic)
        log(f"synthetic set: {a.synthetic} signatures in {d} ({time.monotonic() - t:.1f} s)")
        sets.append((f"synthetic {a.synthetic}", [shipped, d]))
    results, failures = [], []
    for label, dirs in sets:
        log(f"== {label}")
        res, fails = bench_set(a.bin, label, dirs, a.rounds, not a.no_stream)
        results.append(res)
        failures += fails
    log("")
    log("| set | signatures | start-up s | reload s (median) | build s | RSS before MB | peak during reload MB | RSS after MB | streamed msgs (wrong) | slowest answer during reload s |")
    log("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        rows = r["rows"]
        med = lambda k: statistics.median(x[k] for x in rows)  # noqa: E731
        builds = [x["build"] for x in rows if isinstance(x["build"], (int, float))]
        build = f"{statistics.median(builds):.2f}" if builds else "-"
        dm = f"{r['during_max']:.2f}" if r["during_max"] is not None else "-"
        log(f"| {r['label']} | {r['sigs']} | {r['start']:.2f} | {med('wall'):.2f} | {build} | "
            f"{med('before') / 1024:.0f} | {max(x['peak'] for x in rows) / 1024:.0f} | {med('after') / 1024:.0f} | "
            f"{r['answered']} ({r['streamed_bad']}) | {dm} |")
    for f in failures:
        log("FAIL: " + f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
