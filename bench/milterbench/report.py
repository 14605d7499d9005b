"""The results: medians over rounds, the ratios against the targets, results.json and results.md."""
import datetime as _dt
import json
import os
import statistics

from .common import ALL_CONFIGS, CONFIG_LABEL, SCALING_CONFIGS


class Report:
    """The result methods of Bench (runs.py): they read self.runs and self.a."""

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
                        "wall_s", "reported_msgs_per_s", "scans", "rescans"):
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
                for name, cfg in (("bw", bw), ("baseline", med.get((corpus, "baseline", clients)))):
                    if cfg and cl:
                        # Issue 23's figures: CPU per message and msgs/s against clamav-milter + clamd.
                        for key, label in (("machine_cpu_ms_per_msg", "cpu_machine"), ("own_cpu_ms_per_msg", "cpu_own"),
                                           ("msgs_per_s", "msgs")):
                            if cfg.get(key) and cl.get(key):
                                row[f"{name}_vs_clamav_{label}"] = cfg[key] / cl[key]
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
                 f"the first signature (clamd.conf has no all-matches setting; Breakwater stops there too unless "
                 f"a weaker action than the strictest matched first); "
                 f"working directories (Postfix queues, spools, scan temporary files): "
                 + ", ".join(f"{k}: {v}" for k, v in getattr(self.a, "layout_desc", {}).items())
                 + f" (NAME@LAYOUT below); load generator: "
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
                 "own = the processes involved (Postfix tree, milter daemons with the processes under them, "
                 "sink, load generator). "
                 "RSS: peak of the process (Postfix: all its processes summed; Breakwater with its "
                 "engine host and scan workers: their PSS summed, the engine's shared pages once; sampled every "
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
            for clients in self.a.clients:
                r = med.get((c.name, "breakwater", clients))
                if r and r.get("scans"):
                    L.append(f"Breakwater at {clients} clients scanned a message a second time for every match "
                             f"(first match not the strictest action) {f1(r.get('rescans'), 0)} times in "
                             f"{f1(r['scans'], 0)} scans (medians over rounds).\n")
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
                for name, label in (("bw", "Breakwater"), ("baseline", "Breakwater baseline build")):
                    if f"{name}_vs_clamav_cpu_machine" in row:
                        L.append(f"| {label} / clamav-milter+clamd at {clients} clients: CPU-ms/msg machine (own); "
                                 f"msgs/s | {f1(row[f'{name}_vs_clamav_cpu_machine'], 2)} "
                                 f"({f1(row.get(f'{name}_vs_clamav_cpu_own'), 2)}); "
                                 f"{f1(row.get(f'{name}_vs_clamav_msgs'), 2)} | CPU ≤ 0.8, msgs/s ≥ 1 |")
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
