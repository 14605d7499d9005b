#!/usr/bin/env python3
"""Breakwater's milter benchmark (issue 3): in ONE invocation, on the same messages,

  (a) Postfix + Breakwater (`breakwater run`)
  (b) Postfix + clamav-milter + clamd (Debian's packages; same signatures, OnInfected Reject,
      scan limits matched to Breakwater's defaults)
  (c) Postfix alone, no milter
  at 4, 32 and 200 concurrent SMTP clients, on two corpora: mixed mail (corpus.py --seed 1,
  3,000 messages) and a wave of small near-identical messages (corpus.py --seed 7 spam plus
  small ham, 4,900 messages, 80 % spam); and
  (d) `breakwater run` driven directly over the milter protocol (no Postfix) vs
      `breakwater scan --jobs 2` on the same messages; and
  (e) libmilter's floor: bench/floor_milter.c, a libmilter milter that negotiates and replies as
      `breakwater run` does and gives each message its right verdict (read from the corpus
      manifest: spam and malware rejected with the expected name) without scanning anything,
      driven directly as in (d) and behind the same Postfix as (a)-(c). What it costs per message
      is what any libmilter filter pays before it filters: it bounds the ratio (d) can reach
      (scan CPU / (scan CPU + floor CPU) on a CPU-bound machine), gives the part of each filter's
      overhead that is libmilter's and the MTA's milter client, and shows how Postfix + libmilter
      scale from 32 to 200 clients with the same verdicts; and, when named in --configs,
  (f) the busy floor ("busy"): the floor milter spending, at end of message, as much CPU as
      `breakwater scan --jobs 2` spends per message (a loop that touches no memory) in one of 2
      places, so that sessions wait for it as they wait for a scan slot: how Postfix + libmilter
      scale from 32 to 200 clients behind a CPU-bound filter that costs nothing beyond its scan.

Every configuration gets a fresh private Postfix (own config and queue, loopback port, no chroot,
in_flow_delay = 0, relaying to Postfix's `smtp-sink` on loopback) and fresh daemons, so that peak
RSS is per run. Configurations are interleaved (the order rotates every round) and each figure is
the median over rounds: figures on a shared machine move 15-30 % between time windows.

The load comes from bench/loadgen.c (compiled here with cc): one epoll thread that runs every
session (SMTP or milter protocol), so the client costs little CPU next to what is measured. A
message answered 4xx is tried again later (fresh messages first, at most --max-attempts); 4xx
answers are counted separately, and a message that never got 250/5xx counts as lost.

Measured per run: msgs/s (messages with a final 250/5xx answer / time to the last answer),
latency p50/p99 of those transactions, machine CPU-ms per message (/proc/stat, from the first
connection until Postfix delivered everything to the sink), the CPU of the processes involved
(Postfix tree, milter daemons, sink, load generator; robust against other load on the machine),
peak RSS (breakwater; clamd and clamav-milter; all Postfix processes summed), and correctness:
every verdict against the corpus manifest (ham accepted, spam/malware rejected with the expected
signature name), every accepted message at the sink exactly once, no rejected message at the sink.

    bench/milter_bench.py --corpus DIR --wave-corpus DIR [--rounds 3] [--quick] [--out DIR]
    bench/milter_bench.py --generator ../shared/corpus/corpus.py      # makes the corpora itself

Needs root (Postfix), postfix, clamav-daemon, clamav-milter (scripts/setup.sh --bench), cc and a
release build of breakwater (BREAKWATER_BIN or --breakwater; default .build/release/breakwater).
Writes results.json, results.md and every run's logs to the output directory (default
out/bench/milter-TIMESTAMP). Stops every process it started, by PID.
"""
import argparse
import datetime as _dt
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

sys.path.insert(0, os.path.join(REPO, "IntegrationTests"))
from harness import postfix as harness_postfix  # noqa: E402
from harness import procs  # noqa: E402
from harness.ports import free_port, release_port  # noqa: E402

CONFIGS = ("postfix", "floor", "breakwater", "clamav")
# Run only when named in --configs.
EXTRA_CONFIGS = ("busy",)
ALL_CONFIGS = CONFIGS + EXTRA_CONFIGS
# The configurations that run bench/floor_milter.c.
FLOOR_CONFIGS = ("floor", "busy")
# The configurations whose 200-client msgs/s is reported against their 32-client msgs/s.
SCALING_CONFIGS = ("breakwater", "clamav", "floor", "busy", "postfix")
CONFIG_LABEL = {"postfix": "Postfix alone", "floor": "Postfix + floor milter (libmilter, verdicts known, no scan)",
                "breakwater": "Postfix + Breakwater", "clamav": "Postfix + clamav-milter + clamd",
                "busy": "Postfix + busy floor (the floor milter spending the scan's CPU per message on 2 slots, "
                        "no scan)"}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------
