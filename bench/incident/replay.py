#!/usr/bin/env python3
"""Replay the outage: a giveaway wave to info@ on a ticket host whose per-message handlers eat its
memory, with each filter in front (issue 24; docs/incident.md has the figures). Every part is real: Postfix, pipe(8), a process per
message, a memory cgroup, the OOM killer, clamd + clamav-milter, `breakwater run`.

    bench/incident/replay.py [--quick] [--runs a,b,c,d] [--doc] [--bin PATH] [--out DIR]

The host: a private Postfix (IntegrationTests/harness/postfix.py) that accepts mail for
info@ticket.test and delivers each message through pipe(8) to bench/incident/handler.py, a new
process per message that holds --handler-mb (60) MB for --handler-seconds (1.5) s and files a ticket.
Postfix (its master and so every smtpd, cleanup, qmgr, pipe and handler) and the filter daemons run
in a memory cgroup v1, /sys/fs/cgroup/memory/bw-incident-PID-RUN, capped at --cap-mb (768): a dozen
handlers exhaust it. The cgroup is removed at the end of each run.

The wave (bench/incident/mail.py): --wave near-identical "Mini Cooper" giveaway spams from 400
client networks (Postfix takes each client address from XCLIENT, which the sender may use from
127.0.0.1), --wave-seconds long, starting --wave-start seconds in; ham at --ham-rate a second for the
length of the run. The sender is the MX in front of the host: up to 20 connections at once, one
message per connection, and a 4xx (or a connection that fails) puts the message back in its queue
for 5, 10, 20, then every 30 seconds (an MTA's retry schedule at one replay second per minute).

The runs, the same mail each time:
  a  clamav-milter + clamd (Debian's packages) with the stand-in for ClamAV's official database
     (bench/officialdb.py, --standin-scale 0.25: about a quarter of the RSS of the real one, as the
     cap is about a fifth of the 4 GB VM) and the shipped signatures, as in 2022;
  b  Breakwater with the shipped signatures and wave-action tag (its default before the replay);
  c  as b, and ops run `breakwater signatures add` --ops-after (60) seconds after the wave starts;
  d  Breakwater with wave-action --wave-action (tempfail), no ops.
Breakwater gets the oom_score_adj of debian/breakwater.service's OOMScoreAdjust= (as systemd sets
it; without CAP_SYS_RESOURCE the rest of the cgroup is raised by as much instead, which keeps the
OOM killer's order); clamd and clamav-milter keep 0, as Debian's clamav-daemon unit does. Postfix's
retry timers are scaled like the sender's (5 s for 300 s).

Each run ends when every message is filed or turned away, or at --deadline seconds. Series, sampled
every second: handler processes alive, the cgroup's memory (usage and RSS), its OOM kill count, the
host's Postfix queue, the sender's queue (not yet accepted; ham and wave), tickets filed, the filter's
RSS and whether it lives. OOM kills: memory.oom_control's count; the process each hit: pipe(8)'s
"Command died with signal 9" (a handler) and master's "killed by signal 9" (a Postfix daemon) in the
maillog, and a filter daemon's exit status (our child: killed by SIGKILL). Per run: peak
handlers, peak memory, OOM kills, peak queues, ham delay (first attempt to ticket; median, worst),
wave messages accepted and filed as tickets, ham filed (and filed twice), ham turned away.

--quick: a smoke test in about a minute: run c only, 300 wave messages in 20 s, 40 ham, ops after
5 s, handlers of 10 MB and a 1024 MB cap, which even the 50 handlers Postfix may start at once fit in
(IntegrationTests/test_incident.py checks that no OOM kill happens).
Results: --out (default out/incident/TIMESTAMP/): results.json, results.md, run-X.json, run-X.png
(python3-matplotlib; scripts/setup.sh --bench). --doc also copies the figures to docs/incident/ and
writes the table into docs/incident.md (between its replay markers).
Needs root (the cgroup, Postfix), postfix, clamd and clamav-milter (run a), and the breakwater binary
(--bin, $BREAKWATER_BIN, default .build/debug/breakwater).
"""
import argparse
import heapq
import itertools
import json
import os
import re
import shutil
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
REPO = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
sys.path.insert(0, HERE)
from milterbench import common  # noqa: E402  (puts IntegrationTests/ on sys.path)
from milterbench.daemons import ClamavMilter  # noqa: E402
from harness.breakwater import BreakwaterDaemon  # noqa: E402
from harness.postfix import PostfixInstance  # noqa: E402
from harness import procs  # noqa: E402
from harness.ports import free_port, release_port  # noqa: E402
import mail as incident_mail  # noqa: E402

