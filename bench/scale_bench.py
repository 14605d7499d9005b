#!/usr/bin/env python3
"""Breakwater and clamd on an official-scale signature set (the stand-in of bench/officialdb.py).

    bench/scale_bench.py [--scale 1.0] [--seed 1] [--corpus DIR] [--count 1000] [--rounds 2]
                         [--anchor-count 200] [--fork-count 400] [--bin PATH] [--only PARTS] [--json OUT]

PARTS (comma-separated, default all but cgroup): load, daemon, clamd, starts, reloads, cgroup, scan, anchor,
fork.

 load    clamscan -d SET on one small file: every signature loads, no libclamav error or warning;
         wall time and peak RSS of the load.
 daemon  `breakwater run` (2 scan slots, --signatures Signatures/ and the stand-in): time from start
         to listening, steady RSS, then --rounds `breakwater reload` (concurrent, the only mode today):
         wall and build time, peak RSS (VmHWM after clear_refs 5) and RSS after. The code is
         bench/reload_bench.py's bench_set, without its streaming client.
 clamd   clamd on the same signatures (a directory of hard links to the stand-in's files and copies of
         the shipped .ndb/.ldb/.cdb), private clamd.conf (LocalSocket in a temporary directory,
         Foreground yes, MaxThreads 2, SelfCheck off), once with ConcurrentDatabaseReload yes and once
         no: start to the first PONG, steady RSS, --rounds RELOAD commands (done when clamd logs
         "Database correctly reloaded"), peak RSS the same way.
 starts  --rounds start-ups of breakwater run and clamd, alternately: wall and CPU seconds (utime +
         stime from /proc, with the processes under the daemon) from start to listening (clamd: to the
         first PONG), memory (PSS summed over the tree) a second later.
         CPU is the steadier figure on a shared machine.
 reloads breakwater run with reload-mode concurrent, with blocking, clamd with ConcurrentDatabaseReload
         yes and clamd with no, all four loaded at once, reloaded in turn (rotating order), --rounds each:
         wall, build (Breakwater's own figure) and the daemon's CPU seconds per reload, user and
         system, and its minor page faults (with every process under it and the children they waited
         for), the memory before and its peak during the reload: PSS summed over the daemon and the
         processes under it (Breakwater's engine process and its scan workers share the engine's
         pages), sampled every 0.1 s. The fairest reload comparison on a shared machine.
 cgroup  (root, cgroup v1) breakwater run with reload-mode auto in a memory cgroup of its own, capped
         at --cgroup-factor (1.5) x its steady memory (PSS summed over its processes) once started; --cgroup-reloads (3) reloads while two
         clients stream the shipped ham and samples: the mode auto chose, peak RSS, the group's OOM
         kills, failcnt and max usage, and every answer (right, 4xx or wrong). Not in the default set.
 scan    CPU per message of `breakwater scan --jobs 2 --files-from LIST` on --count messages of the
         corpus, with the shipped set alone and with the stand-in added. Each configuration is also run
         on one tiny file, and that run's CPU (the load) is subtracted. Interleaved, --rounds rounds.
         Any stand-in name reported is a false positive and fails the run.
 anchor  the same on --anchor-count messages for clamscan (--allmatch, Breakwater's limits, as
         bench/scan_bench.py runs it) and `breakwater scan --jobs 1`: one thread each, so the cost the
         stand-in adds per message can be set beside libclamav's own.
 fork    bench/forkshare.c (built into out/bench/forkshare with cc -lclamav): the engine is built,
         the process forks, the child scans --fork-count messages and reports its Private_Dirty and
         Shared_Dirty from /proc/self/smaps_rollup.

Run it niced on a shared machine (nice -n 5) and compare Breakwater with clamd inside one run only.
Stops what it started, by PID. Prints tables (markdown); --json writes every figure.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)

import officialdb  # noqa: E402
import reload_bench  # noqa: E402  (also puts IntegrationTests/ on sys.path for the harness)
import scan_bench  # noqa: E402
from harness import procs  # noqa: E402

SHIPPED = os.path.join(REPO, "Signatures")
DB_EXTS = (".ndb", ".ldb", ".cdb", ".hdb", ".hsb", ".mdb", ".msb")
log = reload_bench.log
proc_kb = reload_bench.proc_kb


def mb(kb):
    return kb / 1024


# ---------------------------------------------------------------------------------------------- load

def check_load(standin, work):
    tiny = os.path.join(work, "tiny.txt")
    with open(tiny, "w") as f:
        f.write("hello\n")
    t = time.monotonic()
    p = subprocess.Popen(["clamscan", "-d", standin, "-d", SHIPPED, tiny], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - t
    out, err = p.stdout.read().decode(), p.stderr.read().decode()
    known = next((int(line.split(":")[1]) for line in out.splitlines() if line.startswith("Known viruses:")), None)
    problems = [line for line in (out + err).splitlines() if "ERROR" in line or "WARNING" in line]
    rc = os.waitstatus_to_exitcode(status)
    r = dict(wall=wall, maxrss_kb=usage.ru_maxrss, cpu=usage.ru_utime + usage.ru_stime, known=known, rc=rc,
             problems=problems[:5])
    log(f"  clamscan load: {known} signatures, {wall:.1f} s wall, {r['cpu']:.1f} s CPU, peak RSS {mb(usage.ru_maxrss):.0f} MB, "
        f"exit {rc}, {len(problems)} errors/warnings")
    return r


# -------------------------------------------------------------------------------------------- daemon

def bench_daemon(binary, standin, rounds):
    res, failures = reload_bench.bench_set(binary, "breakwater", [SHIPPED, standin], rounds, stream=False)
    rows = res["rows"]
    res["steady_kb"] = rows[0]["before"] if rows else None
    return res, failures


# --------------------------------------------------------------------------------------------- clamd

def combined_dir(standin, work):
    """The stand-in and the shipped set in one directory (clamd reads one DatabaseDirectory)."""
    d = os.path.join(work, "clamd-db")
    if os.path.isdir(d):
        return d
    os.makedirs(d)
    for name in sorted(os.listdir(standin)):
        if name.endswith(DB_EXTS):
            try:
                os.link(os.path.join(standin, name), os.path.join(d, name))
            except OSError:
                os.symlink(os.path.join(standin, name), os.path.join(d, name))
    for name in sorted(os.listdir(SHIPPED)):
        if name.endswith(DB_EXTS):
            shutil.copy(os.path.join(SHIPPED, name), os.path.join(d, name))
    return d


class Clamd:
    def __init__(self, dbdir, work, concurrent):
        self.dir = tempfile.mkdtemp(prefix="clamd-", dir=work)
        self.sock = os.path.join(self.dir, "clamd.sock")
        self.logfile = os.path.join(self.dir, "clamd.log")
        self.conf = os.path.join(self.dir, "clamd.conf")
        tmp = os.path.join(self.dir, "tmp")
        os.makedirs(tmp)
        with open(self.conf, "w") as f:
            f.write(f"DatabaseDirectory {dbdir}\nLocalSocket {self.sock}\nForeground yes\n"
                    f"LogFile {self.logfile}\nLogTime yes\nPidFile {self.dir}/clamd.pid\n"
                    f"TemporaryDirectory {tmp}\nMaxThreads 2\nSelfCheck 0\n"
                    f"ConcurrentDatabaseReload {'yes' if concurrent else 'no'}\n")
        self.proc = None

    def start(self, timeout=900):
        t = time.monotonic()
        self.proc = subprocess.Popen(["clamd", "--config-file", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "stderr"), "wb"),
                                     start_new_session=True)
        while time.monotonic() - t < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clamd exited {self.proc.returncode}: {self.log_tail()}")
            try:
                if self.command("PING", 2) == "PONG":
                    return time.monotonic() - t
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("clamd did not answer PING in time")

    def command(self, cmd, timeout=10):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.sock)
            s.sendall(f"n{cmd}\n".encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data.decode().strip()

    def log_text(self):
        return procs.read_log(self.logfile)

    def log_tail(self):
        return "\n".join(self.log_text().splitlines()[-10:])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode if self.proc else None


def bench_clamd(dbdir, work, concurrent, rounds):
    label = f"clamd ConcurrentDatabaseReload {'yes' if concurrent else 'no'}"
    c = Clamd(dbdir, work, concurrent)
    rows, failures = [], []
    try:
        start = c.start()
        pid = c.proc.pid
        time.sleep(1.0)
        steady = proc_kb(pid, "VmRSS")
        log(f"  {label}: ready in {start:.2f} s, steady RSS {mb(steady):.0f} MB")
        for r in range(rounds):
            time.sleep(1.0)
            before = proc_kb(pid, "VmRSS")
            done_before = c.log_text().count("Database correctly reloaded")
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
            t1 = time.monotonic()
            answer = c.command("RELOAD", 30)
            while c.log_text().count("Database correctly reloaded") == done_before:
                if c.proc.poll() is not None or time.monotonic() - t1 > 900:
                    failures.append(f"{label}: reload {r + 1} did not finish: {c.log_tail()}")
                    break
                time.sleep(0.02)
            t2 = time.monotonic()
            peak = proc_kb(pid, "VmHWM")
            # PING answered once clamd takes commands again (with ConcurrentDatabaseReload no it
            # answered nothing while it reloaded).
            c.command("PING", 120)
            time.sleep(1.0)
            after = proc_kb(pid, "VmRSS")
            rows.append(dict(wall=t2 - t1, before=before, peak=peak, after=after))
            log(f"  {label} round {r + 1}: {answer}, reloaded in {t2 - t1:.2f} s, RSS before {mb(before):.0f} MB, "
                f"peak {mb(peak):.0f} MB, after {mb(after):.0f} MB")
        errors = [line for line in c.log_text().splitlines() if "ERROR" in line or "WARNING" in line]
        failures += [f"{label}: {e}" for e in errors[:5]]
        sigs = next((line for line in c.log_text().splitlines() if "Loaded" in line and "signatures" in line), "")
    finally:
        rc = c.stop()
    if rc not in (0, -signal.SIGTERM):
        failures.append(f"{label}: exited {rc}")
    return dict(label=label, start=start, steady_kb=steady, rows=rows, loaded=sigs.strip()), failures


# -------------------------------------------------------------------------------------------- starts

def proc_cpu_s(pid):
    """utime + stime so far, seconds, of a process and every process under it (Breakwater's engine
    host, which builds the engines, and its scan workers)."""
    return procs.cpu_seconds(procs.tree(pid))


def service_kb(pid):
    """The memory a service holds, kB: the PSS of the process and of every process under it summed
    (Breakwater's scan workers share the engine's pages with their engine process: counted once). For one
    process alone (clamd) PSS is its RSS less its share of libraries other processes map too."""
    return sum(procs.pss_kb(p) for p in procs.tree(pid))


class PeakSampler(threading.Thread):
    """service_kb(pid) every 0.1 s until stopped; `peak` is the highest seen (a reload keeps two
    engines for seconds, far longer than a sample apart)."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.halt = pid, service_kb(pid), threading.Event()

    def run(self):
        while not self.halt.is_set():
            self.peak = max(self.peak, service_kb(self.pid))
            self.halt.wait(0.1)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.halt.set()
        self.join(10)
        self.peak = max(self.peak, service_kb(self.pid))


