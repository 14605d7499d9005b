#!/usr/bin/env python3
"""Where the spool lives, and what spool-budget does (issue 19, item 3).

Drives `breakwater run` directly over the milter protocol (harness.milterclient, no MTA): N sessions
each send a large message's headers and body and hold it before end of message, so that N messages
sit in the spool at once; then all send end of message together and wait for the verdicts. The
daemon runs in a memory cgroup of its own (cgroup v1, root) so that what the spool costs in memory
is read from the cgroup's memory.stat: on a tmpfs the spooled bytes are shmem, charged to the
service and not reclaimable; on disk they are page cache the kernel writes back and may reclaim.

    python3 bench/spool_bench.py --breakwater .build/release/breakwater \\
        --disk /var/tmp/bwspool --tmpfs /dev/shm/bwspool [--sessions 16] [--size 8000000] \\
        [--rounds 3] [--limit 160M] [--budget 64M]

Per round, interleaved: disk and tmpfs with no cgroup limit (memory charged, receive and scan
times, daemon CPU), then both again under memory.limit_in_bytes = --limit (does the daemon survive
holding more spool than the limit?), then disk with --spool-budget = --budget (how many of the
sessions get 451 4.3.2). libclamav's own temporary files go to one tmpfs directory in every run
(scan-temporary-directory), so only the message spool moves.
"""
import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "IntegrationTests"))
from harness import mail  # noqa: E402
from harness.milterclient import MilterConnection  # noqa: E402

CG_ROOT = "/sys/fs/cgroup/memory"


def size(text):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * mult[text[-1]] if text[-1] in mult else int(text)


def memstat(cg):
    out = {}
    with open(os.path.join(cg, "memory.stat")) as f:
        for line in f:
            k, v = line.split()
            out[k] = int(v)
    return out


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Daemon:
    def __init__(self, args, spool, scan_tmp, workdir, limit=None, budget=None):
        self.sock = os.path.join(workdir, f"bw-{uuid.uuid4().hex[:6]}.sock")
        self.cg = os.path.join(CG_ROOT, f"bw-spool-{uuid.uuid4().hex[:8]}")
        os.mkdir(self.cg)
        if limit:
            with open(os.path.join(self.cg, "memory.limit_in_bytes"), "w") as f:
                f.write(str(limit))
        cmd = [args.breakwater, "run", "--socket", f"unix:{self.sock}", "--control", "", "--metrics", "",
               "--local-signatures", os.path.join(workdir, "none"), "--signatures", args.signatures,
               "--spool-directory", spool, "--scan-temporary-directory", scan_tmp,
               "--max-message-size", str(min(64 << 20, budget or 64 << 20)), "--spool-threshold", "1M", "--workers", "2",
               "--max-waiting", "256", "--max-wait", "120s", "--max-scan-size", "400M", "--max-file-size", "100M"]
        if budget:
            cmd += ["--spool-budget", str(budget)]
        self.log = open(os.path.join(workdir, "daemon.log"), "ab")
        cg = self.cg

        def enter():
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=enter)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"breakwater did not start: {cmd}")
            time.sleep(0.05)

    def oom_kills(self):
        with open(os.path.join(self.cg, "memory.oom_control")) as f:
            return int(dict(l.split() for l in f).get("oom_kill", 0))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        for _ in range(100):
            try:
                os.rmdir(self.cg)
                break
            except OSError:
                time.sleep(0.1)


def hold(spec, raw, i):
    m = MilterConnection.open(spec, timeout=300)
    m.negotiate()
    m.connect()
    m.helo()
    m.mail("<bench@example.org>")
    m.rcpt("<user@dest.example>", macros={"i": f"SPOOL{i:04d}"})
    m.data()
    m.send_content(raw)
    return m


def one_run(args, spool, workdir, limit=None, budget=None):
    d = Daemon(args, spool, args.scan_tmp, workdir, limit=limit, budget=budget)
    raws = [mail.large_ham(f"sp{i}-{uuid.uuid4().hex[:6]}", args.size) for i in range(args.sessions)]
    spec = f"unix:{d.sock}"
    out = {"spool": spool, "limit": limit, "budget": budget}
    try:
        t0 = time.monotonic()
        sessions = [hold(spec, raw, i) for i, raw in enumerate(raws)]
        out["receive_s"] = time.monotonic() - t0
        st = memstat(d.cg)
        out.update(rss_mb=st["rss"] / 2**20, cache_mb=st["cache"] / 2**20, shmem_mb=st.get("shmem", 0) / 2**20,
                   dirty_mb=st.get("dirty", 0) / 2**20)
        cpu0 = cpu_seconds(d.proc.pid)
        kinds = [None] * len(sessions)

        def finish(i, m):
            try:
                kinds[i] = m.eom().kind
                m.quit()
            except Exception as e:  # the daemon died (OOM) or closed the session
                kinds[i] = "error:" + type(e).__name__

        t1 = time.monotonic()
        ts = [threading.Thread(target=finish, args=(i, m)) for i, m in enumerate(sessions)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        out["scan_s"] = time.monotonic() - t1
        out["daemon_cpu_s"] = cpu_seconds(d.proc.pid) - cpu0 if d.proc.poll() is None else None
        out["answers"] = {k: kinds.count(k) for k in set(kinds)}
        out["alive"] = d.proc.poll() is None
        out["oom_kills"] = d.oom_kills()
    except Exception as e:
        out["error"] = repr(e)
        out["alive"] = d.proc.poll() is None
        out["oom_kills"] = d.oom_kills()
    finally:
        d.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--breakwater", default=os.path.join(REPO, ".build/release/breakwater"))
    ap.add_argument("--signatures", default=os.path.join(REPO, "bench/sigs"))
    ap.add_argument("--disk", required=True, help="a spool directory on a disk file system")
    ap.add_argument("--tmpfs", required=True, help="a spool directory on a tmpfs")
    ap.add_argument("--scan-tmp", default="/dev/shm/bw-spool-bench-scan")
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--size", type=int, default=8_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", default="160M")
    ap.add_argument("--budget", default="64M")
    ap.add_argument("--workdir", default="/tmp/bw-spool-bench")
    args = ap.parse_args()
    for d in (args.disk, args.tmpfs, args.scan_tmp, args.workdir):
        os.makedirs(d, exist_ok=True)
    results = []
    for r in range(args.rounds):
        for spool in (args.disk, args.tmpfs):
            results.append(("free", one_run(args, spool, args.workdir)))
        for spool in (args.disk, args.tmpfs):
            results.append(("limit", one_run(args, spool, args.workdir, limit=size(args.limit))))
        results.append(("budget", one_run(args, args.disk, args.workdir, budget=size(args.budget))))
        for kind, res in results[-5:]:
            print(kind, res, flush=True)
    print("\nmedians over rounds:")
    for kind in ("free", "limit", "budget"):
        for spool in (args.disk, args.tmpfs):
            rs = [res for k, res in results if k == kind and res["spool"] == spool]
            if not rs:
                continue
            def med(key):
                vals = [x[key] for x in rs if x.get(key) is not None]
                return round(statistics.median(vals), 2) if vals else None
            print(f"{kind:6} {spool:28} receive {med('receive_s')} s, scan {med('scan_s')} s, daemon CPU "
                  f"{med('daemon_cpu_s')} s, charged rss {med('rss_mb')} MB cache {med('cache_mb')} MB "
                  f"(shmem {med('shmem_mb')} MB), alive {[x['alive'] for x in rs]}, oom kills "
                  f"{[x['oom_kills'] for x in rs]}, answers {[x.get('answers') for x in rs]}")


if __name__ == "__main__":
    main()