# /proc helpers
def proc_stat(pid):
    """(ppid, utime+stime, cutime+cstime) in clock ticks, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    p = s.rsplit(")", 1)[1].split()
    # fields after ')': state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return int(p[1]), int(p[11]) + int(p[12]), int(p[13]) + int(p[14])


def postfix_process_counts(master):
    """How many processes of each program run under a Postfix master (smtpd, cleanup, ...)."""
    out = {}
    for p in descendants(master):
        try:
            with open(f"/proc/{p}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        out[name] = out.get(name, 0) + 1
    return out


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


def status_fields(pid, *fields):
    """Numeric fields of /proc/PID/status (kB for sizes), read in one pass; 0 for a missing one."""
    out = dict.fromkeys(fields, 0)
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in out:
                    out[name] = int(value.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def status_field(pid, field):
    return status_fields(pid, field)[field]


def all_ppids():
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    s = f.read()
                out[int(d)] = int(s.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return out


def descendants(root, ppids=None):
    ppids = ppids if ppids is not None else all_ppids()
    kids = {}
    for pid, pp in ppids.items():
        kids.setdefault(pp, []).append(pid)
    out, stack = [], [root]
    while stack:
        p = stack.pop()
        for k in kids.get(p, []):
            out.append(k)
            stack.append(k)
    return out


def own_cpu_ms():
    """CPU milliseconds this script has used so far (all its threads; not its children)."""
    t = os.times()
    return (t.user + t.system) * 1000.0


def machine_cpu_ticks():
    """(busy, total, interrupts, steal, context switches) of the whole machine, the first four in
    jiffies: busy excludes idle and iowait and includes interrupt and softirq time (no process is
    charged for it) and steal (the hypervisor's). The context switches count every CPU's since boot."""
    with open("/proc/stat") as f:
        lines = f.read().splitlines()
    v = [int(x) for x in lines[0].split()[1:]] + [0] * 8
    ctxt = next((int(l.split()[1]) for l in lines if l.startswith("ctxt ")), 0)
    idle = v[3] + v[4]
    total = sum(v[:8])
    return total - idle, total, v[5] + v[6], v[7], ctxt


def machine_interrupts():
    """Interrupts of every CPU since boot, by /proc/interrupts' name for the per-CPU ones: LOC (local
    timer), RES (rescheduling), CAL (function call), TLB (TLB shootdown). On a virtual machine each
    inter-processor interrupt (RES, CAL, TLB) costs exits to the hypervisor on both sides."""
    out = {}
    try:
        with open("/proc/interrupts") as f:
            for line in f:
                name, _, rest = line.partition(":")
                name = name.strip()
                if name in ("LOC", "RES", "CAL", "TLB"):
                    out[name] = sum(int(x) for x in rest.split() if x.isdigit())
    except OSError:
        pass
    return out


class Shield:
    """Defers SIGTERM's KeyboardInterrupt while a run stops what it started: an interrupt that landed
    inside a `finally` would skip the stops after it and leave processes running."""
    depth = 0
    pending = False

    def __enter__(self):
        Shield.depth += 1

    def __exit__(self, *exc):
        Shield.depth -= 1
        if Shield.depth == 0 and Shield.pending:
            Shield.pending = False
            raise KeyboardInterrupt

    @staticmethod
    def on_signal(signum, _frame):
        if Shield.depth:
            Shield.pending = True
        else:
            raise KeyboardInterrupt


def wait_until(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


# ----------------------------------------------------------------------------------------
# Corpora
def load_manifest(d):
    rows = []
    with open(os.path.join(d, "manifest.tsv")) as f:
        next(f)
        for line in f:
            p = line.rstrip("\n").split("\t")
            rows.append({"file": p[0], "class": p[1], "expected": p[2], "kind": p[3], "bytes": int(p[4])})
    return rows


WARMUP_ID_PREFIX = "warmup-"
BENCH_ID = re.compile(rb"^X-Bench-Id:[ \t]*(\S+)", re.M | re.I)
# Header with which Breakwater declares a message accepted without a full scan (on-limit accept).
NOT_SCANNED = re.compile(rb"^X-Breakwater-Not-Scanned:", re.M | re.I)
LIMIT_NAME = "Heuristics.Limits.Exceeded"


class WarmupCorpus:
    """Small distinct ham messages sent before a measured SMTP run and not counted (--warmup): at
    200 clients a fresh Postfix forks 200 smtpd and, with a milter that holds each message, 200
    cleanup processes, which a live MX has long running. Postfix forks them at about 50 a second
    here, so a cold 200-client run of 1,000 messages spends its first 4 s forking (measured
    2026-11-28: 170 smtpd and 180 cleanup started after a warm-up of 400 messages that lasted 0.9 s).
    The messages warm Postfix, not the filters: distinct, so that no clean-file cache learns
    anything from them, and too short for a wave fingerprint, so that Breakwater's wave store does
    not fill with them (on a live MX it would be full: up to wave-store-size more memory)."""

    def __init__(self, directory, count, start=0):
        self.name = f"warmup-{start}-{count}"
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.paths = []
        for i in range(start, start + count):
            path = os.path.join(directory, f"{i:05d}.eml")
            if not os.path.exists(path):
                msg = (f"From: warm@bench.test\r\nTo: user@dest.bench.test\r\nSubject: warm-up {i}\r\n"
                       f"Message-ID: <warmup-{i}@bench.test>\r\nX-Bench-Id: {WARMUP_ID_PREFIX}{i}\r\n\r\n"
                       f"Warm-up message {i}.\r\n")
                with open(path, "w", newline="") as f:
                    f.write(msg)
            self.paths.append(path)

    def __len__(self):
        return len(self.paths)


class Corpus:
    def __init__(self, name, directory, limit=None):
        self.name, self.dir = name, directory
        rows = load_manifest(directory)
        if limit:
            rows = rows[:limit]
        self.rows = rows
        self.paths = [os.path.join(directory, r["file"]) for r in rows]
        self.ids = []
        for p in self.paths:
            with open(p, "rb") as f:
                head = f.read(65536)
            head = head.split(b"\r\n\r\n", 1)[0]
            m = BENCH_ID.search(head)
            if not m:
                raise RuntimeError(f"{p}: no X-Bench-Id header (not a corpus.py message?)")
            self.ids.append(m.group(1).decode())
        self.total_bytes = sum(r["bytes"] for r in rows)
        sizes = sorted(r["bytes"] for r in rows)
        self.median_bytes = sizes[len(sizes) // 2]

    def __len__(self):
        return len(self.rows)

    def describe(self):
        cnt = {}
        for r in self.rows:
            cnt[r["class"]] = cnt.get(r["class"], 0) + 1
        return {"name": self.name, "dir": self.dir, "messages": len(self), "classes": cnt,
                "total_mb": round(self.total_bytes / 1e6, 1), "median_kb": round(self.median_bytes / 1e3, 1)}


# The corpora's sizes. Each measured run must last long enough for Postfix to reach a steady state
# (its queue manager and delivery to the sink running beside the intake, every smtpd and cleanup
# process it needs started): at 200 clients, 980 wave messages passed in 1.2-1.9 s and 1,000 mixed
# ones in 5-6 s, while Postfix started 60-150 more processes. In one invocation each (2026-11-29,
# out/bench/milter-s16a and -s16b), Breakwater's 200/32 ratio was 0.78 on the 980-message wave and
# 0.91 on 4,900 messages, 0.90 on 1,000 mixed messages and 0.91 on 3,000.
MIXED_COUNT = 3000
WAVE_SPAM, WAVE_HAM = 3920, 980
WAVE_SOURCE_COUNT = 15080   # corpus.py --seed 7 makes 26 % spam: enough for WAVE_SPAM


def generate_corpora(generator, cache_dir):
    """The mixed corpus (--seed 1 --count MIXED_COUNT) and the wave (--seed 7 spam plus small ham)."""
    os.makedirs(cache_dir, exist_ok=True)
    mixed = os.path.join(cache_dir, f"mixed-1-{MIXED_COUNT}")
    if not os.path.exists(os.path.join(mixed, "manifest.tsv")):
        log(f"generating the mixed corpus in {mixed}")
        subprocess.run([sys.executable, generator, "--seed", "1", "--count", str(MIXED_COUNT), "--out", mixed],
                       check=True)
    src = os.path.join(cache_dir, f"seed7-{WAVE_SOURCE_COUNT}")
    if not os.path.exists(os.path.join(src, "manifest.tsv")):
        log(f"generating the wave source corpus in {src}")
        subprocess.run([sys.executable, generator, "--seed", "7", "--count", str(WAVE_SOURCE_COUNT),
                        "--large-frac", "0", "--out", src], check=True)
    return mixed, make_wave(src, os.path.join(cache_dir, f"wave-7-{WAVE_SPAM + WAVE_HAM}"))


def make_wave(src, out, n_spam=WAVE_SPAM, n_ham=WAVE_HAM, ham_max=6000):
    """A spam wave from a corpus.py directory: its spam (the Mini Cooper and phishing waves, near-
    identical messages) plus small ham, 80 % spam, shuffled with a fixed seed."""
    if os.path.exists(os.path.join(out, "manifest.tsv")):
        return out
    rows = load_manifest(src)
    spam = [r for r in rows if r["class"] == "spam"][:n_spam]
    ham = [r for r in rows if r["class"] == "ham" and r["bytes"] <= ham_max][:n_ham]
    if len(spam) < n_spam or len(ham) < n_ham:
        raise RuntimeError(f"{src}: not enough spam ({len(spam)}) or small ham ({len(ham)}) for the wave")
    sel = spam + ham
    random.Random(7).shuffle(sel)
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with open(os.path.join(tmp, "manifest.tsv"), "w") as f:
        f.write("filename\tclass\texpected\tkind\tbytes\n")
        for i, r in enumerate(sel):
            name = "%06d.eml" % (i + 1)
            shutil.copyfile(os.path.join(src, r["file"]), os.path.join(tmp, name))
            f.write(f"{name}\t{r['class']}\t{r['expected']}\t{r['kind']}\t{r['bytes']}\n")
    os.rename(tmp, out)
    return out


# ----------------------------------------------------------------------------------------
# Processes we start
class Proc:
    """A daemon started in the foreground; stopped with SIGTERM, then SIGKILL, by PID."""

    def __init__(self, name, argv, log_path, cwd=None, env=None):
        self.name, self.argv, self.log_path = name, argv, log_path
        self._log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                  cwd=cwd, env=env, start_new_session=True)

    @property
    def pid(self):
        return self.p.pid

    def running(self):
        return self.p.poll() is None

    def stop(self, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self._log.close()
        return self.p.returncode

    def log_tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except OSError:
            return ""


# Postfix: a private relay-to-sink instance, configured like the test harness's (IntegrationTests/harness/postfix.py:
# no chroot, postlogd for maillog_file, no DNS; in_flow_delay = 0, smtpd_error_sleep_time = 0 and no
# client limits, without which a reject-heavy load measures Postfix's flow control), plus the bench's
# own settings: process limits for 200 clients, no message rate limit, its own names and log path.
# (The harness also sets anvil_rate_time_unit = 60s, Postfix's default.)
def master_cf(port, smtpd_limit):
    """The harness's master.cf, with the smtpd process limit set to `smtpd_limit`."""
    smtpd, services = harness_postfix.MASTER_CF.split("\n", 1)
    assert smtpd == "127.0.0.1:{port} inet n - n - - smtpd", smtpd
    return f"127.0.0.1:{port} inet n - n - {smtpd_limit} smtpd\n" + services


