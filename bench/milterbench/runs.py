"""The runs: one SMTP run (a configuration behind a fresh Postfix at N clients), a direct milter run,
a `breakwater scan` run; the load generator that drives them and the judging of every verdict."""
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time

from .common import ALL_CONFIGS, BREAKWATER_CONFIGS, CLK_TCK, FLOOR_CONFIGS, HERE, Shield, log
from .corpora import LIMIT_NAME, WarmupCorpus
from .daemons import Breakwater, ClamavMilter, FloorMilter, Postfix, Sink
from .measure import (Sampler, group_cpu_ticks, machine_cpu_ticks, machine_interrupts, own_cpu_ms, pct,
                      postfix_process_counts, status_field)
from .report import Report

def strip_unofficial(name):
    return name[: -len(".UNOFFICIAL")] if name.endswith(".UNOFFICIAL") else name


class Bench(Report):
    def __init__(self, args):
        self.a = args
        self.out = args.out
        self.work = tempfile.mkdtemp(prefix="bw-mbench-", dir=args.workdir)
        os.chmod(self.work, 0o755)
        # One working directory per file-system layout (--layouts): the Postfix queue, the spools and
        # the scan temporary files of a run on a corpus in that layout live there.
        self.works = {}
        for layout, d in getattr(args, "layout_dirs", {}).items():
            self.works[layout] = tempfile.mkdtemp(prefix="bw-mbench-", dir=d)
            os.chmod(self.works[layout], 0o755)
        self.runs = []
        self.loadgen = os.path.join(self.work, "loadgen")
        self.floor_milter = os.path.join(self.work, "floor_milter")
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
        if config in BREAKWATER_CONFIGS:
            binary = self.a.baseline if config == "baseline" else self.a.breakwater
            return Breakwater(binary, os.path.join(run_dir, "bw"), self.a.signatures, self.a.bw_arg,
                              self.a.milter_socket, metrics=True)
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
    def new_run_dir(self, label, corpus=None):
        self.run_no += 1
        base = self.works.get(getattr(corpus, "layout", None), self.work)
        d = os.path.join(base, f"{self.run_no:03d}-{label}")
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
        run_dir = self.new_run_dir(label, corpus)
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
            before = daemon.counters() if isinstance(daemon, Breakwater) else {}
            m = self.drive("smtp", postfix.port, clients, corpus, run_dir, groups, postfix, sink)
            if not m["drained"]:
                m["queue_left"] = postfix.queue_counts()
            if daemon:
                for name, pids in groups.items():
                    m.setdefault("vmhwm", {})[name] = sum(status_field(p, "VmHWM") for p in pids) * 1024
                if isinstance(daemon, Breakwater):
                    # Scans and second scans for every match (issue 23) in the measured run.
                    cnt = daemon.counters()
                    for key in ("scans_total", "rescans_total"):
                        if key in cnt:
                            m[key.replace("_total", "")] = int(cnt[key] - before.get(key, 0))
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
                    if config in BREAKWATER_CONFIGS:
                        rec["exit_status"] = rc
                sink.stop()
                self.close_run_dir(run_dir, label)
        self.report_run(rec)
        self.runs.append(rec)
        return rec

    def run_direct(self, corpus, round_no, which="breakwater"):
        """(d) `breakwater run`, or (e) the floor milter (which="floor"), driven directly by loadgen."""
        label = f"{corpus.name}-{which}-direct-r{round_no}"
        run_dir = self.new_run_dir(label, corpus)
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
        tmp = os.path.join(self.works.get(corpus.layout, self.work), f"{self.run_no:03d}-{label}-tmp")
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
