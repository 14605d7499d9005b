#!/usr/bin/env python3
"""Memory of `breakwater run` as a whole: the daemon and every process under it (the engine host and
its scan workers), after N messages scanned. RSS counts shared pages in every process that maps
them; PSS shares them out; Private is what each process holds alone.

    python3 bench/process_memory.py BINARY SIGDIR [--messages 400] [--workers 4]

Messages: ham, the test wave spam and EICAR, sent over the milter protocol (4 sessions).
"""
import argparse
import os
import sys
import tempfile
import threading
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "IntegrationTests"))
from harness import mail, procs  # noqa: E402
from harness.breakwater import BreakwaterDaemon  # noqa: E402
from harness.milterclient import MilterConnection  # noqa: E402


def tree(pid):
    return procs.tree(pid)


def rollup(pid):
    v = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                v[k] = int(rest.split()[0])
    with open(f"/proc/{pid}/comm") as f:
        v["comm"] = f.read().strip()
    return v


def private_by_mapping(pid):
    """Private (clean + dirty) kB of `pid` by mapping: [heap], [stack], [anon] or the file's name."""
    out, name = {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:
                name = head[5] if len(head) > 5 else "[anon]"
                name = os.path.basename(name) if name.startswith("/") else name
            elif head and head[0] in ("Private_Clean:", "Private_Dirty:"):
                out[name] = out.get(name, 0) + int(head[1])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary")
    ap.add_argument("sigdir")
    ap.add_argument("--messages", type=int, default=400)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds between the last answer and the measurement (default 1)")
    ap.add_argument("--detail", action="store_true",
                    help="also each process's private memory by mapping ([heap], anonymous, stack, files)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="procmem-")
    bw = BreakwaterDaemon(os.path.abspath(a.binary), work,
                          ["--signatures", a.sigdir, "--workers", str(a.workers), "--metrics", "",
                           "--log-level", "notice"], socket_kind="unix")
    t = time.monotonic()
    bw.start(timeout=900)
    print(f"listening after {time.monotonic() - t:.1f} s", flush=True)
    msgs = []
    for i in range(a.messages):
        tid = uuid.uuid4().hex[:12]
        msgs.append(mail.eicar_attachment(tid) if i % 10 == 0
                    else mail.mini_cooper_spam(tid, i % 4) if i % 3 == 0 else mail.ham(tid, 20 + i % 30))

    def run(ms):
        with MilterConnection.open(bw.milter_spec) as m:
            m.negotiate()
            m.connect()
            m.helo()
            for raw in ms:
                m.send_message(raw, rcpt_macros={"i": "MEMQID"})

    ts = [threading.Thread(target=run, args=(msgs[i::4],)) for i in range(4)]
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    time.sleep(a.settle)
    total = {"Rss": 0, "Pss": 0, "Private": 0}
    print(f"{'pid':>8} {'process':10} {'RSS MB':>9} {'PSS MB':>9} {'Private MB':>11}")
    for p in tree(bw.pid):
        v = rollup(p)
        private = v.get("Private_Clean", 0) + v.get("Private_Dirty", 0)
        print(f"{p:>8} {v['comm']:10} {v['Rss'] / 1024:9.1f} {v['Pss'] / 1024:9.1f} {private / 1024:11.1f}")
        if a.detail:
            for name, kb in sorted(private_by_mapping(p).items(), key=lambda x: -x[1])[:6]:
                print(f"{'':8}   {name[:40]:40} {kb / 1024:9.1f} MB private")
        total["Rss"] += v["Rss"]
        total["Pss"] += v["Pss"]
        total["Private"] += private
    print(f"{'':8} {'total':10} {total['Rss'] / 1024:9.1f} {total['Pss'] / 1024:9.1f} {total['Private'] / 1024:11.1f}")
    bw.stop()


if __name__ == "__main__":
    main()
