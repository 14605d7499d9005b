"""Measuring the processes of a run: CPU and memory from /proc, the machine's CPU and interrupts, and a
sampler thread that keeps the peaks."""
import os
import threading

from .common import PAGE

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


def pss_bytes(pid):
    """Proportional set size: each page shared by n processes counted 1/n (a forked scan worker's
    engine pages shared with its engine process count once over the tree)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def with_descendants(pids, ppids=None):
    """`pids` and every process under them (Breakwater's engine host and scan workers)."""
    ppids = ppids if ppids is not None else all_ppids()
    out = []
    for p in pids:
        out += [p] + descendants(p, ppids)
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
        ppids = all_ppids()
        for name, top in self.groups.items():
            pids = with_descendants(top, ppids)
            # One process: its RSS. A daemon with processes under it (Breakwater's engine host and scan
            # workers, which share the engine's pages): their PSS summed, each shared page once.
            r = sum(rss_bytes(p) for p in pids) if len(pids) == len(top) else sum(pss_bytes(p) for p in pids)
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
    ppids = all_ppids()
    for name, top in groups.items():
        t = 0
        # A scan worker that ended during the run is not counted (its CPU went to no living process).
        for p in with_descendants(top, ppids):
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