class Postfix:
    def __init__(self, base, sink_port, milter=None, smtpd_limit=250):
        self.base = base
        self.etc, self.spool = os.path.join(base, "etc"), os.path.join(base, "spool")
        self.data = os.path.join(base, "data")
        self.maillog = os.path.join(base, "maillog")
        self.sink_port, self.milter, self.smtpd_limit = sink_port, milter, smtpd_limit
        self.port = self.master = None

    def main_cf(self):
        """The harness's main.cf (IntegrationTests/harness/postfix.py) with the bench's overrides; same paths
        (base/etc, base/spool, base/data) except the maillog, which is base/maillog here."""
        overrides = {
            "myhostname": "mx.bench.test", "mydomain": "bench.test",
            "local_transport": "error:5.1.1 no local delivery",
            "maillog_file": self.maillog,
            "smtpd_client_message_rate_limit": "0",
            "default_process_limit": str(max(100, self.smtpd_limit + 50)),
        }
        pf = harness_postfix.PostfixInstance(os.path.dirname(self.base), self.sink_port, milters=self.milter,
                                             settings=overrides, name=os.path.basename(self.base))
        assert (pf.config_dir, pf.queue_dir, pf.data_dir) == (self.etc, self.spool, self.data)
        return pf.main_cf()

    def _postfix(self, *args, timeout=60):
        env = dict(os.environ)
        env.pop("MAIL_CONFIG", None)
        return subprocess.run(["postfix", "-c", self.etc, *args], capture_output=True, text=True,
                              timeout=timeout, env=env)

    def start(self):
        self.port = free_port()
        for d in (self.etc, self.spool, self.data):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.base, 0o755)
        shutil.chown(self.data, "postfix", "postfix")
        os.chmod(self.data, 0o700)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(self.main_cf())
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(master_cf(self.port, self.smtpd_limit))
        for args in (("check",), ("start",)):
            r = self._postfix(*args)
            if r.returncode != 0:
                raise RuntimeError(f"postfix {args[0]} failed: {r.stdout}{r.stderr}\n{self.log_tail()}")
        pidfile = os.path.join(self.spool, "pid", "master.pid")

        def up():
            try:
                with open(pidfile) as f:
                    self.master = int(f.read().strip())
            except (OSError, ValueError):
                return False
            return procs.alive(self.master) and procs.tcp_listening(self.port)
        wait_until(up, 30, "postfix to listen")

    def queue_empty(self):
        for q in ("incoming", "active", "deferred", "maildrop", "hold"):
            for _root, _dirs, files in os.walk(os.path.join(self.spool, q)):
                if files:
                    return False
        return True

    def queue_counts(self):
        out = {}
        for q in ("incoming", "active", "deferred", "hold"):
            out[q] = sum(len(files) for _r, _d, files in os.walk(os.path.join(self.spool, q)))
        return out

    def stop(self):
        if not self.master:
            if self.port:
                release_port(self.port)
            return
        pids = [self.master] + descendants(self.master)
        try:
            self._postfix("stop", timeout=30)
        except subprocess.TimeoutExpired:
            pass
        if not procs.wait_gone(self.master, 15):
            procs.kill(self.master)
        for pid in pids[1:]:
            if not procs.wait_gone(pid, 5):
                procs.kill(pid)
        self.master = None
        release_port(self.port)

    def log_tail(self, n=30):
        try:
            with open(self.maillog, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except OSError:
            return ""


class Sink:
    """Postfix's smtp-sink on loopback, dumping every delivered message to one file."""

    def __init__(self, base):
        self.base = base
        self.dump = os.path.join(base, "sink.dump")
        self.port = self.proc = None

    def start(self):
        os.makedirs(self.base, exist_ok=True)
        shutil.chown(self.base, "postfix", "postfix")
        self.port = free_port()
        self.proc = Proc("smtp-sink", ["smtp-sink", "-u", "postfix", "-D", self.dump,
                                       f"127.0.0.1:{self.port}", "1024"],
                         os.path.join(self.base, "sink.log"))
        wait_until(lambda: procs.tcp_listening(self.port) or not self.proc.running(), 10, "smtp-sink")
        if not self.proc.running():
            raise RuntimeError("smtp-sink exited: " + self.proc.log_tail())

    def delivered(self):
        """(X-Bench-Id of every delivered message in delivery order, the ids whose delivered copy says
        it was not fully scanned). Only the top header block of each message counts."""
        ids, not_scanned = [], set()
        try:
            with open(self.dump, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return ids, not_scanned
        # Each dump entry starts with smtp-sink's X-Client-Addr header.
        for entry in re.split(rb"(?m)^X-Client-Addr: ", data)[1:]:
            head = re.split(rb"\r?\n\r?\n", entry, maxsplit=1)[0]
            m = BENCH_ID.search(head)
            bid = m.group(1).decode() if m else None
            if bid and bid.startswith(WARMUP_ID_PREFIX):
                continue  # sent before the measured run (--warmup)
            ids.append(bid)
            if bid and NOT_SCANNED.search(head):
                not_scanned.add(bid)
        return ids, not_scanned

    def stop(self):
        if self.proc:
            self.proc.stop()
        if self.port:
            release_port(self.port)


def postfix_socket_dir(base):
    """A directory for a milter's unix socket that Postfix's smtpd (user postfix) can use: group
    postfix with the setgid bit, so the socket (made with umask 007) gets group postfix."""
    d = os.path.join(base, "sock")
    os.makedirs(d, exist_ok=True)
    shutil.chown(d, group="postfix")
    os.chmod(d, 0o2770)
    return d


class MilterProcess:
    """A milter daemon we start on a fresh socket (unix or loopback TCP); subclasses give its name and
    command line."""
    name = "milter"
    start_timeout = 30

    def __init__(self, binary, base, socket_kind="inet"):
        self.binary, self.base, self.socket_kind = binary, base, socket_kind
        self.port = self.proc = self.path = None

    @property
    def spec(self):
        return f"unix:{self.path}" if self.path else f"inet:{self.port}@127.0.0.1"

    @property
    def milter(self):
        return f"unix:{self.path}" if self.path else f"inet:127.0.0.1:{self.port}"

    def listening(self):
        return procs.unix_listening(self.path) if self.path else procs.tcp_listening(self.port)

    def argv(self):
        raise NotImplementedError

    def start(self):
        os.makedirs(self.base, exist_ok=True)
        if self.socket_kind == "unix":
            self.path = os.path.join(postfix_socket_dir(self.base), "milter.sock")
        else:
            self.port = free_port()
        self.proc = Proc(self.name, self.argv(), os.path.join(self.base, f"{self.name.replace('-', '_')}.log"))
        wait_until(lambda: self.listening() or not self.proc.running(), self.start_timeout, f"{self.name} to listen")
        if not self.proc.running():
            raise RuntimeError(f"{self.name} exited: " + self.proc.log_tail())

    def pids(self):
        return {self.name: [self.proc.pid]}

    def stop(self):
        rc = self.proc.stop() if self.proc else None
        if self.port:
            release_port(self.port)
        return rc


class Breakwater(MilterProcess):
    name = "breakwater"
    start_timeout = 60

    def __init__(self, binary, base, sigs, extra_args=(), socket_kind="inet"):
        super().__init__(binary, base, socket_kind)
        self.sigs, self.extra = sigs, list(extra_args)

    def argv(self):
        spool = os.path.join(self.base, "spool")
        os.makedirs(spool, exist_ok=True)
        return [self.binary, "run", "--socket", self.spec, "--signatures", self.sigs,
                "--workers", "2", "--metrics", "", "--control", os.path.join(self.base, "control.sock"),
                "--local-signatures", os.path.join(self.base, "no-local-signatures"),
                "--spool-directory", spool, *self.extra]


class FloorMilter(MilterProcess):
    """bench/floor_milter.c: libmilter with the verdicts known in advance and no work behind them
    (the floor of any libmilter filter); with `work_us`, the busy floor."""
    name = "floor-milter"

    def __init__(self, binary, base, verdicts, socket_kind="inet", work_us=None, slots=2):
        super().__init__(binary, base, socket_kind)
        self.verdicts = verdicts
        self.work = [str(work_us), str(slots)] if work_us else []

    def argv(self):
        return [self.binary, self.spec, self.verdicts, *self.work]


class ClamavMilter:
    """clamd + clamav-milter from Debian's packages, private configuration, same signatures."""

    def __init__(self, base, sigs, socket_kind="inet"):
        self.base, self.sigs, self.socket_kind = base, sigs, socket_kind
        self.port = self.clamd = self.milter_proc = self.path = None
        self.clamd_sock = os.path.join(base, "clamd.sock")

    def write_configs(self):
        db = os.path.join(self.base, "db")
        os.makedirs(db, exist_ok=True)
        for f in os.listdir(self.sigs):
            shutil.copyfile(os.path.join(self.sigs, f), os.path.join(db, f))
        tmp = os.path.join(self.base, "tmp")
        os.makedirs(tmp, exist_ok=True)
        # Debian's clamd.conf, with the scan limits set to Breakwater's defaults (EngineLimits and
        # max-message-size) and the connection queue of upstream's default (Debian's 15 would refuse
        # clamav-milter's connections at 200 SMTP clients).
        clamd = f"""\
LocalSocket {self.clamd_sock}
FixStaleSocket true
LocalSocketMode 666
Foreground true
LogFile {self.base}/clamd.log
LogTime true
PidFile {self.base}/clamd.pid
TemporaryDirectory {tmp}
DatabaseDirectory {db}
OfficialDatabaseOnly false
SelfCheck 3600
ScanMail true
ScanArchive true
ScanPE true
ScanELF true
ScanOLE2 true
ScanPDF true
ScanHTML true
ScanSWF true
ScanXMLDOCS true
ScanHWP3 true
ArchiveBlockEncrypted false
PhishingSignatures true
PhishingScanURLs true
HeuristicAlerts true
Bytecode true
ReadTimeout 180
CommandReadTimeout 30
SendBufTimeout 200
IdleTimeout 30
MaxThreads 12
MaxQueue 100
MaxConnectionQueueLength 200
StreamMaxLength 25M
MaxScanSize 400M
MaxFileSize 100M
MaxRecursion 17
MaxFiles 10000
MaxScanTime 120000
PCREMatchLimit 100000
PCRERecMatchLimit 2000
PCREMaxFileSize 25M
MaxEmbeddedPE 10M
MaxHTMLNormalize 10M
MaxHTMLNoTags 2M
MaxScriptNormalize 5M
MaxZipTypeRcg 1M
MaxPartitions 50
MaxIconsPE 100
ExtendedDetectionInfo true
"""
        with open(os.path.join(self.base, "clamd.conf"), "w") as f:
            f.write(clamd)
        if self.socket_kind == "unix":
            self.path = os.path.join(postfix_socket_dir(self.base), "clamav-milter.sock")
            sock = f"MilterSocket unix:{self.path}\nMilterSocketMode 660\nMilterSocketGroup postfix"
        else:
            self.port = free_port()
            sock = f"MilterSocket inet:{self.port}@127.0.0.1"
        milter = f"""\
{sock}
FixStaleSocket true
Foreground true
PidFile {self.base}/clamav-milter.pid
TemporaryDirectory {tmp}
ClamdSocket unix:{self.clamd_sock}
ReadTimeout 120
OnClean Accept
OnInfected Reject
OnFail Defer
RejectMsg Rejected: %v
AddHeader Replace
MaxFileSize 25M
SupportMultipleRecipients false
LogFile {self.base}/clamav-milter.log
LogTime true
LogInfected Basic
LogClean Off
"""
        with open(os.path.join(self.base, "clamav-milter.conf"), "w") as f:
            f.write(milter)

    def start(self):
        os.makedirs(self.base, exist_ok=True)
        self.write_configs()
        self.clamd = Proc("clamd", ["clamd", "--foreground", "-c", os.path.join(self.base, "clamd.conf")],
                          os.path.join(self.base, "clamd.out"))
        wait_until(lambda: procs.unix_listening(self.clamd_sock) or not self.clamd.running(), 120, "clamd")
        if not self.clamd.running():
            raise RuntimeError("clamd exited: " + self.clamd.log_tail())
        self.milter_proc = Proc("clamav-milter", ["clamav-milter", "-c", os.path.join(self.base, "clamav-milter.conf")],
                                os.path.join(self.base, "clamav-milter.out"))
        wait_until(lambda: (procs.unix_listening(self.path) if self.path else procs.tcp_listening(self.port))
                   or not self.milter_proc.running(), 60, "clamav-milter")
        if not self.milter_proc.running():
            raise RuntimeError("clamav-milter exited: " + self.milter_proc.log_tail())

    @property
    def milter(self):
        return f"unix:{self.path}" if self.path else f"inet:127.0.0.1:{self.port}"

    def pids(self):
        return {"clamd": [self.clamd.pid], "clamav-milter": [self.milter_proc.pid]}

    def stop(self):
        if self.milter_proc:
            self.milter_proc.stop()
        if self.clamd:
            self.clamd.stop()
        if self.port:
            release_port(self.port)


# ----------------------------------------------------------------------------------------
# Measuring
class Sampler(threading.Thread):
    """Samples RSS (and threads) of the process groups every `interval` s; keeps the peaks."""

    def __init__(self, groups, postfix_master=None, interval=0.25):
        super().__init__(daemon=True)
        self.groups = groups  # name -> [pid]
        self.master = postfix_master
        self.interval = interval
        self.peak = {}
        self.peak_threads = {}
        self.peak_private = {}
        self.peak_procs = 0
        self._halt = threading.Event()

    def sample(self):
        for name, pids in self.groups.items():
            r = sum(rss_bytes(p) for p in pids)
            self.peak[name] = max(self.peak.get(name, 0), r)
            st = [status_fields(p, "Threads", "RssAnon") for p in pids]
            t = sum(x["Threads"] for x in st)
            self.peak_threads[name] = max(self.peak_threads.get(name, 0), t)
            a = sum(x["RssAnon"] for x in st) * 1024
            self.peak_private[name] = max(self.peak_private.get(name, 0), a)
        if self.master:
            pids = [self.master] + descendants(self.master)
            self.peak_procs = max(self.peak_procs, len(pids))
            r = sum(rss_bytes(p) for p in pids)
            self.peak["postfix"] = max(self.peak.get("postfix", 0), r)

    def run(self):
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def finish(self):
        self._halt.set()
        self.join(5)
        self.sample()


def group_cpu_ticks(groups, postfix_master):
    """CPU ticks of the processes involved. Postfix: its master (with the children it reaped)
    plus every live descendant."""
    out = {}
    for name, pids in groups.items():
        t = 0
        for p in pids:
            s = proc_stat(p)
            if s:
                t += s[1] + s[2]
        out[name] = t
    if postfix_master:
        t = 0
        for p in [postfix_master] + descendants(postfix_master):
            s = proc_stat(p)
            if s:
                t += s[1] + s[2]
        out["postfix"] = t
    return out


def pct(values, q):
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def strip_unofficial(name):
    return name[: -len(".UNOFFICIAL")] if name.endswith(".UNOFFICIAL") else name


class Bench:
    def __init__(self, args):
        self.a = args
        self.out = args.out
        self.work = tempfile.mkdtemp(prefix="bw-mbench-", dir=args.workdir)
        os.chmod(self.work, 0o755)
        self.runs = []
        self.loadgen = os.path.join(self.work, "loadgen")
        self.floor_milter = os.path.join(self.work, "floor_milter")
        self.started = []  # objects with stop(), in start order
        self.run_no = 0

    # --- setup ---------------------------------------------------------------
    def build_loadgen(self):
        src = os.path.join(HERE, "loadgen.c")
        r = subprocess.run(["cc", "-O2", "-Wall", "-o", self.loadgen, src], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("cc loadgen.c failed:\n" + r.stderr)
        if any(c in self.a.configs for c in FLOOR_CONFIGS):
            src = os.path.join(HERE, "floor_milter.c")
            r = subprocess.run(["cc", "-O2", "-Wall", "-o", self.floor_milter, src, "-lmilter", "-pthread"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("cc floor_milter.c failed (libmilter-dev: scripts/setup.sh --bench):\n" + r.stderr)

    def write_verdicts(self, corpus):
        """The floor milter's verdicts: every spam and malware message of the corpus, by X-Bench-Id,
        with the signature name the manifest expects."""
        path = os.path.join(self.work, f"{corpus.name}.verdicts")
        if not os.path.exists(path):
            with open(path, "w") as f:
                for bid, row in zip(corpus.ids, corpus.rows):
                    if row["class"] != "ham":
                        f.write(f"{bid}\t{row['expected']}\n")
        return path

    def milter_daemon(self, config, corpus, run_dir):
        """The milter (not yet started) of a configuration; None for Postfix alone."""
        if config == "breakwater":
            return Breakwater(self.a.breakwater, os.path.join(run_dir, "bw"), self.a.signatures, self.a.bw_arg,
                              self.a.milter_socket)
        if config in FLOOR_CONFIGS:
            work = self.scan_cpu_us(corpus) if config == "busy" else None
            return FloorMilter(self.floor_milter, os.path.join(run_dir, "floor"), self.write_verdicts(corpus),
                               self.a.milter_socket, work)
        if config == "clamav":
            return ClamavMilter(os.path.join(run_dir, "clamav"), self.a.signatures, self.a.milter_socket)
        return None

    def scan_cpu_us(self, corpus):
        """The busy floor's CPU per message: `breakwater scan --jobs 2`'s machine CPU per message on this
        corpus (the median of this invocation's scan runs; one is run first if there is none)."""
        vals = [r["machine_cpu_ms_per_msg"] for r in self.runs
                if r["kind"] == "scan" and r["corpus"] == corpus.name and r.get("machine_cpu_ms_per_msg")]
        if not vals:
            vals = [self.run_scan(corpus, 0)["machine_cpu_ms_per_msg"]]
        return max(1, int(statistics.median(vals) * 1000))

    def write_list(self, corpus):
        path = os.path.join(self.work, f"{corpus.name}.list")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write("\n".join(corpus.paths) + "\n")
        return path

    # --- running the load generator -----------------------------------------------------
    def warm_up(self, postfix, clients, run_dir, groups, sink):
        """Sends batches of `clients` warm-up messages: N batches (--warmup N), or with --warmup auto
        until Postfix runs at least as many smtpd processes as there are clients, or their number
        stopped growing for two batches (at most 40 batches)."""
        auto = self.a.warmup == "auto"
        batches = 40 if auto else int(self.a.warmup)
        sent, wall, stalled, last = 0, 0.0, 0, -1
        for b in range(batches):
            warm = WarmupCorpus(os.path.join(self.work, "warmup"), clients, start=b * clients)
            w = self.drive("smtp", postfix.port, clients, warm, run_dir, groups, postfix, sink)
            sent += len(warm)
            wall += w["wall_s"]
            n = postfix_process_counts(postfix.master).get("smtpd", 0)
            stalled = stalled + 1 if n <= last else 0
            last = max(last, n)
            if auto and (n >= clients * 0.95 or stalled >= 2):
                break
        counts = postfix_process_counts(postfix.master)
        log(f"  warm-up: {sent} messages in {wall:.1f} s; Postfix runs {counts.get('smtpd', 0)} smtpd, "
            f"{counts.get('cleanup', 0)} cleanup")
        return {"messages": sent, "wall_s": wall, "smtpd": counts.get("smtpd", 0),
                "cleanup": counts.get("cleanup", 0)}

    def drive(self, mode, port, clients, corpus, run_dir, groups, postfix=None, sink=None, host="127.0.0.1"):
        """Runs loadgen; returns the measurement dict (without correctness)."""
        out_file = os.path.join(run_dir, "attempts.tsv")
        argv = [self.loadgen, mode, host, str(port or 0), str(clients), self.write_list(corpus), out_file,
                "--max-attempts", str(self.a.max_attempts), "--retry-delay-ms", str(self.a.retry_delay_ms),
                "--timeout-s", str(self.a.session_timeout)]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            line = p.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError(f"loadgen did not start: {line!r}")
            groups = dict(groups)
            groups["loadgen"] = [p.pid]
            if sink:
                groups["sink"] = [sink.proc.pid]
            master = postfix.master if postfix else None
            sampler = Sampler(groups, master, self.a.sample_interval)
            sampler.sample()
            cpu0 = group_cpu_ticks(groups, master)
            m0 = machine_cpu_ticks()
            i0 = machine_interrupts()
            b0 = own_cpu_ms()
            t0 = time.monotonic()
            sampler.start()
            p.stdin.write("GO\n")
            p.stdin.flush()
            summary = ""
            for line in p.stdout:
                if line.startswith("DONE"):
                    summary = line
            p.wait()
            t_replies = time.monotonic()
            drained = True
            if postfix:
                # Count Postfix's delivery to the sink in the CPU figure: wait for its queue to empty.
                end = time.monotonic() + self.a.drain_timeout
                while not postfix.queue_empty() and time.monotonic() < end:
                    time.sleep(0.05)
                drained = postfix.queue_empty()
            t1 = time.monotonic()
            m1 = machine_cpu_ticks()
            i1 = machine_interrupts()
            b1 = own_cpu_ms()
            cpu1 = group_cpu_ticks(groups, master)
            sampler.finish()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        lg = dict(kv.split("=", 1) for kv in summary.split()[1:]) if summary else {}
        attempts = []
        with open(out_file) as f:
            for line in f:
                x = line.rstrip("\n").split("\t")
                attempts.append({"idx": int(x[0]), "attempt": int(x[1]), "stage": x[2], "code": int(x[3]),
                                 "lat_us": int(x[4]), "start_us": int(x[5]), "end_us": int(x[6]),
                                 "text": x[7] if len(x) > 7 else ""})
        ncpu = os.cpu_count() or 1
        busy = m1[0] - m0[0]
        tot = m1[1] - m0[1]
        ms_per_tick = 1000.0 / CLK_TCK
        own = {k: (cpu1.get(k, 0) - cpu0.get(k, 0)) * ms_per_tick for k in cpu1}
        own["loadgen"] = (int(lg.get("user_us", 0)) + int(lg.get("sys_us", 0))) / 1000.0
        return {
            "attempts": attempts,
            "wall_s": int(lg.get("wall_us", 0)) / 1e6 if lg else t_replies - t0,
            "window_s": t1 - t0,
            "drained": drained,
            # The machine's CPU less this script's own (the sampler reads /proc for every Postfix process
            # each interval: with 400 of them that is a fair share of a core, and it scales with the
            # run's length, so it would weigh on the slower configurations most).
            "machine_cpu_ms": busy * ms_per_tick - (b1 - b0),
            "bench_cpu_ms": b1 - b0,
            # Part of the machine figure that no process's account holds (see machine_cpu_ticks).
            "irq_cpu_ms": (m1[2] - m0[2]) * ms_per_tick,
            "steal_cpu_ms": (m1[3] - m0[3]) * ms_per_tick,
            # The machine's context switches (each costs scheduler time that no process is wholly
            # charged for).
            "context_switches": m1[4] - m0[4],
            "interrupts": {k: i1[k] - i0.get(k, 0) for k in i1},
            "machine_util": busy / tot if tot else None,
            "ncpu": ncpu,
            "own_cpu_ms": own,
            "peak_rss": dict(sampler.peak),
            "peak_threads": dict(sampler.peak_threads),
            "peak_private": dict(sampler.peak_private),
            "peak_postfix_procs": sampler.peak_procs,
        }

    # --- correctness ------------------------------------------------------------------
    def judge(self, corpus, m, config, delivered=None, not_scanned=()):
        """Fills in per-run figures and correctness from the attempts."""
        by_idx = {}
        for a in m.pop("attempts"):
            by_idx.setdefault(a["idx"], []).append(a)
        n = len(corpus)
        final_lat, accepted, rejected = [], set(), set()
        tempfails = errors = timeouts = lost = deferred = 0
        wrong, notes = [], []
        stage_4xx = {}
        filtering = config != "postfix"
        declared_limit = []
        ns_idx = {i for i, bid in enumerate(corpus.ids) if bid in not_scanned}
        for i in range(n):
            att = sorted(by_idx.get(i, []), key=lambda a: a["attempt"])
            for a in att:
                if 400 <= a["code"] < 500:
                    tempfails += 1
                    stage_4xx[a["stage"]] = stage_4xx.get(a["stage"], 0) + 1
                elif a["code"] == -1:
                    timeouts += 1
                elif a["code"] < 0:
                    errors += 1
            if not att:
                lost += 1
                wrong.append((i, "no attempt recorded"))
                continue
            last = att[-1]
            code = last["code"]
            if 400 <= code < 500:
                # Still deferred when the client gave up: not lost (the sending MTA keeps it), not answered.
                deferred += 1
                if deferred <= 3:
                    notes.append(f"{corpus.rows[i]['file']}: still 4xx after {len(att)} attempts: {last['stage']} {last['text']}")
                continue
            if not (200 <= code < 300 or 500 <= code < 600):
                lost += 1
                wrong.append((i, f"no answer after {len(att)} attempts: {last['stage']} {code} {last['text']}"))
                continue
            final_lat.append(last["lat_us"] / 1000.0)
            row = corpus.rows[i]
            if 200 <= code < 300:
                accepted.add(i)
                if filtering and row["class"] != "ham":
                    if i in ns_idx or "X-Breakwater-Not-Scanned" in last["text"]:
                        # Accepted under on-limit = accept, and the message says so: not a wrong verdict.
                        declared_limit.append(row["file"])
                    else:
                        wrong.append((i, f"{row['class']} {row['expected']} accepted"))
            else:
                rejected.add(i)
                if not filtering:
                    wrong.append((i, f"rejected by Postfix alone: {code} {last['text']}"))
                elif row["class"] == "ham":
                    wrong.append((i, f"ham rejected: {code} {last['text']}"))
                elif row["expected"] not in last["text"]:
                    wrong.append((i, f"rejected without the expected name {row['expected']}: {code} {last['text']}"))
        done = len(accepted) + len(rejected)
        sink = {}
        if delivered is not None:
            idx_of = {bid: i for i, bid in enumerate(corpus.ids)}
            got = {}
            unknown = 0
            for bid in delivered:
                if bid in idx_of:
                    got[idx_of[bid]] = got.get(idx_of[bid], 0) + 1
                else:
                    unknown += 1
            missing = [i for i in accepted if got.get(i, 0) == 0]
            dup = [i for i, c in got.items() if c > 1]
            leaked = [i for i in got if i in rejected]
            extra = [i for i in got if i not in accepted and i not in rejected]
            sink = {"delivered": len(delivered), "missing": len(missing), "duplicates": len(dup),
                    "rejected_but_delivered": len(leaked), "unanswered_but_delivered": len(extra),
                    "unknown": unknown}
            for i in missing[:5]:
                wrong.append((i, "accepted but not at the sink"))
            for i in leaked[:5]:
                wrong.append((i, "rejected but delivered"))
        m.update({
            "messages": n, "answered": done, "accepted": len(accepted), "rejected": len(rejected),
            "tempfail_answers": tempfails, "tempfail_by_stage": stage_4xx, "errors": errors,
            "accepted_over_limit_declared": declared_limit,
            "timeouts": timeouts, "lost": lost, "still_deferred": deferred, "notes": notes,
            "wrong_verdicts": len([w for w in wrong if "sink" not in w[1] and "delivered" not in w[1]
                                   and "no answer" not in w[1] and "no attempt" not in w[1]]),
            "problems": [f"{corpus.rows[i]['file']}: {why}" for i, why in wrong[:20]],
            "problem_count": len(wrong),
            "sink": sink,
            "msgs_per_s": done / m["wall_s"] if m["wall_s"] else None,
            "lat_p50_ms": pct(final_lat, 0.5), "lat_p99_ms": pct(final_lat, 0.99),
            "machine_cpu_ms_per_msg": m["machine_cpu_ms"] / done if done else None,
            "own_cpu_ms_per_msg": sum(m["own_cpu_ms"].values()) / done if done else None,
        })
        m["correct"] = (m["problem_count"] == 0 and lost == 0 and m["drained"]
                        and (not sink or (sink["missing"] == 0 and sink["duplicates"] == 0
                                          and sink["rejected_but_delivered"] == 0)))
        return m

    # --- the runs ---------------------------------------------------------------
    def new_run_dir(self, label):
        self.run_no += 1
        d = os.path.join(self.work, f"{self.run_no:03d}-{label}")
        os.makedirs(d)
        os.chmod(d, 0o755)
        return d

    def close_run_dir(self, run_dir, label):
        """Copies a run's logs to the output directory, then removes its working directory (unless
        --keep-work)."""
        dest = os.path.join(self.out, "logs", f"{self.run_no:03d}-{label}")
        os.makedirs(dest, exist_ok=True)
        for root, _dirs, files in os.walk(run_dir):
            for f in files:
                if f.endswith((".log", ".out", "maillog", ".conf", "attempts.tsv", "main.cf", "master.cf")):
                    src = os.path.join(root, f)
                    rel = os.path.relpath(src, run_dir).replace(os.sep, "_")
                    try:
                        shutil.copyfile(src, os.path.join(dest, rel))
                    except OSError:
                        pass
        if not self.a.keep_work:
            shutil.rmtree(run_dir, ignore_errors=True)

    def run_smtp(self, config, corpus, clients, round_no):
        label = f"{corpus.name}-{config}-c{clients}-r{round_no}"
        run_dir = self.new_run_dir(label)
        log(f"run {label}")
        sink = Sink(os.path.join(run_dir, "sink"))
        daemon = None
        postfix = None
        rec = {"kind": "smtp", "config": config, "corpus": corpus.name, "clients": clients, "round": round_no}
        try:
            sink.start()
            groups = {}
            milter = None
            daemon = self.milter_daemon(config, corpus, run_dir)
            if daemon:
                daemon.start()
                groups = daemon.pids()
                milter = daemon.milter
            postfix = Postfix(os.path.join(run_dir, "postfix"), sink.port, milter, self.a.smtpd_limit)
            postfix.start()
            time.sleep(self.a.settle)
            if self.a.warmup != "0":
                rec["warmup"] = self.warm_up(postfix, clients, run_dir, groups, sink)
            m = self.drive("smtp", postfix.port, clients, corpus, run_dir, groups, postfix, sink)
            if not m["drained"]:
                m["queue_left"] = postfix.queue_counts()
            if daemon:
                for name, pids in groups.items():
                    m.setdefault("vmhwm", {})[name] = sum(status_field(p, "VmHWM") for p in pids) * 1024
            rec.update(self.judge(corpus, m, config, *sink.delivered()))
        except Exception as e:  # a failed run is recorded, the benchmark goes on
            rec["error"] = f"{type(e).__name__}: {e}"
            log(f"  FAILED: {rec['error']}")
        finally:
            with Shield():
                if postfix:
                    postfix.stop()
                if daemon:
                    rc = daemon.stop()
                    if config == "breakwater":
                        rec["exit_status"] = rc
                sink.stop()
                self.close_run_dir(run_dir, label)
        self.report_run(rec)
        self.runs.append(rec)
        return rec

    def run_direct(self, corpus, round_no, which="breakwater"):
        """(d) `breakwater run`, or (e) the floor milter (which="floor"), driven directly by loadgen."""
        label = f"{corpus.name}-{which}-direct-r{round_no}"
        run_dir = self.new_run_dir(label)
        log(f"run {label}")
        rec = {"kind": "direct", "config": f"{which}-direct", "corpus": corpus.name,
               "clients": self.a.direct_clients, "round": round_no}
        bw = self.milter_daemon(which, corpus, run_dir)
        try:
            bw.start()
            time.sleep(self.a.settle)
            groups = bw.pids()
            m = self.drive("milter", bw.port, self.a.direct_clients, corpus, run_dir, groups,
                           host=f"unix:{bw.path}" if bw.path else "127.0.0.1")
            for name, pids in groups.items():
                m.setdefault("vmhwm", {})[name] = status_field(pids[0], "VmHWM") * 1024
            rec.update(self.judge(corpus, m, rec["config"]))
        except Exception as e:
            rec["error"] = f"{type(e).__name__}: {e}"
            log(f"  FAILED: {rec['error']}")
        finally:
            with Shield():
                rc = bw.stop()
                if which == "breakwater":
                    rec["exit_status"] = rc
                self.close_run_dir(run_dir, label)
        self.report_run(rec)
        self.runs.append(rec)
        return rec

    def run_scan(self, corpus, round_no):
        """`breakwater scan --jobs 2` over the same files: the pure scan's msgs/s and CPU."""
        label = f"{corpus.name}-scan-r{round_no}"
        self.run_no += 1
        log(f"run {label}")
        rec = {"kind": "scan", "config": "scan-jobs2", "corpus": corpus.name, "clients": None, "round": round_no}
        # The paths go in a list file: swift-argument-parser's cost per command-line PATH grows with the
        # number before it (0.5 s of CPU for 4,900 paths), which would count as scan time here.
        argv = [self.a.breakwater, "scan", "--jobs", "2", "--signatures", self.a.signatures,
                "--files-from", self.write_list(corpus)]
        # libclamav writes a few temporary files per message: give the scan a fresh directory on the same
        # file system as `breakwater run`'s spool directory (their cost differs a lot between file systems
        # and even between directories of a busy ext4).
        tmp = os.path.join(self.work, f"{self.run_no:03d}-{label}-tmp")
        os.makedirs(tmp)
        env = dict(os.environ, TMPDIR=tmp)
        ru0 = os.times()
        m0 = machine_cpu_ticks()
        t0 = time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True, env=env)
        shutil.rmtree(tmp, ignore_errors=True)
        t1 = time.monotonic()
        m1 = machine_cpu_ticks()
        ru1 = os.times()
        done = len(corpus)
        found = {}
        errors = 0
        for line in r.stdout.splitlines():
            if ": " not in line:
                continue
            path, _, verdict = line.rpartition(": ")
            if verdict.endswith(" FOUND"):
                found.setdefault(path, []).append(strip_unofficial(verdict[:-6]))
            elif verdict.startswith("ERROR"):
                errors += 1
        wrong, limits = [], []
        for p, row in zip(corpus.paths, corpus.rows):
            names = found.get(p, [])
            if row["class"] == "ham" and names:
                wrong.append(f"{row['file']}: ham detected as {names}")
            elif row["class"] != "ham" and row["expected"] not in names:
                if any(n.startswith(LIMIT_NAME) for n in names):
                    limits.append(row["file"])
                else:
                    wrong.append(f"{row['file']}: expected {row['expected']}, got {names}")
        busy = (m1[0] - m0[0]) * 1000.0 / CLK_TCK
        own = ((ru1.children_user - ru0.children_user) + (ru1.children_system - ru0.children_system)) * 1000.0
        summary = [l for l in r.stdout.splitlines() if "msgs/s" in l]
        own_rate = None
        if summary:
            mm = re.search(r"msgs/s: ([0-9.]+)", summary[-1])
            own_rate = float(mm.group(1)) if mm else None
        rec.update({"exit_status": r.returncode, "wall_s": t1 - t0, "msgs_per_s": done / (t1 - t0),
                    "machine_cpu_ms_per_msg": busy / done, "own_cpu_ms_per_msg": own / done,
                    "messages": done, "wrong_verdicts": len(wrong), "scan_errors": errors,
                    "reported_msgs_per_s": own_rate, "limit_hits": limits,
                    "problems": wrong[:20], "summary_line": summary[-1] if summary else r.stderr.strip()[-300:],
                    "correct": not wrong and errors == 0})
        self.report_run(rec)
        self.runs.append(rec)
        return rec

    def report_run(self, rec):
        if "error" in rec:
            return
        rss = rec.get("peak_rss", {})
        mb = lambda b: f"{b / 1048576:.0f}MB"
        extra = " ".join(f"{k}={mb(v)}" for k, v in sorted(rss.items()) if k not in ("loadgen",))
        log(f"  {rec.get('msgs_per_s') or 0:7.1f} msg/s  p50/p99 {rec.get('lat_p50_ms') or 0:.0f}/{rec.get('lat_p99_ms') or 0:.0f} ms"
            f"  cpu {rec.get('machine_cpu_ms_per_msg') or 0:.1f} (own {rec.get('own_cpu_ms_per_msg') or 0:.1f}) ms/msg"
            f"  4xx={rec.get('tempfail_answers', 0)} lost={rec.get('lost', 0)} wrong={rec.get('wrong_verdicts', 0)}"
            f" correct={rec.get('correct')} {extra}")
        for p in rec.get("problems", [])[:3]:
            log(f"    problem: {p}")

    # --- the whole benchmark ------------------------------------------------------------
    def run(self, corpora):
        self.build_loadgen()
        configs = [c for c in ALL_CONFIGS if c in self.a.configs]
        for rnd in range(1, self.a.rounds + 1):
            for ci, corpus in enumerate(corpora):
                # Interleave: the order of configurations rotates every round.
                shift = (rnd - 1 + ci) % len(configs)
                order = configs[shift:] + configs[:shift]
                if self.a.direct:
                    self.run_scan(corpus, rnd)
                    self.run_direct(corpus, rnd)
                    if "floor" in configs:
                        self.run_direct(corpus, rnd, "floor")
                for clients in self.a.clients:
                    for config in order:
                        self.run_smtp(config, corpus, clients, rnd)
                self.save(corpora)
        self.save(corpora)

    def stop_all(self):
        pass

    # --- results -----------------------------------------------------------------
    def medians(self):
        groups = {}
        for r in self.runs:
            if "error" in r:
                continue
            groups.setdefault((r["corpus"], r["config"], r["clients"]), []).append(r)

        def med(rs, key, sub=None):
            vals = []
            for r in rs:
                v = r.get(key)
                if sub is not None:
                    v = (v or {}).get(sub)
                if v is not None:
                    vals.append(v)
            return statistics.median(vals) if vals else None

        out = {}
        for k, rs in groups.items():
            row = {"runs": len(rs)}
            for key in ("msgs_per_s", "lat_p50_ms", "lat_p99_ms", "machine_cpu_ms_per_msg", "own_cpu_ms_per_msg",
                        "wall_s", "reported_msgs_per_s"):
                row[key] = med(rs, key)
            for name in ("breakwater", "floor-milter", "clamd", "clamav-milter", "postfix", "sink", "loadgen"):
                filters = name in ("breakwater", "floor-milter", "clamd", "clamav-milter")
                for key in ("peak_rss", "peak_threads", "peak_private"):
                    v = med(rs, key, name)
                    if v is not None and (key == "peak_rss" or filters):
                        row.setdefault(key, {})[name] = v
            row["tempfail_answers"] = sum(r.get("tempfail_answers", 0) for r in rs)
            row["tempfail_answers_median"] = med(rs, "tempfail_answers")
            row["lost"] = sum(r.get("lost", 0) for r in rs)
            row["still_deferred"] = sum(r.get("still_deferred", 0) for r in rs)
            row["errors"] = sum(r.get("errors", 0) + r.get("timeouts", 0) for r in rs)
            row["wrong_verdicts"] = sum(r.get("wrong_verdicts", 0) for r in rs)
            row["limit_declared"] = sum(len(r.get("accepted_over_limit_declared", [])) + len(r.get("limit_hits", []))
                                        for r in rs)
            row["all_correct"] = all(r.get("correct") for r in rs)
            out[k] = row
        return out

    def ratios(self, med):
        res = {}
        for corpus in sorted({k[0] for k in med}):
            scan = med.get((corpus, "scan-jobs2", None))
            direct = med.get((corpus, "breakwater-direct", self.a.direct_clients))
            floor = med.get((corpus, "floor-direct", self.a.direct_clients))
            c = {}
            if scan and direct and scan["msgs_per_s"]:
                c["direct_vs_scan"] = direct["msgs_per_s"] / scan["msgs_per_s"]
                if scan.get("reported_msgs_per_s"):
                    c["direct_vs_scan_reported"] = direct["msgs_per_s"] / scan["reported_msgs_per_s"]
            if scan and floor and scan.get("machine_cpu_ms_per_msg") and floor.get("machine_cpu_ms_per_msg"):
                # On a CPU-bound machine msgs/s is cores / CPU-ms per message: a milter that adds no work of
                # its own to the scan still pays libmilter's floor, so direct / scan cannot pass this.
                s_ms, f_ms = scan["machine_cpu_ms_per_msg"], floor["machine_cpu_ms_per_msg"]
                c["direct_ceiling"] = s_ms / (s_ms + f_ms)
                c["floor_cpu_ms"] = f_ms
                if direct and direct.get("machine_cpu_ms_per_msg") is not None:
                    # Breakwater's own CPU beyond the scan and libmilter's floor (wave detection, policy,
                    # the hand-over to a scanner, the log line).
                    c["direct_beyond_floor_cpu_ms"] = direct["machine_cpu_ms_per_msg"] - s_ms - f_ms
            for clients in self.a.clients:
                pf = med.get((corpus, "postfix", clients))
                bw = med.get((corpus, "breakwater", clients))
                cl = med.get((corpus, "clamav", clients))
                fl = med.get((corpus, "floor", clients))
                row = {}
                for key, label in (("machine_cpu_ms_per_msg", "machine"), ("own_cpu_ms_per_msg", "own")):
                    if pf and scan and pf.get(key) is not None and scan.get(key) is not None:
                        if bw and bw.get(key) is not None:
                            row[f"bw_overhead_{label}"] = bw[key] - pf[key] - scan[key]
                        if cl and cl.get(key) is not None:
                            row[f"clamav_overhead_{label}"] = cl[key] - pf[key] - scan[key]
                        b, k = row.get(f"bw_overhead_{label}"), row.get(f"clamav_overhead_{label}")
                        if b is not None and k:
                            row[f"overhead_ratio_{label}"] = b / k
                    if pf and fl and pf.get(key) is not None and fl.get(key) is not None:
                        # What any libmilter filter pays behind this Postfix for the same verdicts, before it
                        # scans: part of both filters' overhead above.
                        row[f"floor_overhead_{label}"] = fl[key] - pf[key]
                        if scan and scan.get(key) is not None:
                            for name, cfg in (("bw", bw), ("clamav", cl)):
                                if cfg and cfg.get(key) is not None:
                                    row[f"{name}_beyond_floor_{label}"] = cfg[key] - fl[key] - scan[key]
                if bw and cl:
                    for key, label in (("machine_cpu_ms_per_msg", "machine"), ("own_cpu_ms_per_msg", "own")):
                        if bw.get(key) is not None and cl.get(key) is not None:
                            row[f"bw_minus_clamav_{label}"] = bw[key] - cl[key]
                    for key, ratio in (("peak_rss", "memory_ratio"), ("peak_private", "private_memory_ratio")):
                        b = bw.get(key, {}).get("breakwater", 0)
                        k = sum(cl.get(key, {}).get(n, 0) for n in ("clamd", "clamav-milter"))
                        if k:
                            row[ratio] = b / k
                c[str(clients)] = row
            for cfg in SCALING_CONFIGS:
                a32, a200 = med.get((corpus, cfg, 32)), med.get((corpus, cfg, 200))
                if a32 and a200 and a32["msgs_per_s"]:
                    c[f"{cfg}_200_vs_32"] = a200["msgs_per_s"] / a32["msgs_per_s"]
            res[corpus] = c
        return res

    def markdown(self, corpora, med, ratios):
        f1 = lambda v, d=1: "–" if v is None else f"{v:.{d}f}"
        mb = lambda v: "–" if v is None else f"{v / 1048576:.0f}"
        L = []
        L.append(f"# Milter benchmark ({_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}, "
                 f"{self.a.rounds} round(s), medians)\n")
        L.append(f"Command: `{' '.join(self.a.argv)}`\n")
        L.append(f"breakwater: `{self.a.breakwater}`; Postfix smtpd process limit {self.a.smtpd_limit}; "
                 f"milter socket: {self.a.milter_socket}; "
                 f"Breakwater flags: `--workers 2 {' '.join(self.a.bw_arg)}` (others default); clamd stops at "
                 f"the first signature (clamd.conf has no all-matches setting; Breakwater reports every one); "
                 f"working directory (Postfix queues, spools, scan temporary files): {self.a.workdir}; load generator: "
                 f"bench/loadgen.c (one epoll thread, C); a 4xx'd message is retried after "
                 f"{self.a.retry_delay_ms} ms, fresh messages first; "
                 + (f"warm-up ({self.a.warmup}): batches of clients small distinct ham messages at the same "
                    f"concurrency before each measured SMTP run, not counted"
                    + (", until Postfix runs as many smtpd processes as there are clients (or their number stops "
                       "growing)" if self.a.warmup == "auto" else "")
                    + " (Postfix's smtpd and cleanup processes are then running, as on a live MX).\n"
                    if self.a.warmup != "0" else "no warm-up (a cold Postfix).\n"))
        for c in corpora:
            d = c.describe()
            L.append(f"- corpus `{c.name}`: {d['messages']} messages {d['classes']}, {d['total_mb']} MB, "
                     f"median {d['median_kb']} KB ({c.dir})")
        L.append("")
        L.append("4xx answers, still 4xx, lost, wrong: summed over the rounds. A 4xx'd message is tried again "
                 f"(at most {self.a.max_attempts} times); 'still 4xx at the end' = messages whose last try was "
                 "4xx when the client gave up (not lost: a sending MTA keeps them), not counted in msgs/s. "
                 "Lost = no 250/5xx/4xx answer at all (connection error, timeout) or accepted but not at the sink. Wrong = a verdict against the manifest "
                 "(ham rejected, spam/malware accepted, rejected without the expected name); (over limit, declared) = "
                 "spam/malware accepted because a scan limit was hit (max-recursion 17 for both filters; Breakwater rejects a nesting limit by default), with "
                 "Breakwater's X-Breakwater-Not-Scanned header (or scan's Heuristics.Limits.Exceeded name) saying so: "
                 "not counted as wrong. clamav-milter accepts such a message as clean, which counts as wrong.\n")
        L.append("CPU-ms/msg: machine = whole machine from /proc/stat (includes anything else running), less this "
                 "script's own CPU (its sampler of /proc, which scales with the run's length); "
                 "own = the processes involved (Postfix tree, milter daemons, sink, load generator). "
                 "RSS: peak of the process (Postfix: all its processes summed, sampled every "
                 f"{self.a.sample_interval}s).\n")
        for c in corpora:
            L.append(f"## {c.name}\n")
            L.append("| configuration | clients | msgs/s | p50 / p99 ms | CPU-ms/msg machine (own) | peak RSS MB | "
                     "4xx answers | still 4xx at the end | lost | wrong (over limit, declared) | correct |")
            L.append("|---|---|---|---|---|---|---|---|---|---|---|")
            scan = med.get((c.name, "scan-jobs2", None))
            if scan:
                L.append(f"| breakwater scan --jobs 2 (no MTA) | – | {f1(scan['msgs_per_s'])} | – | "
                         f"{f1(scan['machine_cpu_ms_per_msg'])} ({f1(scan['own_cpu_ms_per_msg'])}) | – | – | – | – | "
                         f"{scan['wrong_verdicts']} ({scan['limit_declared']}) | {'yes' if scan['all_correct'] else 'NO'} |")
            for cfg, label, proc, short in (
                    ("breakwater-direct", "breakwater run, milter driven directly (no MTA)", "breakwater", "bw"),
                    ("floor-direct", "floor milter (libmilter, verdicts known, no scan), driven directly (no MTA)",
                     "floor-milter", "floor")):
                d = med.get((c.name, cfg, self.a.direct_clients))
                if not d:
                    continue
                L.append(f"| {label} | {self.a.direct_clients} sessions | "
                         f"{f1(d['msgs_per_s'])} | {f1(d['lat_p50_ms'], 0)} / {f1(d['lat_p99_ms'], 0)} | "
                         f"{f1(d['machine_cpu_ms_per_msg'], 2)} ({f1(d['own_cpu_ms_per_msg'], 2)}) | "
                         f"{short} {mb(d.get('peak_rss', {}).get(proc))} | {d['tempfail_answers']} | {d['still_deferred']} | "
                         f"{d['lost']} | {d['wrong_verdicts']} ({d['limit_declared']}) | {'yes' if d['all_correct'] else 'NO'} |")
            for clients in self.a.clients:
                for cfg in ALL_CONFIGS:
                    r = med.get((c.name, cfg, clients))
                    if not r:
                        continue
                    rss = r.get("peak_rss", {})
                    parts = []
                    if "breakwater" in rss:
                        parts.append(f"bw {mb(rss['breakwater'])}")
                    if "floor-milter" in rss:
                        parts.append(f"floor {mb(rss['floor-milter'])}")
                    if "clamd" in rss:
                        parts.append(f"clamd {mb(rss['clamd'])} + milter {mb(rss.get('clamav-milter'))}")
                    parts.append(f"postfix {mb(rss.get('postfix'))}")
                    L.append(f"| {CONFIG_LABEL[cfg]} | {clients} | {f1(r['msgs_per_s'])} | "
                             f"{f1(r['lat_p50_ms'], 0)} / {f1(r['lat_p99_ms'], 0)} | "
                             f"{f1(r['machine_cpu_ms_per_msg'])} ({f1(r['own_cpu_ms_per_msg'])}) | {', '.join(parts)} | "
                             f"{r['tempfail_answers']} | {r['still_deferred']} | {r['lost']} | {r['wrong_verdicts']} ({r['limit_declared']}) | "
                             f"{'yes' if r['all_correct'] else 'NO'} |")
            L.append("")
            rt = ratios.get(c.name, {})
            L.append("| ratio | value | target |")
            L.append("|---|---|---|")
            for clients in self.a.clients:
                row = rt.get(str(clients), {})
                if "bw_overhead_machine" in row or "bw_overhead_own" in row:
                    L.append(f"| overhead CPU-ms/msg at {clients} clients (config − Postfix alone − scan): Breakwater "
                             f"vs clamav-milter+clamd, machine | {f1(row.get('bw_overhead_machine'), 2)} vs "
                             f"{f1(row.get('clamav_overhead_machine'), 2)} = {f1(row.get('overhead_ratio_machine'), 2)} | ≤ 0.5 |")
                    L.append(f"| same, own processes | {f1(row.get('bw_overhead_own'), 2)} vs "
                             f"{f1(row.get('clamav_overhead_own'), 2)} = {f1(row.get('overhead_ratio_own'), 2)} | ≤ 0.5 |")
                if "floor_overhead_machine" in row:
                    L.append(f"| of which libmilter + Postfix's milter client at {clients} clients (floor milter − Postfix "
                             f"alone), machine / own | {f1(row.get('floor_overhead_machine'), 2)} / "
                             f"{f1(row.get('floor_overhead_own'), 2)} | – |")
                    L.append(f"| overhead beyond that floor (config − floor milter − scan), Breakwater vs "
                             f"clamav-milter+clamd, machine / own | {f1(row.get('bw_beyond_floor_machine'), 2)} vs "
                             f"{f1(row.get('clamav_beyond_floor_machine'), 2)} / {f1(row.get('bw_beyond_floor_own'), 2)} vs "
                             f"{f1(row.get('clamav_beyond_floor_own'), 2)} | – |")
                if "bw_minus_clamav_own" in row:
                    L.append(f"| CPU-ms/msg Breakwater − clamav-milter+clamd at {clients} clients (same Postfix: "
                             f"the Postfix and scan terms cancel), machine / own | "
                             f"{f1(row.get('bw_minus_clamav_machine'), 2)} / {f1(row.get('bw_minus_clamav_own'), 2)} | "
                             f"(≤ −0.5 × clamav's overhead) |")
                if "memory_ratio" in row:
                    L.append(f"| peak RSS Breakwater / (clamd + clamav-milter) at {clients} clients | "
                             f"{f1(row['memory_ratio'], 2)} | < 1 |")
                if "private_memory_ratio" in row:
                    L.append(f"| same, private memory (peak RssAnon: without the shared libraries' pages each "
                             f"process counts) | {f1(row['private_memory_ratio'], 2)} | < 1 |")
            for cfg in SCALING_CONFIGS:
                if f"{cfg}_200_vs_32" in rt:
                    L.append(f"| msgs/s at 200 clients / at 32, {CONFIG_LABEL[cfg]} | {f1(rt[f'{cfg}_200_vs_32'], 2)} | "
                             f"{'≥ 0.9' if cfg == 'breakwater' else '–'} |")
            for key, label, digits, target in (
                    ("direct_vs_scan", f"breakwater run driven directly ({self.a.direct_clients} sessions) / breakwater "
                     "scan --jobs 2, msgs/s (scan timed from outside, start-up included)", 2, "≥ 0.9"),
                    ("direct_vs_scan_reported", "same, against the msgs/s that `breakwater scan` reports itself "
                     "(scanning only)", 2, "≥ 0.9"),
                    ("direct_ceiling", "ceiling of the first ratio for any libmilter filter: scan CPU-ms / (scan + "
                     f"floor milter's, {f1(rt.get('floor_cpu_ms'), 3)} ms), machine", 2, "–"),
                    ("direct_beyond_floor_cpu_ms", "Breakwater driven directly: CPU-ms/msg beyond the scan and "
                     "libmilter's floor, machine", 3, "–")):
                if key in rt:
                    L.append(f"| {label} | {f1(rt[key], digits)} | {target} |")
            L.append("")
        failed = [r for r in self.runs if "error" in r or not r.get("correct", True)]
        if failed:
            L.append("## Runs with problems\n")
            for r in failed:
                L.append(f"- {r['corpus']} {r['config']} clients={r['clients']} round={r['round']}: "
                         f"{r.get('error') or ''} {'; '.join(r.get('problems', [])[:5])}"
                         f"{' (queue not drained: ' + str(r.get('queue_left')) + ')' if r.get('queue_left') else ''}")
            L.append("")
        return "\n".join(L) + "\n"

    def save(self, corpora):
        med = self.medians()
        ratios = self.ratios(med)
        data = {
            "argv": self.a.argv, "time": _dt.datetime.now().isoformat(timespec="seconds"),
            "breakwater": self.a.breakwater, "rounds": self.a.rounds, "clients": self.a.clients,
            "corpora": [c.describe() for c in corpora],
            "medians": [{"corpus": k[0], "config": k[1], "clients": k[2], **v} for k, v in med.items()],
            "ratios": ratios, "runs": self.runs,
        }
        os.makedirs(self.out, exist_ok=True)
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(data, f, indent=1, sort_keys=False)
        md = self.markdown(corpora, med, ratios)
        with open(os.path.join(self.out, "results.md"), "w") as f:
            f.write(md)
        return md


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", help="mixed corpus: a corpus.py directory (--seed 1 --count 3000)")
    ap.add_argument("--wave-corpus", help="wave corpus: a directory made by make_wave (or by this script), "
                    "or any corpus.py directory to use as is")
    ap.add_argument("--generator", help="corpus.py: generate both corpora (cached in --corpus-cache)")
    ap.add_argument("--corpus-cache", default=os.path.join(REPO, "out", "bench", "corpora"))
    ap.add_argument("--signatures", default=os.path.join(HERE, "sigs"),
                    help="signature directory the corpus manifest refers to (default bench/sigs)")
    ap.add_argument("--breakwater", default=os.environ.get("BREAKWATER_BIN", os.path.join(REPO, ".build", "release", "breakwater")))
    ap.add_argument("--clients", default="4,32,200")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smoke run: 200 messages per corpus, one round")
    ap.add_argument("--count", type=int, help="use only the first N messages of each corpus")
    ap.add_argument("--no-direct", dest="direct", action="store_false", help="skip (d): direct milter vs scan")
    ap.add_argument("--direct-clients", type=int, default=8, help="milter sessions at once for (d)")
    ap.add_argument("--bw-arg", action="append", default=[], help="extra flag for breakwater run (repeatable), "
                    "e.g. --bw-arg=--max-waiting --bw-arg=64")
    ap.add_argument("--smtpd-limit", type=int, default=250, help="Postfix smtpd process limit (default 250, "
                    "so that 200 clients are 200 SMTP sessions, not 100 and a listen queue)")
    ap.add_argument("--milter-socket", choices=("inet", "unix"), default="unix",
                    help="how Postfix reaches the milter, both milters alike (default unix: over a loopback TCP "
                    "socket, Postfix's milter client stalls about 40 ms per message on Nagle + delayed ACK, "
                    "which then dominates both milters' figures)")
    ap.add_argument("--max-attempts", type=int, default=30)
    ap.add_argument("--retry-delay-ms", type=int, default=100)
    ap.add_argument("--session-timeout", type=int, default=600)
    ap.add_argument("--drain-timeout", type=float, default=120)
    ap.add_argument("--sample-interval", type=float, default=0.25)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds to wait after start-up before the load")
    ap.add_argument("--warmup", default="auto", metavar="N|auto",
                    help="before each measured SMTP run send N batches of `clients` small distinct ham messages at "
                         "the same concurrency, not counted, so that Postfix's smtpd and cleanup processes run as on "
                         "a live MX; auto (the default): batches until Postfix runs as many smtpd processes as there "
                         "are clients, or their number stops growing; 0: a cold Postfix")
    ap.add_argument("--out", help="output directory (default out/bench/milter-TIMESTAMP)")
    ap.add_argument("--workdir", default="/tmp", help="where the private instances live while running")
    ap.add_argument("--keep-work", action="store_true")
    a = ap.parse_args()
    if a.warmup != "auto" and not (a.warmup.isdigit()):
        ap.error(f"--warmup: {a.warmup!r} is neither a number of batches nor auto")
    a.warmup = str(int(a.warmup)) if a.warmup != "auto" else a.warmup
    a.argv = [os.path.relpath(sys.argv[0], REPO) if sys.argv[0].startswith(REPO) else sys.argv[0]] + sys.argv[1:]
    a.clients = [int(x) for x in a.clients.split(",") if x]
    a.configs = [x for x in a.configs.split(",") if x]
    if a.quick:
        a.rounds = 1
        a.count = a.count or 200
    a.out = a.out or os.path.join(REPO, "out", "bench", "milter-" + time.strftime("%Y%m%d-%H%M%S"))
    a.signatures = os.path.abspath(a.signatures)
    a.breakwater = os.path.abspath(a.breakwater)

    if os.geteuid() != 0:
        sys.exit("milter_bench: needs root (private Postfix instances)")
    missing = [t for t in ("postfix", "smtp-sink", "cc") + (("clamd", "clamav-milter") if "clamav" in a.configs else ())
               if not shutil.which(t)]
    unknown = [c for c in a.configs if c not in ALL_CONFIGS]
    if unknown:
        ap.error(f"--configs: unknown {', '.join(unknown)} (known: {', '.join(ALL_CONFIGS)})")
    if any(c in a.configs for c in FLOOR_CONFIGS) and not os.path.exists("/usr/include/libmilter/mfapi.h"):
        missing.append("libmilter's header (libmilter-dev)")
    if missing:
        sys.exit(f"milter_bench: missing {', '.join(missing)} (scripts/setup.sh --bench)")
    if not os.access(a.breakwater, os.X_OK):
        sys.exit(f"milter_bench: no breakwater binary at {a.breakwater} (swift build -c release, or BREAKWATER_BIN)")
    if a.generator and not (a.corpus and a.wave_corpus):
        mixed, wave = generate_corpora(os.path.abspath(a.generator), a.corpus_cache)
        a.corpus = a.corpus or mixed
        a.wave_corpus = a.wave_corpus or wave
    if not a.corpus or not a.wave_corpus:
        sys.exit("milter_bench: give --corpus and --wave-corpus (corpus.py directories), or --generator corpus.py")
    corpora = [Corpus("mixed", os.path.abspath(a.corpus), a.count), Corpus("wave", os.path.abspath(a.wave_corpus), a.count)]
    for c in corpora:
        log(f"corpus {c.describe()}")

    b = Bench(a)
    os.makedirs(a.out, exist_ok=True)

    # SIGTERM (and SIGINT, which a shell leaves ignored for a command it runs in the background).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, Shield.on_signal)
    try:
        b.run(corpora)
    except KeyboardInterrupt:
        log("interrupted: saving what was measured")
    finally:
        md = b.save(corpora)
        if not a.keep_work:
            shutil.rmtree(b.work, ignore_errors=True)
    print(md)
    log(f"results in {a.out}/results.md and results.json")


if __name__ == "__main__":
    main()