def bench_starts(binary, standin, dbdir, work, rounds):
    """Start-up only, breakwater and clamd alternately: wall and CPU seconds to listening, RSS then."""
    rows, failures = {"breakwater": [], "clamd": []}, []
    for r in range(rounds):
        order = ["breakwater", "clamd"] if r % 2 == 0 else ["clamd", "breakwater"]
        for who in order:
            if who == "breakwater":
                d = tempfile.mkdtemp(prefix="bw-start-", dir=work)
                args = ["--workers", "2", "--self-check", "0", "--metrics", "", "--signatures", SHIPPED,
                        "--signatures", standin]
                bw = reload_bench.BreakwaterDaemon(binary, d, args)
                t = time.monotonic()
                try:
                    bw.start(timeout=900)
                    wall = time.monotonic() - t
                    cpu = proc_cpu_s(bw.pid)
                    time.sleep(1.0)
                    rss = service_kb(bw.pid)
                finally:
                    rc = bw.stop(timeout=60)
                if rc != 0:
                    failures.append(f"start round {r + 1}: breakwater exited {rc}")
            else:
                c = Clamd(dbdir, work, True)
                try:
                    wall = c.start()
                    cpu = proc_cpu_s(c.proc.pid)
                    time.sleep(1.0)
                    rss = service_kb(c.proc.pid)
                finally:
                    c.stop()
            rows[who].append(dict(wall=wall, cpu=cpu, rss=rss))
            log(f"  start round {r + 1} {who}: listening after {wall:.1f} s wall, {cpu:.1f} s CPU, memory (PSS) {mb(rss):.0f} MB")
    return rows, failures


