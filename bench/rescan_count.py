#!/usr/bin/env python3
"""How often `breakwater run` scans a message a second time for every match (issue 23): it stops at
the first signature, and scans again only when that signature's action is not the strictest
configured. Sends every message of each corpus once over the milter protocol (4 sessions at a time)
to a fresh daemon with the corpus's signatures and the default actions, then reads
breakwater_scans_total and breakwater_rescans_total from its metrics endpoint.

    bench/rescan_count.py --bin .build/release/breakwater [--action 'GLOB ACTION'] CORPUS_DIR [CORPUS_DIR ...]
"""
import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "IntegrationTests"))
from harness import procs  # noqa: E402
from harness.milterclient import run_session  # noqa: E402
from harness.ports import free_port, release_port  # noqa: E402


def counters(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("breakwater_scans_total", "breakwater_rescans_total"):
            out[name[len("breakwater_"):-len("_total")]] = int(float(value))
    return out


def measure(binary, sigs, corpus, work, extra=()):
    files = sorted(f for f in os.listdir(corpus) if f.endswith(".eml"))
    sock = os.path.join(work, "milter.sock")
    port = free_port()
    log = open(os.path.join(work, "breakwater.log"), "wb")
    p = subprocess.Popen([binary, "run", "--socket", f"unix:{sock}", "--signatures", sigs, "--workers", "2",
                          "--metrics", f"127.0.0.1:{port}", "--control", os.path.join(work, "control.sock"),
                          "--local-signatures", os.path.join(work, "none"), "--spool-directory", work, *extra],
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        end = time.monotonic() + 60
        while not (procs.unix_listening(sock) and procs.tcp_listening(port)):
            if p.poll() is not None or time.monotonic() > end:
                raise RuntimeError("breakwater did not start")
            time.sleep(0.05)

        def one(name):
            with open(os.path.join(corpus, name), "rb") as f:
                run_session(f"unix:{sock}", f.read(), rcpt_macros={"i": "R" + name.split(".")[0]})

        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            list(ex.map(one, files))
        return len(files), counters(port)
    finally:
        p.terminate()
        p.wait(30)
        log.close()
        release_port(port)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(HERE), ".build", "release", "breakwater"))
    ap.add_argument("--signatures", default=os.path.join(HERE, "sigs"))
    ap.add_argument("--action", action="append", default=[], help="an action rule for the daemon (repeatable), "
                    "e.g. '*.Spam.* tag'")
    ap.add_argument("corpora", nargs="+")
    a = ap.parse_args()
    for corpus in a.corpora:
        work = tempfile.mkdtemp(prefix="bw-rescan-")
        try:
            extra = [x for rule in a.action for x in ("--action", rule)]
            n, c = measure(os.path.abspath(a.bin), os.path.abspath(a.signatures), corpus, work, extra)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"{corpus}: {n} messages, {c.get('scans')} scans, {c.get('rescans')} scanned again for every match "
              f"({100.0 * c.get('rescans', 0) / max(1, c.get('scans', 0)):.1f} %)")


if __name__ == "__main__":
    main()