CGROOT = "/sys/fs/cgroup/memory"
HANDLER_NAME = "ticket-handler"
RUN_LABEL = {
    "a": "clamav-milter + clamd (2022)",
    "b": "Breakwater, shipped signatures (wave-action tag)",
    "c": "Breakwater, ops add a signature after {ops:g} s",
    "d": "Breakwater, wave-action {action}, no ops",
}
MX_RETRY = (5, 10, 20, 30)
OPS_NAME = "Breakwater.Local.Spam.MiniCooperDraw"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


# --- the memory cgroup ---------------------------------------------------------------------------------------


class MemCgroup:
    """A memory cgroup v1 child of the root, with a hard limit; removed by remove()."""

    def __init__(self, name, limit_bytes):
        self.name, self.path = name, os.path.join(CGROOT, name)
        if not os.path.isdir(CGROOT):
            raise RuntimeError(f"no memory cgroup v1 at {CGROOT}")
        os.mkdir(self.path)
        self.write("memory.limit_in_bytes", str(limit_bytes))
        self.home = own_memory_cgroup()

    def write(self, f, v):
        with open(os.path.join(self.path, f), "w") as fh:
            fh.write(v)

    def read(self, f):
        with open(os.path.join(self.path, f)) as fh:
            return fh.read()

    def enter(self):
        """Moves this process in: what it starts from now on is in the cgroup (and charged to it)."""
        self.write("cgroup.procs", str(os.getpid()))

    def leave(self):
        with open(os.path.join(self.home, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def pids(self):
        try:
            return [int(p) for p in self.read("cgroup.procs").split()]
        except OSError:
            return []

    def usage(self):
        return int(self.read("memory.usage_in_bytes"))

    def stat(self):
        return {k: int(v) for k, v in (line.split() for line in self.read("memory.stat").splitlines())}

    def oom_kills(self):
        for line in self.read("memory.oom_control").splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def remove(self, timeout=30):
        """SIGKILLs what is left in the group (the processes this run started, by PID) and removes it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self.pids()
            if not left:
                try:
                    os.rmdir(self.path)
                    return True
                except OSError:
                    pass
            for pid in left:
                procs.kill(pid)
            time.sleep(0.2)
        log(f"warning: cgroup {self.path} not removed: {self.pids()}")
        return False


def own_memory_cgroup():
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "memory" in controllers.split(","):
                return os.path.join(CGROOT, path.lstrip("/"))
    return CGROOT


def kills_from_maillog(text):
    """{process: count} of the processes Postfix saw die of SIGKILL: pipe(8)'s handler ("Command died
    with signal 9") and Postfix's own daemons (master: "process ... pid N killed by signal 9")."""
    out = {}
    n = len(re.findall(r"Command died with signal 9", text))
    if n:
        out[HANDLER_NAME] = n
    for m in re.finditer(r"process \S*/(\w+) pid \d+ killed by signal 9", text):
        out[m.group(1)] = out.get(m.group(1), 0) + 1
    return out


# --- the host --------------------------------------------------------------------------------------------


class TicketHost(PostfixInstance):
    """The integration tests' private Postfix, accepting mail for ticket.test (from clients named by
    XCLIENT) and delivering it through pipe(8) to the handler, one process per message."""

    def __init__(self, base, handler_argv, milters=None, pipe_limit=50):
        self.handler_argv, self.pipe_limit = handler_argv, pipe_limit
        transport = os.path.join(base, "transport")
        os.makedirs(base, exist_ok=True)
        with open(transport, "w") as f:
            f.write("ticket.test ticket:\n")
        settings = {
            "myhostname": "tickets.incident.test", "mydomain": "incident.test",
            "relay_domains": "ticket.test", "transport_maps": f"texthash:{transport}",
            "smtpd_authorized_xclient_hosts": "127.0.0.1",
            "ticket_destination_recipient_limit": "1",
            "ticket_destination_concurrency_limit": str(pipe_limit),
            "default_process_limit": "150",
            "smtpd_client_message_rate_limit": "0",
            # Postfix's retry timers at the replay's scale (one second for a minute): 300 s, 300 s
            # and 4000 s by default; a delivery that failed (a handler OOM-killed) waits 5 s.
            "queue_run_delay": "5s", "minimal_backoff_time": "5s", "maximal_backoff_time": "60s",
        }
        super().__init__(base, sink_port=1, milters=milters, settings=settings, name="postfix",
                         smtpd_process_limit=60)

    def write_config(self):
        super().write_config()
        with open(os.path.join(self.config_dir, "master.cf"), "a") as f:
            f.write(f"ticket unix - n n - {self.pipe_limit} pipe flags=R user=nobody argv="
                    + " ".join(self.handler_argv) + "\n")

    def queue_length(self):
        n = 0
        for q in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _root, _dirs, files in os.walk(os.path.join(self.queue_dir, q)):
                n += len(files)
        return n


# --- the sender (the MX in front of the host) ------------------------------------------------------------


class Message:
    __slots__ = ("ident", "kind", "addr", "sender", "data", "due", "first", "attempts", "accepted", "rejected",
                 "last")

    def __init__(self, ident, kind, addr, sender, data, due):
        self.ident, self.kind, self.addr, self.sender, self.data, self.due = ident, kind, addr, sender, data, due
        self.first = self.accepted = self.rejected = None
        self.attempts = 0
        self.last = ""


class Sender:
    """Up to `connections` SMTP sessions at once, one message each: XCLIENT ADDR=<the message's
    client>, EHLO, MAIL, RCPT, DATA. 250: accepted. 5xx: turned away. 4xx or a failed connection:
    back in the queue for MX_RETRY (5, 10, 20, 30, 30, ... s)."""

    def __init__(self, port, messages, t0, connections=20):
        self.port, self.t0, self.connections = port, t0, connections
        self.messages = messages
        self.seq = itertools.count()
        self.heap = [(m.due, next(self.seq), m) for m in messages]
        heapq.heapify(self.heap)
        self.cv = threading.Condition()
        self.stopping = False
        self.busy = 0
        self.inflight = set()
        self.threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(connections)]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        with self.cv:
            self.stopping = True
            self.cv.notify_all()
        for t in self.threads:
            t.join(90)

    def pending(self):
        """{kind: messages due or waiting to be retried, not yet accepted} (the sender's queue)."""
        now = time.time() - self.t0
        out = {"ham": 0, "wave": 0}
        with self.cv:
            for due, _, m in self.heap:
                if m.first is not None or due <= now:
                    out[m.kind] += 1
            for m in self.inflight:
                out[m.kind] += 1
        return out

    def done(self):
        with self.cv:
            return not self.heap and self.busy == 0

    def worker(self):
        while True:
            with self.cv:
                while not self.stopping:
                    now = time.time() - self.t0
                    if self.heap and self.heap[0][0] <= now:
                        _, _, m = heapq.heappop(self.heap)
                        self.busy += 1
                        self.inflight.add(m)
                        break
                    self.cv.wait(0.2 if not self.heap else max(0.01, min(0.2, self.heap[0][0] - now)))
                else:
                    return
            outcome = self.attempt(m)
            with self.cv:
                self.busy -= 1
                self.inflight.discard(m)
                if outcome == "retry":
                    delay = MX_RETRY[min(m.attempts, len(MX_RETRY)) - 1]
                    heapq.heappush(self.heap, (time.time() - self.t0 + delay, next(self.seq), m))
                    self.cv.notify()

    def attempt(self, m):
        now = time.time()
        if m.first is None:
            m.first = now
        m.attempts += 1
        try:
            with smtplib.SMTP("127.0.0.1", self.port, local_hostname="mx.sender.test", timeout=60) as s:
                s.ehlo()
                code, text = s.docmd("XCLIENT", f"ADDR={m.addr} NAME=[UNAVAILABLE]")
                if code != 220:
                    m.last = f"XCLIENT {code}"
                    return "retry"
                s.ehlo()
                code, text = s.mail(m.sender)
                if code == 250:
                    code, text = s.rcpt(incident_mail.RCPT)
                if code == 250:
                    try:
                        code, text = s.data(m.data)
                    except smtplib.SMTPDataError as e:
                        code, text = e.smtp_code, e.smtp_error
        except (OSError, smtplib.SMTPException) as e:
            m.last = f"error {type(e).__name__}"
            return "retry"
        m.last = f"{code} {text[:80]!r}"
        if code == 250:
            m.accepted = time.time()
            return "ok"
        if 500 <= code < 600:
            m.rejected = time.time()
            return "rejected"
        return "retry"


# --- one run ------------------------------------------------------------------------------------------


def unit_oom_score_adj():
    """OOMScoreAdjust= of debian/breakwater.service (0 when it has none)."""
    try:
        with open(os.path.join(REPO, "debian", "breakwater.service")) as f:
            m = re.search(r"(?m)^OOMScoreAdjust=(-?\d+)", f.read())
        return int(m.group(1)) if m else 0
    except OSError:
        return 0


def apply_oom_score_adj(adj, filter_pids, group_pids):
    """Gives the filter `adj` as systemd's OOMScoreAdjust= does. Lowering it needs CAP_SYS_RESOURCE;
    without it (a container) the other processes of the group (Postfix's master and daemons, and so
    every process they start) are raised by -adj instead: the OOM killer compares badness, which adj
    shifts by the same amount for all, so the order it picks in is the same."""
    try:
        for pid in filter_pids:
            with open(f"/proc/{pid}/oom_score_adj", "w") as f:
                f.write(str(adj))
        return "filter"
    except PermissionError:
        pass
    for pid in group_pids:
        if pid in filter_pids:
            continue
        try:
            with open(f"/proc/{pid}/oom_score_adj", "w") as f:
                f.write(str(min(1000, -adj)))
        except OSError:
            pass  # gone already
    return "others raised"


def rss_kb(pid):
    try:
        return procs.status_kb(pid, "VmRSS")
    except (OSError, KeyError, ValueError, IndexError):
        return 0


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def badness_mb(pid, cap_mb):
    """The OOM killer's badness of the process in the cgroup, in MB: RSS + page tables + swap, plus
    oom_score_adj thousandths of the cap (mm/oom_kill.c's oom_badness; the highest is killed)."""
    try:
        st = procs.status(pid)
        with open(f"/proc/{pid}/oom_score_adj") as f:
            adj = int(f.read())
    except (OSError, ValueError):
        return 0
    kb = sum(int(st.get(k, "0 kB").split()[0]) for k in ("VmRSS", "VmPTE", "VmSwap"))
    return round(kb / 1024 + adj * cap_mb / 1000)


def scrape(url):
    """{(name, label value): value} of the breakwater_messages_total / tempfails_total samples."""
    out = {}
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            text = r.read().decode()
    except (OSError, ValueError):
        return out
    for m in re.finditer(r'(?m)^breakwater_(messages_total|tempfails_total)\{(?:outcome|cause)="(\w+)"\} ([0-9.e+]+)', text):
        out[f"{m.group(1)}:{m.group(2)}"] = float(m.group(3))
    return out


def build_messages(args, mail):
    msgs = []
    for n in range(args.wave):
        addr, sender, data = mail.wave(n)
        msgs.append(Message(f"w-{n}", "wave", addr, sender, data, args.wave_start + n * args.wave_seconds / args.wave))
    n_ham = int(args.ham_seconds * args.ham_rate)
    for n in range(n_ham):
        addr, sender, data = mail.ham(n)
        msgs.append(Message(f"h-{n}", "ham", addr, sender, data, n / args.ham_rate))
    return msgs


def run_one(run, args, workdir, stand_in):
    base = os.path.join(workdir, f"run-{run}")
    os.makedirs(base)
    os.chmod(base, 0o755)
    tickets = os.path.join(base, "tickets")
    os.makedirs(tickets)
    os.chmod(tickets, 0o1777)
    # The handler and its interpreter under the name the OOM killer logs, readable by pipe's user.
    link = os.path.join(base, HANDLER_NAME)
    os.symlink(os.path.realpath(args.handler_python), link)
    handler = os.path.join(base, "handler.py")
    shutil.copyfile(os.path.join(HERE, "handler.py"), handler)
    os.chmod(handler, 0o644)
    argv = [link, "-S", "-E", handler, tickets, str(args.handler_mb), str(args.handler_seconds)]

    messages = build_messages(args, incident_mail.Mail(args.seed))
    cg = MemCgroup(f"bw-incident-{os.getpid()}-{run}", args.cap_mb << 20)
    host = filt = None
    filter_pids = {}
    metrics_url = None
    metrics_port = None
    adj = 0
    ops = {}
    samples = []
    try:
        cg.enter()
        try:
            if run == "a":
                filt = ClamavMilter(os.path.join(base, "clamav"), stand_in)
                filt.start()
                milter = filt.milter
                filter_pids = {"clamd": filt.clamd.pid, "clamav-milter": filt.milter_proc.pid}
            else:
                metrics_port = free_port()
                metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
                extra = ["--signatures", os.path.join(REPO, "Signatures"), "--workers", "2",
                         "--local-signatures", os.path.join(base, "ops-signatures"),
                         "--metrics", f"127.0.0.1:{metrics_port}"]
                extra += ["--wave-action", args.wave_action if run == "d" else "tag"]
                os.makedirs(os.path.join(base, "ops-signatures"))
                filt = BreakwaterDaemon(args.bin, base, extra)
                filt.start(timeout=120)
                milter = filt.postfix_milter
                filter_pids = {"breakwater": filt.pid}
                adj = unit_oom_score_adj()
            host = TicketHost(os.path.join(base, "host"), argv, milters=milter)
            host.start()
        finally:
            cg.leave()
        if adj:
            apply_oom_score_adj(adj, filter_pids.values(), cg.pids())
        log(f"run {run}: host on 127.0.0.1:{host.port}, filter {filter_pids}, cgroup {cg.path} "
            f"({args.cap_mb} MB), {len(messages)} messages")

        t0 = time.time()
        sender = Sender(host.port, messages, t0)
        stop = threading.Event()

        def sampler():
            while not stop.is_set():
                t = time.time() - t0
                pids = cg.pids()
                handlers = sum(1 for pid in pids if comm(pid) == HANDLER_NAME)
                try:
                    st = cg.stat()
                    s = {"t": round(t, 2), "handlers": handlers, "usage_mb": cg.usage() / 2**20,
                         "rss_mb": (st.get("rss", 0) + st.get("mapped_file", 0)) / 2**20,
                         "oom_kills": cg.oom_kills(), "host_queue": host.queue_length(),
                         "tickets": len(os.listdir(tickets)),
                         "filter_rss_mb": sum(rss_kb(p) for p in filter_pids.values()) / 1024,
                         "filter_alive": {n: procs.alive(p) for n, p in filter_pids.items()}}
                    s["filter_badness"] = max((badness_mb(p, args.cap_mb) for p in filter_pids.values()), default=0)
                    s["handler_badness"] = max((badness_mb(p, args.cap_mb) for p in pids if comm(p) == HANDLER_NAME),
                                               default=None)
                    pending = sender.pending()
                    s["mx_queue"], s["mx_queue_ham"], s["mx_queue_wave"] = sum(pending.values()), pending["ham"], \
                        pending["wave"]
                except OSError:
                    break
                if metrics_url:
                    s["metrics"] = scrape(metrics_url)
                samples.append(s)
                stop.wait(args.sample)

        sampler_thread = threading.Thread(target=sampler, daemon=True)
        sampler_thread.start()
        sender.start()

        def ops_add():
            time.sleep(max(0.0, t0 + args.wave_start + args.ops_after - time.time()))
            ops["started"] = time.time() - t0
            r = subprocess.run([args.bin, "signatures", "add", OPS_NAME, "--text", incident_mail.OPS_TEXT,
                                "--ignore-case", "--control", os.path.join(base, "breakwater", "control.sock"),
                                "--local-signatures", os.path.join(base, "ops-signatures"),
                                "--signatures", os.path.join(REPO, "Signatures"),
                                "--check", os.path.join(REPO, "Signatures", "ham"),
                                "--comment", "the giveaway wave (replay)"],
                               capture_output=True, text=True, timeout=300)
            ops["returned"] = time.time() - t0
            ops["rc"] = r.returncode
            ops["output"] = (r.stdout + r.stderr).strip()[-400:]
            log(f"run {run}: ops: signatures add returned {r.returncode} at {ops['returned']:.1f} s")

        ops_thread = None
        if run == "c":
            ops_thread = threading.Thread(target=ops_add, daemon=True)
            ops_thread.start()

        last_t = args.wave_start + args.wave_seconds
        while time.time() - t0 < args.deadline:
            time.sleep(1)
            t = time.time() - t0
            if t > max(last_t, args.ham_seconds) + 3 and sender.done() and host.queue_length() == 0 \
                    and not any(s for s in samples[-1:] if s["handlers"]):
                break
            if int(t) % 15 == 0 and samples:
                s = samples[-1]
                log(f"run {run}: t={t:.0f}s handlers={s['handlers']} mem={s['usage_mb']:.0f}MB "
                    f"oom={s['oom_kills']} queue={s['host_queue']} mx={s['mx_queue']} tickets={s['tickets']}")
        end = time.time() - t0
        sender.stop()
        if ops_thread:
            ops_thread.join(300)
        stop.set()
        sampler_thread.join(10)
        filter_running = all(procs.alive(p) for p in filter_pids.values())
    finally:
        with common.Shield():
            kills = {}
            if filt:
                # A filter daemon that died of SIGKILL (its exit status as our child) while nobody stopped it.
                children = {"breakwater": getattr(filt, "proc", None)} if run != "a" else \
                    {"clamd": filt.clamd.p if filt.clamd else None,
                     "clamav-milter": filt.milter_proc.p if filt.milter_proc else None}
                for name, p in children.items():
                    if p is not None and p.poll() == -signal.SIGKILL:
                        kills[name] = 1
            if host:
                host.stop()
                kills.update(kills_from_maillog(host.log()))
            if filt:
                filt.stop()
            if metrics_port:
                release_port(metrics_port)
            oom_count = cg.oom_kills()
            cg.remove()

    return summarize(run, args, messages, samples, tickets, t0, end, kills, oom_count, ops, adj, filter_running)


def summarize(run, args, messages, samples, tickets, t0, end, kills, oom_count, ops, adj, filter_running):
    filed = {}
    for name in os.listdir(tickets):
        if name.startswith(".tmp."):
            continue
        ident = name.rsplit(".", 1)[0]
        with open(os.path.join(tickets, name)) as f:
            filed.setdefault(ident, []).append(float(f.read().strip()))
    ham = [m for m in messages if m.kind == "ham"]
    wave = [m for m in messages if m.kind == "wave"]
    delays = []
    for m in ham:
        if m.ident in filed:
            delays.append(min(filed[m.ident]) - m.first)
    ham_unfiled = [m for m in ham if m.ident not in filed]
    worst = max(delays) if delays else None
    if ham_unfiled:
        worst = end - min(m.due for m in ham_unfiled)  # still waiting when the run stopped: at least this
    after_ops = None
    if "returned" in ops:
        cut = t0 + ops["returned"] + 2
        after_ops = sum(1 for m in wave if m.accepted and m.accepted > cut)
    by_process = dict(kills)
    seen = sum(kills.values())
    if oom_count > seen:
        by_process["not seen to exit"] = oom_count - seen  # e.g. a process that handled the signal's aftermath
    filter_deaths = {}
    for s in samples:
        for name, alive in s["filter_alive"].items():
            if not alive and name not in filter_deaths:
                filter_deaths[name] = s["t"]
    r = {
        "run": run, "label": RUN_LABEL[run].format(action=args.wave_action, ops=args.ops_after), "seconds": round(end, 1),
        "peak_handlers": max((s["handlers"] for s in samples), default=0),
        "peak_memory_mb": round(max((s["usage_mb"] for s in samples), default=0)),
        "cap_mb": args.cap_mb,
        "oom_kills": oom_count, "oom_kills_by_process": by_process,
        "filter_deaths": filter_deaths,
        "filter_killed": any(n in kills for n in ("clamd", "clamav-milter", "breakwater")),
        "filter_running_at_end": filter_running,
        "peak_filter_badness": max((s.get("filter_badness", 0) for s in samples), default=0),
        "peak_handler_badness": max((s.get("handler_badness") or 0 for s in samples), default=0),
        "peak_filter_rss_mb": round(max((s["filter_rss_mb"] for s in samples), default=0)),
        "peak_host_queue": max((s["host_queue"] for s in samples), default=0),
        "peak_mx_queue": max((s["mx_queue"] for s in samples), default=0),
        "mx_queue_at_end": samples[-1]["mx_queue"] if samples else 0,
        "host_queue_at_end": samples[-1]["host_queue"] if samples else 0,
        "ham": len(ham), "ham_filed": sum(1 for m in ham if m.ident in filed),
        "ham_filed_twice": sum(1 for m in ham if len(filed.get(m.ident, ())) > 1),
        "ham_rejected": sum(1 for m in ham if m.rejected), "ham_unfiled": len(ham_unfiled),
        "ham_retried": sum(1 for m in ham if m.attempts > 1),
        "ham_delay_median_s": round(statistics.median(delays), 1) if delays else None,
        "ham_delay_worst_s": round(worst, 1) if worst is not None else None,
        "ham_delay_worst_is_lower_bound": bool(ham_unfiled),
        "wave": len(wave), "wave_accepted": sum(1 for m in wave if m.accepted),
        "wave_filed": sum(1 for m in wave if m.ident in filed),
        "wave_rejected": sum(1 for m in wave if m.rejected),
        "wave_accepted_after_ops_plus_2s": after_ops, "ops": ops, "breakwater_oom_score_adj": adj,
        "samples": samples,
    }
    r["wave_first_tempfail_or_reject_s"] = first_turned_away(samples)
    return r


def first_turned_away(samples):
    """Seconds into the run of the first sample whose metrics show a wave message tempfailed or
    rejected (None without metrics)."""
    for s in samples:
        m = s.get("metrics") or {}
        if m.get("tempfails_total:wave", 0) > 0 or m.get("messages_total:rejected", 0) > 0:
            return s["t"]
    return None


# --- the whole replay -------------------------------------------------------------------------------------


def stand_in_dir(scale, workdir):
    """A signature directory with the shipped signatures and the official-size stand-in (hard links)."""
    src = os.path.join(REPO, "out", "bench", "officialdb", f"scale-{scale:g}-seed-1")
    subprocess.run([sys.executable, os.path.join(BENCH, "officialdb.py"), "--scale", f"{scale:g}", "--out", src],
                   check=True, stdout=subprocess.DEVNULL)
    d = os.path.join(workdir, "clamd-signatures")
    os.makedirs(d)
    for f in os.listdir(src):
        os.link(os.path.join(src, f), os.path.join(d, f))
    sigs = os.path.join(REPO, "Signatures")
    for f in os.listdir(sigs):
        if f.endswith((".ndb", ".ldb", ".cdb")):
            shutil.copyfile(os.path.join(sigs, f), os.path.join(d, f))
    return d


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs")
    ap.add_argument("--doc", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--bin", default=os.environ.get("BREAKWATER_BIN", os.path.join(REPO, ".build/debug/breakwater")))
    ap.add_argument("--handler-python", default="/usr/bin/python3")
    ap.add_argument("--handler-mb", type=int)
    ap.add_argument("--handler-seconds", type=float, default=1.5)
    ap.add_argument("--cap-mb", type=int)
    ap.add_argument("--wave", type=int)
    ap.add_argument("--wave-start", type=float)
    ap.add_argument("--wave-seconds", type=float)
    ap.add_argument("--ham-rate", type=float)
    ap.add_argument("--ham-seconds", type=float)
    ap.add_argument("--ops-after", type=float)
    ap.add_argument("--wave-action", default="tempfail", choices=("tempfail", "reject"))
    ap.add_argument("--deadline", type=float)
    ap.add_argument("--sample", type=float, default=1.0)
    ap.add_argument("--standin-scale", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the run directories (logs, tickets, Postfix)")
    args = ap.parse_args()
    quick = dict(wave=300, wave_seconds=20, ham_seconds=40, ops_after=5, deadline=80, runs="c", wave_start=5,
                 handler_mb=10, ham_rate=1.0, cap_mb=1024)
    full = dict(wave=1800, wave_seconds=90, ham_seconds=160, ops_after=60, deadline=170, runs="a,b,c,d",
                wave_start=10, handler_mb=60, ham_rate=0.5, cap_mb=768)
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.quick and args.doc:
        log("--quick: the figures and table of docs/ are left as they are (--doc ignored)")
        args.doc = False
    args.bin = os.path.abspath(args.bin)
    if os.geteuid() != 0:
        sys.exit("replay: needs root (a memory cgroup, a private Postfix)")
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"replay: no breakwater binary at {args.bin} (swift build, or --bin)")
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    for r in runs:
        if r not in RUN_LABEL:
            sys.exit(f"replay: unknown run {r!r} (a, b, c, d)")
    out = args.out or os.path.join(REPO, "out", "incident", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    signal.signal(signal.SIGTERM, common.Shield.on_signal)

    workdir = tempfile.mkdtemp(prefix="bw-incident-")
    os.chmod(workdir, 0o755)
    results = []
    started = time.time()
    try:
        stand_in = stand_in_dir(args.standin_scale, workdir) if "a" in runs else None
        for run in runs:
            log(f"run {run}: {RUN_LABEL[run].format(action=args.wave_action, ops=args.ops_after)}")
            r = run_one(run, args, workdir, stand_in)
            results.append(r)
            with open(os.path.join(out, f"run-{run}.json"), "w") as f:
                json.dump(r, f)
            log(f"run {run}: " + ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("samples", "ops", "label")))
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    params = {k: getattr(args, k) for k in ("quick", "handler_mb", "handler_seconds", "cap_mb", "wave", "wave_start",
                                             "wave_seconds", "ham_rate", "ham_seconds", "ops_after", "wave_action",
                                             "deadline", "standin_scale", "seed")}
    params["total_seconds"] = round(time.time() - started)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"params": params, "runs": [{k: v for k, v in r.items() if k != "samples"} for r in results]},
                  f, indent=1)
    plot = [plot_python(), os.path.join(HERE, "plot.py"), out] + (["--doc", REPO] if args.doc else [])
    if plot[0]:
        subprocess.run(plot, check=True)
    else:
        log("no matplotlib (apt install python3-matplotlib, scripts/setup.sh --bench): no figures")
    log(f"results: {out} ({params['total_seconds']} s)")
    return 0


def plot_python():
    for py in (sys.executable, "/usr/bin/python3"):
        if py and subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode == 0:
            return py
    return None


if __name__ == "__main__":
    sys.exit(main())