# ------------------------------------------------------------------------------------------- reloads

def clamd_reload(c, timeout=900):
    """RELOAD on clamd's socket; returns once clamd logged the reload and answers PING again."""
    done = c.log_text().count("Database correctly reloaded")
    answer = c.command("RELOAD", 30)
    t = time.monotonic()
    while c.log_text().count("Database correctly reloaded") == done:
        if c.proc.poll() is not None or time.monotonic() - t > timeout:
            raise RuntimeError(f"clamd reload did not finish ({answer}): {c.log_tail()}")
        time.sleep(0.02)
    c.command("PING", 120)


def bench_reloads(binary, standin, dbdir, work, rounds):
    """breakwater run (reload-mode concurrent), breakwater run (blocking), clamd (ConcurrentDatabaseReload
    yes) and clamd (no) all loaded; reloads in turn, in a rotating order: wall time, the daemon's CPU
    seconds, peak RSS (VmHWM after clear_refs 5); for breakwater also the engine build time it reports."""
    daemons = {}
    rows = {"breakwater concurrent": [], "breakwater blocking": [], "clamd yes": [], "clamd no": []}
    failures = []
    bws = []
    try:
        for mode in ("concurrent", "blocking"):
            d = tempfile.mkdtemp(prefix=f"bw-reloads-{mode}-", dir=work)
            bw = reload_bench.BreakwaterDaemon(binary, d, ["--workers", "2", "--self-check", "0", "--metrics", "",
                                                           "--signatures", SHIPPED, "--signatures", standin,
                                                           "--reload-mode", mode])
            bws.append(bw)
            bw.start(timeout=900)
            ctl = ["--control", os.path.join(bw.run_dir, "control.sock")]

            def reload(ctl=ctl):
                subprocess.run([binary, "reload", *ctl], capture_output=True, text=True, timeout=900, check=True)
                st = json.loads(subprocess.run([binary, "status", "--json", *ctl], capture_output=True,
                                               text=True).stdout)
                return dict(build=st["engine"]["build_seconds"], mode=st["last_reload"]["mode"])
            daemons[f"breakwater {mode}"] = (bw.pid, reload)
        for name, conc in (("clamd yes", True), ("clamd no", False)):
            c = Clamd(dbdir, work, conc)
            c.start()
            daemons[name] = (c.proc.pid, (lambda c=c: clamd_reload(c)), c)
        keys = list(rows)
        for r in range(rounds):
            order = keys[r % len(keys):] + keys[:r % len(keys)]
            for k in order:
                pid, fn = daemons[k][0], daemons[k][1]
                time.sleep(1.0)
                before = service_kb(pid)
                u0, s0, f0 = procs.cpu_split(procs.tree(pid))
                t0 = time.monotonic()
                with PeakSampler(pid) as sampler:
                    extra = fn() or {}
                wall = time.monotonic() - t0
                u1, s1, f1 = procs.cpu_split(procs.tree(pid))
                user, system, faults = u1 - u0, s1 - s0, f1 - f0
                peak = sampler.peak
                rows[k].append(dict(wall=wall, cpu=user + system, user=user, sys=system, faults=faults,
                                    before=before, peak=peak, **extra))
                log(f"  reload round {r + 1} {k}: {wall:.1f} s wall, {user + system:.1f} s CPU (user {user:.1f}, "
                    f"system {system:.1f}, {faults} page faults), PSS before {mb(before):.0f} MB, "
                    f"peak {mb(peak):.0f} MB {extra or ''}")
    except Exception as e:  # recorded; the daemons are stopped below
        failures.append(f"reloads: {e}")
    finally:
        for bw in bws:
            bw.stop(timeout=60)
        for k, v in daemons.items():
            if len(v) == 3:
                v[2].stop()
    return rows, failures


