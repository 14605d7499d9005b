#!/usr/bin/env python3
"""Per-message CPU of `breakwater run` for two builds, driven directly over a unix socket (4 sessions,
no MTA), in interleaved rounds: the cost of the milter path itself (assembly, replies), not of
Postfix. Small messages (ham and the test wave spam, 1.5-4 KB, one recipient) against bench/sigs, new ones for
every run (fresh()).

    N=6000 python3 bench/session_cost.py OLD_BINARY NEW_BINARY [ROUNDS]

Three daemons: OLD, NEW, and NEW with --max-recipients 0 (RCPT without a reply; EXTRA3="--flag value ..."
gives the third other flags; THIRD=BINARY makes the third a third build). Reports the daemon's
CPU-ms per message (utime + stime from /proc, the daemon and the processes under it: its engine host
and scan workers) and msgs/s, medians over the rounds.
"""
import os, sys, time, subprocess, threading, statistics, uuid
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "IntegrationTests"))
from harness import mail
from harness import procs as ptree
from harness.milterclient import MilterConnection

def cpu(pid):
    """utime + stime of `pid` and of every process under it (engine host, engine process, workers)."""
    return ptree.cpu_seconds(ptree.tree(pid))


N = int(os.environ.get("N", "1500"))

def fresh():
    """N messages none of the daemons has seen: libclamav caches a clean message by its digest, so a
    message sent again costs an in-process engine almost nothing (and a scan worker that did not see
    it the first time the full scan). Real mail is not sent twice byte for byte: a retry carries the
    MTA's new Received line."""
    out = []
    for i in range(N):
        tid = uuid.uuid4().hex[:12]
        out.append(mail.mini_cooper_spam(tid, i % 4) if i % 3 == 0 else mail.ham(tid, 20 + i % 30))
    return out

def start(binary, name, extra=()):
    sock = f"/tmp/bwcost-{name}.sock"
    spool = f"/dev/shm/bwcost-{name}"; os.makedirs(spool, exist_ok=True)
    log = open(f"/tmp/bwcost-{name}.log", "ab")
    p = subprocess.Popen([binary, "run", "--socket", f"unix:{sock}", "--control", "", "--metrics", "",
        "--local-signatures", "/nonexistent", "--signatures", os.path.join(REPO, "bench", "sigs"), "--spool-directory", spool,
        "--workers", "2", "--log-level", "notice", *extra], stdout=log, stderr=subprocess.STDOUT)
    while not os.path.exists(sock): time.sleep(0.05)
    time.sleep(0.5)
    return p, f"unix:{sock}"

def drive(spec, clients=4):
    msgs = fresh()
    chunks = [msgs[i::clients] for i in range(clients)]
    def run(ms):
        with MilterConnection.open(spec) as m:
            m.negotiate(); m.connect(); m.helo()
            for raw in ms:
                r = m.send_message(raw, rcpt_macros={"i": "COSTQID"})
                assert r.kind in ("continue", "reject"), r
    ts = [threading.Thread(target=run, args=(c,)) for c in chunks]
    t0 = time.monotonic()
    for t in ts: t.start()
    for t in ts: t.join()
    return time.monotonic() - t0

third = tuple(os.environ["EXTRA3"].split()) if os.environ.get("EXTRA3") else ("--max-recipients", "0")
bins = {"old": (sys.argv[1], ()), "new": (sys.argv[2], ()), "new-" + third[0].lstrip("-"): (sys.argv[2], third)}
if os.environ.get("THIRD"):  # a third build instead (no extra flags)
    bins = {"old": (sys.argv[1], ()), "new": (sys.argv[2], ()), "third": (os.environ["THIRD"], ())}
procs = {k: start(v[0], k, v[1]) for k, v in bins.items()}
for k, (p, spec) in procs.items(): drive(spec)  # warm-up
res = {k: [] for k in bins}
for r in range(int(sys.argv[3]) if len(sys.argv) > 3 else 5):
    for k in (list(bins) if r % 2 == 0 else list(bins)[::-1]):
        p, spec = procs[k]
        c0 = cpu(p.pid); wall = drive(spec); c = cpu(p.pid) - c0
        res[k].append((c * 1000 / N, N / wall))
        print(r, k, f"daemon CPU {c*1000/N:.3f} ms/msg, {N/wall:.0f} msgs/s", flush=True)
for k, (p, spec) in procs.items(): p.terminate(); p.wait()
for k in bins:
    print(k, "median daemon CPU ms/msg", round(statistics.median(x[0] for x in res[k]), 3),
          "msgs/s", round(statistics.median(x[1] for x in res[k])), "all", [round(x[0], 3) for x in res[k]])
