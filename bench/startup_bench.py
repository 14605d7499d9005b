#!/usr/bin/env python3
"""Start to listening: `breakwater run` against clamd on the same database, interleaved rounds.

    python3 bench/startup_bench.py --db DIR [--rounds 6] [--breakwater BIN] [--also BIN ...]
                                   [-- EXTRA BREAKWATER FLAGS]

DIR: a signature directory both load (bench/officialdb.py writes the official-scale stand-in to
out/bench/officialdb/). Reports wall and CPU seconds from exec until Breakwater logs "listening on"
and until clamd's local socket exists, per round and as medians. Every daemon it starts, it stops by
PID; the working files go to a temporary directory that is removed at the end. --also adds another
Breakwater build to the same rounds (the daemons then start in a rotating order). CPU is the
daemon's and every process's under it (an engine process loads the engine).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "IntegrationTests"))
from harness import procs  # noqa: E402


def cpu_seconds(pid):
    """utime + stime of `pid` and of every process under it (Breakwater's engine process loads the engine)."""
    return procs.cpu_seconds(procs.tree(pid))


def until_ready(p, t0, ready, what):
    """Waits until `ready()` holds for the daemon `p` started at `t0`, then stops it by PID; returns the
    wall seconds since `t0` and the daemon's CPU seconds then."""
    try:
        while not ready():
            if p.poll() is not None:
                sys.exit(f"{what} exited {p.returncode}")
            time.sleep(0.02)
        return time.monotonic() - t0, cpu_seconds(p.pid)
    finally:
        p.terminate()
        p.wait()


def breakwater(binary, db, work, extra):
    log_path = os.path.join(work, "breakwater.log")
    with open(log_path, "w") as log:
        t0 = time.monotonic()
        p = subprocess.Popen([binary, "run", "--socket", f"unix:{work}/milter.sock",
                              "--control", f"{work}/control.sock", "--local-signatures", "/nonexistent",
                              "--signatures", db, "--spool-directory", work, *extra],
                             stdout=log, stderr=subprocess.STDOUT)

    def listening():
        with open(log_path) as f:
            return "listening on" in f.read()

    return until_ready(p, t0, listening, f"breakwater (see {log_path})")


def clamd(db, work):
    sock = os.path.join(work, "clamd.sock")
    conf = os.path.join(work, "clamd.conf")
    with open(conf, "w") as f:
        f.write(f"LocalSocket {sock}\nDatabaseDirectory {db}\nForeground yes\nUser root\n"
                f"LogFile {work}/clamd.log\nPidFile {work}/clamd.pid\nTemporaryDirectory {work}\n")
    t0 = time.monotonic()
    p = subprocess.Popen(["clamd", "--config-file", conf], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return until_ready(p, t0, lambda: os.path.exists(sock), f"clamd (see {work}/clamd.log)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--breakwater", default=os.environ.get(
        "BREAKWATER_BIN", os.path.join(REPO, ".build", "release", "breakwater")))
    ap.add_argument("--also", action="append", default=[], help="another breakwater binary in the same rounds")
    ap.add_argument("extra", nargs="*", help="more flags for breakwater run (after --)")
    a = ap.parse_args()
    binaries = {"breakwater": a.breakwater, **{f"breakwater {b}": b for b in a.also}}
    results = {**{k: [] for k in binaries}, "clamd": []}
    names = list(results)
    for r in range(a.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            work = tempfile.mkdtemp(prefix="bw-startup-")
            try:
                w, c = breakwater(binaries[name], a.db, work, a.extra) if name != "clamd" else clamd(a.db, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            results[name].append((w, c))
            print(f"round {r} {name}: wall {w:.2f} s, cpu {c:.2f} s", flush=True)
    for name, v in results.items():
        print(f"{name}: median wall {statistics.median(x[0] for x in v):.2f} s, "
              f"median cpu {statistics.median(x[1] for x in v):.2f} s")


if __name__ == "__main__":
    main()