# -------------------------------------------------------------------------------------------- cgroup

CGROUP_V1 = "/sys/fs/cgroup/memory"


def bench_cgroup(binary, standin, work, reloads, factor):
    """breakwater run (reload-mode auto) in a cgroup v1 memory group of its own: started without a cap,
    then capped at `factor` x its steady RSS; `reloads` reloads while two clients stream the shipped
    ham and samples. Records each reload's mode, wall and peak RSS, the group's OOM kills, failcnt and
    max usage, and every answer (right, 4xx, or wrong)."""
    cg = os.path.join(CGROUP_V1, f"breakwater-bench-{os.getpid()}")
    os.mkdir(cg)
    failures, res = [], dict(reloads=[])
    d = tempfile.mkdtemp(prefix="bw-cgroup-", dir=work)
    wrapper = os.path.join(d, "in-cgroup.sh")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\necho $$ > {cg}/cgroup.procs || exit 97\nexec {binary} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    bw = reload_bench.BreakwaterDaemon(wrapper, d, ["--workers", "2", "--self-check", "0", "--metrics", "",
                                                    "--signatures", SHIPPED, "--signatures", standin,
                                                    "--reload-mode", "auto"])
    streams = []

    def cgread(name):
        with open(os.path.join(cg, name)) as f:
            return f.read()
    try:
        t = time.monotonic()
        bw.start(timeout=900)
        res["start"] = time.monotonic() - t
        time.sleep(2.0)
        steady = service_kb(bw.pid)
        cap = int(steady * 1024 * factor)
        with open(os.path.join(cg, "memory.limit_in_bytes"), "w") as f:
            f.write(str(cap))
        res.update(steady_kb=steady, cap=cap, charged_at_cap=int(cgread("memory.usage_in_bytes")))
        with open(os.path.join(cg, "memory.max_usage_in_bytes"), "w") as f:
            f.write("0")
        log(f"  steady memory (PSS) {mb(steady):.0f} MB, cap {cap >> 20} MB ({factor} x)")
        ctl = ["--control", os.path.join(bw.run_dir, "control.sock")]
        for _ in range(2):
            s = reload_bench.Stream(bw.milter_spec, reload_bench.load_stream_messages())
            s.start()
            streams.append(s)
        time.sleep(2.0)
        for r in range(reloads):
            t1 = time.monotonic()
            with PeakSampler(bw.pid) as sampler:
                p = subprocess.run([binary, "reload", *ctl], capture_output=True, text=True, timeout=900)
            wall = time.monotonic() - t1
            if bw.proc.poll() is not None:
                failures.append(f"cgroup: the daemon died during reload {r + 1}: {cgread('memory.oom_control')}")
                break
            peak = sampler.peak
            st = json.loads(subprocess.run([binary, "status", "--json", *ctl], capture_output=True,
                                           text=True).stdout)
            row = dict(wall=wall, peak=peak, mode=st["last_reload"]["mode"], reason=st["last_reload"]["mode_reason"],
                       build=st["engine"]["build_seconds"], ok=p.returncode == 0)
            res["reloads"].append(row)
            log(f"  reload {r + 1}: {row['mode']}, {wall:.1f} s (build {row['build']} s), peak {mb(peak):.0f} MB; "
                f"{row['reason']}")
            if p.returncode != 0:
                failures.append(f"cgroup: reload {r + 1} failed: {p.stderr.strip()}")
            time.sleep(2.0)
    except Exception as e:
        failures.append(f"cgroup: {e}")
    finally:
        for s in streams:
            s.stop_flag.set()
        for s in streams:
            s.join(120)
        oom = cgread("memory.oom_control")
        res["oom_kill"] = int(next((ln.split()[1] for ln in oom.splitlines() if ln.startswith("oom_kill ")), 0))
        res["failcnt"] = int(cgread("memory.failcnt"))
        res["max_usage"] = int(cgread("memory.max_usage_in_bytes"))
        res["alive"] = bw.proc is not None and bw.proc.poll() is None
        bw.stop(timeout=60)
        for _ in range(100):
            try:
                os.rmdir(cg)
                break
            except OSError:
                time.sleep(0.1)
    records = [x for s in streams for x in s.records]
    right = [x for x in records if reload_bench.verdict_ok(x[3], x[4], x[5])]
    soft = [x for x in records if x not in right and x[5] is not None and str(x[5]).startswith("4")]
    wrong = [x for x in records if x not in right and x not in soft]
    res.update(answered=len(records), right=len(right), tempfailed=len(soft), wrong=len(wrong),
               slowest=max((x[1] - x[0] for x in records), default=0))
    for x in wrong[:5]:
        failures.append(f"cgroup: {x[2]} expected {x[3]}, got {x[4]} {x[5]}")
    if res["oom_kill"]:
        failures.append(f"cgroup: {res['oom_kill']} OOM kill(s)")
    log(f"  {len(records)} answers: {len(right)} right, {len(soft)} 4xx, {len(wrong)} wrong; slowest "
        f"{res['slowest']:.1f} s; oom_kill {res['oom_kill']}, failcnt {res['failcnt']}, max usage "
        f"{res['max_usage'] >> 20} MB of {res['cap'] >> 20} MB")
    return res, failures


# ---------------------------------------------------------------------------------------------- scan

def corpus_files(corpus, count):
    names = sorted(n for n in os.listdir(corpus) if n != "manifest.tsv")
    return [os.path.join(corpus, n) for n in names[:count]]


def scan_command(binary, key, standin, listfile):
    """(command) for one scan configuration: bw-j2 / bw-j1 / clamscan, shipped alone or + the stand-in."""
    name, _, sets = key.partition(" ")
    dirs = [SHIPPED] + ([standin] if sets == "shipped+standin" else [])
    if name == "clamscan":
        return ["clamscan", *scan_bench.CLAMSCAN_MATCHING, *[a for d in dirs for a in ("-d", d)], "-f", listfile]
    jobs = "2" if name == "bw-j2" else "1"
    return [binary, "scan", "--jobs", jobs, "--no-summary", *[a for d in dirs for a in ("--signatures", d)],
            "--files-from", listfile]


def bench_scan(binary, standin, files, rounds, work, keys):
    tiny = os.path.join(work, "tiny.txt")
    with open(tiny, "w") as f:
        f.write("hello\n")
    lists = {}
    for kind, paths in (("full", files), ("tiny", [tiny])):
        lists[kind] = os.path.join(work, f"list-{kind}-{len(files)}")
        with open(lists[kind], "w") as f:
            f.write("".join(p + "\n" for p in paths))
    cpu = {k: [] for k in keys}
    load = {k: [] for k in keys}
    wall = {k: [] for k in keys}
    failures = []
    for r in range(rounds):
        order = list(keys) if r % 2 == 0 else list(reversed(keys))
        for k in order:
            tag = k.replace(" ", "_")
            lw, lc, _ = scan_bench.run(scan_command(binary, k, standin, lists["tiny"]),
                                       os.path.join(work, f"scan-{tag}-{r}-tiny.out"))
            out = os.path.join(work, f"scan-{tag}-{r}.out")
            w, c, _ = scan_bench.run(scan_command(binary, k, standin, lists["full"]), out)
            per = (c - lc) * 1000 / len(files)
            cpu[k].append(per)
            load[k].append(lc)
            wall[k].append(w - lw)
            found = scan_bench.detections(out, True)
            fps = sorted({n for names in found.values() for n in names if "Standin" in n})
            if fps:
                failures.append(f"scan {k}: stand-in signatures matched real mail: {fps[:5]}")
            log(f"  round {r + 1} {k}: load {lw:.1f} s wall / {lc:.1f} s CPU; scan {w - lw:.1f} s wall, "
                f"{per:.2f} CPU-ms/msg, {len(found)} messages with a finding")
    med = {k: statistics.median(v) for k, v in cpu.items()}
    res = dict(messages=len(files), cpu_ms=cpu, load_cpu_s=load, scan_wall_s=wall, median_cpu_ms=med)
    for name in ("bw-j2", "bw-j1", "clamscan"):
        a, b = cpu.get(f"{name} shipped"), cpu.get(f"{name} shipped+standin")
        if a and b:
            res[f"{name} ratio"] = statistics.median(y / x for x, y in zip(a, b))
    return res, failures


# ---------------------------------------------------------------------------------------------- fork

def bench_fork(standin, files, work):
    exe = os.path.join(REPO, "out", "bench", "forkshare")
    os.makedirs(os.path.dirname(exe), exist_ok=True)
    subprocess.run(["cc", "-O2", "-Wall", "-o", exe, os.path.join(BENCH, "forkshare.c"), "-lclamav"], check=True)
    lst = os.path.join(work, "list-fork")
    with open(lst, "w") as f:
        f.write("".join(p + "\n" for p in files))
    p = subprocess.run([exe, f"{standin}:{SHIPPED}", lst], capture_output=True, text=True)
    if p.returncode != 0:
        return None, [f"forkshare exited {p.returncode}: {p.stderr.strip()[-500:]}"]
    fig = {}
    for line in p.stdout.splitlines():
        k, _, v = line.partition(" ")
        fig[k] = float(v) if "." in v else int(v)
    log(f"  fork: engine of {fig['signatures']} signatures built in {fig['load_s'] + fig['compile_s']:.1f} s, parent "
        f"Private_Dirty {mb(fig['parent_loaded.Private_Dirty']):.0f} MB; child scanned {fig['child.scanned']} "
        f"({fig['child.found']} with a finding): Private_Dirty {mb(fig['child.Private_Dirty']):.1f} MB, "
        f"Shared_Dirty {mb(fig['child.Shared_Dirty']):.0f} MB, Rss {mb(fig['child.Rss']):.0f} MB")
    return fig, []


# ---------------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--standin", help="an existing stand-in directory (default: generated by officialdb.py)")
    ap.add_argument("--corpus", default=os.path.join(REPO, "out", "bench", "corpora", "mixed-1-3000"))
    ap.add_argument("--count", type=int, default=1000, help="messages for the scan part")
    ap.add_argument("--fork-count", type=int, default=400)
    ap.add_argument("--anchor-count", type=int, default=200, help="messages for the anchor part")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bin", default=os.environ.get("BREAKWATER_BIN", os.path.join(REPO, ".build/release/breakwater")))
    ap.add_argument("--only", default="load,daemon,clamd,starts,reloads,scan,anchor,fork", help="see above")
    ap.add_argument("--cgroup-factor", type=float, default=1.5, help="cgroup part: cap = FACTOR x steady RSS")
    ap.add_argument("--cgroup-reloads", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    parts = set(a.only.split(","))
    a.bin = os.path.abspath(a.bin)
    if parts & {"daemon", "scan", "anchor", "starts", "reloads", "cgroup"} and not os.access(a.bin, os.X_OK):
        sys.exit(f"scale_bench: no binary at {a.bin} (swift build -c release --static-swift-stdlib --product breakwater)")
    if parts & {"scan", "fork", "anchor"} and not os.path.isdir(a.corpus):
        sys.exit(f"scale_bench: no corpus at {a.corpus} (bench/corpus/generate.py --seed 1 --count 3000 --out DIR, or --corpus DIR)")
    standin = os.path.abspath(a.standin) if a.standin else officialdb.ensure(
        officialdb.default_dir(a.scale, a.seed), a.scale, a.seed, verbose=True)
    work = tempfile.mkdtemp(prefix="bw-scale-")
    files = corpus_files(a.corpus, max(a.count, a.fork_count, a.anchor_count)) if parts & {"scan", "fork", "anchor"} else []
    with open("/proc/loadavg") as f:
        loadavg = f.read().split()[:3]
    log(f"stand-in {standin}; {os.cpu_count()} cores, load average {' '.join(loadavg)}; nice {os.nice(0)}")
    results = dict(standin=standin, loadavg_start=loadavg, nice=os.nice(0))
    failures = []
    if "load" in parts:
        log("== load check (clamscan)")
        results["load"] = check_load(standin, work)
        if results["load"]["rc"] != 0 or results["load"]["problems"]:
            failures.append(f"clamscan load: exit {results['load']['rc']}, {results['load']['problems']}")
    if "daemon" in parts:
        log("== breakwater run")
        results["daemon"], f = bench_daemon(a.bin, standin, a.rounds)
        failures += f
    if "clamd" in parts:
        d = combined_dir(standin, work)
        for concurrent in (True, False):
            log(f"== clamd, ConcurrentDatabaseReload {'yes' if concurrent else 'no'}")
            r, f = bench_clamd(d, work, concurrent, a.rounds)
            results["clamd-yes" if concurrent else "clamd-no"] = r
            failures += f
    if "starts" in parts:
        log("== start-up, breakwater and clamd alternately")
        results["starts"], f = bench_starts(a.bin, standin, combined_dir(standin, work), work, a.rounds)
        failures += f
    if "reloads" in parts:
        log("== reloads, breakwater and clamd (yes, no) loaded side by side, in turn")
        results["reloads"], f = bench_reloads(a.bin, standin, combined_dir(standin, work), work, a.rounds)
        failures += f
    if "cgroup" in parts:
        log(f"== reload-mode auto in a memory cgroup capped at {a.cgroup_factor} x steady RSS, under a stream")
        results["cgroup"], f = bench_cgroup(a.bin, standin, work, a.cgroup_reloads, a.cgroup_factor)
        failures += f
    if "scan" in parts:
        log(f"== scan CPU, {a.count} messages of {a.corpus}")
        keys = [f"bw-j2 {s}" for s in ("shipped", "shipped+standin")]
        results["scan"], f = bench_scan(a.bin, standin, files[:a.count], a.rounds, work, keys)
        failures += f
    if "anchor" in parts:
        log(f"== scan CPU anchor: clamscan and breakwater scan --jobs 1, {a.anchor_count} messages")
        keys = [f"{n} {s}" for n in ("clamscan", "bw-j1") for s in ("shipped", "shipped+standin")]
        results["anchor"], f = bench_scan(a.bin, standin, files[:a.anchor_count], a.rounds, work, keys)
        failures += f
    if "fork" in parts:
        log(f"== fork after load, {a.fork_count} messages")
        results["fork"], f = bench_fork(standin, files[:a.fork_count], work)
        failures += f
    with open("/proc/loadavg") as f:
        results["loadavg_end"] = f.read().split()[:3]
    report(results)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    shutil.rmtree(work, ignore_errors=True)
    for f in failures:
        log("FAIL: " + f)
    sys.exit(1 if failures else 0)


def report(res):
    log("")
    daemons = [("breakwater run (concurrent reload)", res.get("daemon")),
               ("clamd, ConcurrentDatabaseReload yes", res.get("clamd-yes")),
               ("clamd, ConcurrentDatabaseReload no", res.get("clamd-no"))]
    daemons = [(n, r) for n, r in daemons if r]
    if daemons:
        log("| daemon | start to listening s | steady RSS MB | reload s (each round) | peak RSS during reload MB | peak / steady | RSS after MB |")
        log("|---|---|---|---|---|---|---|")
        for name, r in daemons:
            rows = r["rows"]
            peak = max(x["peak"] for x in rows) if rows else 0
            walls = " / ".join(f"{x['wall']:.1f}" for x in rows)
            if r.get("label") == "breakwater":
                walls += " (build " + " / ".join(str(x["build"]) for x in rows) + ")"
            log(f"| {name} | {r['start']:.1f} | {mb(r['steady_kb']):.0f} | {walls} | {mb(peak):.0f} | "
                f"{peak / r['steady_kb']:.2f} | {mb(statistics.median(x['after'] for x in rows)):.0f} |")
        bw, cy = res.get("daemon"), res.get("clamd-yes")
        if bw and cy:
            log(f"\nbreakwater / clamd (yes): start {bw['start'] / cy['start']:.2f}, steady RSS "
                f"{bw['steady_kb'] / cy['steady_kb']:.2f}, reload peak "
                f"{max(x['peak'] for x in bw['rows']) / max(x['peak'] for x in cy['rows']):.2f}")
    if res.get("starts"):
        st = res["starts"]
        med = {k: {f: statistics.median(x[f] for x in v) for f in ("wall", "cpu", "rss")} for k, v in st.items()}
        log("\n| start-up, alternately (median of %d) | wall s | CPU s | memory (PSS) MB |" % len(st["clamd"]))
        log("|---|---|---|---|")
        for k, m in med.items():
            log(f"| {k} | {m['wall']:.1f} | {m['cpu']:.1f} | {mb(m['rss']):.0f} |")
        log(f"| breakwater / clamd | {med['breakwater']['wall'] / med['clamd']['wall']:.2f} | "
            f"{med['breakwater']['cpu'] / med['clamd']['cpu']:.2f} | {med['breakwater']['rss'] / med['clamd']['rss']:.2f} |")
    if res.get("reloads"):
        rl = res["reloads"]
        log("\n| reload, in turn (median of %d) | wall s | build s | CPU s | user s | system s | page faults | "
            "PSS before MB | peak MB | peak / before |" % max(len(v) for v in rl.values()))
        log("|---|---|---|---|---|---|---|---|---|---|")
        for k, v in rl.items():
            if not v:
                continue
            m = {f: statistics.median(x.get(f, 0) for x in v) for f in ("wall", "cpu", "user", "sys", "faults", "before")}
            builds = [x["build"] for x in v if "build" in x]
            build = f"{statistics.median(builds):.1f}" if builds else "-"
            peak = max(x["peak"] for x in v)
            log(f"| {k} | {m['wall']:.1f} | {build} | {m['cpu']:.1f} | {m['user']:.1f} | {m['sys']:.1f} | "
                f"{m['faults']:,.0f} | {mb(m['before']):.0f} | {mb(peak):.0f} | "
                f"{peak / m['before']:.2f} |")
    if res.get("cgroup"):
        c = res["cgroup"]
        log(f"\ncgroup: steady {mb(c['steady_kb']):.0f} MB, cap {c['cap'] >> 20} MB; reloads: "
            + "; ".join(f"{x['mode']} {x['wall']:.1f} s peak {mb(x['peak']):.0f} MB" for x in c["reloads"])
            + f"; {c['answered']} answers ({c['right']} right, {c['tempfailed']} 4xx, {c['wrong']} wrong), "
            f"oom_kill {c['oom_kill']}, failcnt {c['failcnt']}, max usage {c['max_usage'] >> 20} MB, "
            f"alive {c['alive']}")
    for part in ("scan", "anchor"):
        s = res.get(part)
        if not s:
            continue
        log(f"\n{part}: CPU-ms/msg ({s['messages']} messages, load subtracted; median (per round)): "
            + "; ".join(f"{k} {statistics.median(v):.2f} ({' / '.join(f'{x:.2f}' for x in v)})" for k, v in s["cpu_ms"].items())
            + "; with/without the stand-in: "
            + ", ".join(f"{n} {s[n + ' ratio']:.2f}" for n in ("bw-j2", "bw-j1", "clamscan") if n + " ratio" in s))
    if res.get("fork"):
        f = res["fork"]
        log(f"fork after load: child Private_Dirty {mb(f['child.Private_Dirty']):.1f} MB, Shared_Dirty "
            f"{mb(f['child.Shared_Dirty']):.0f} MB after {f['child.scanned']} messages; parent Private_Dirty "
            f"{mb(f['parent_loaded.Private_Dirty']):.0f} MB")


if __name__ == "__main__":
    main()
