#!/usr/bin/env python3
"""Breakwater's milter benchmark (issue 3): in ONE invocation, on the same messages,

  (a) Postfix + Breakwater (`breakwater run`)
  (b) Postfix + clamav-milter + clamd (Debian's packages; same signatures, OnInfected Reject,
      scan limits matched to Breakwater's defaults)
  (c) Postfix alone, no milter
  at 4, 32 and 200 concurrent SMTP clients, on two corpora: mixed mail (bench/corpus/generate.py
  --seed 1, 3,000 messages) and a wave of small near-identical messages (--seed 7 spam plus
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

Both file-system layouts (issue 23), each round interleaved: "disk", the host as Debian 12 ships it
(/tmp and the Postfix queue on a disk file system: the runs' directories under --disk-workdir,
/var/tmp by default), and "tmpfs", everything in memory (as current Debian's /tmp: --tmpfs-workdir,
/dev/shm). Each run's Postfix queue, Breakwater's spool (and the scan temporary directory it
chooses itself), clamd's and clamav-milter's TemporaryDirectory live in its layout's directory; the
results name each corpus NAME@LAYOUT. --baseline BIN adds the configuration "baseline": another
build of `breakwater run` (the one before a change), run beside the others in the same rounds.

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
    bench/milter_bench.py --generator bench/corpus/generate.py       # makes the corpora itself

Needs root (Postfix), postfix, clamav-daemon, clamav-milter (scripts/setup.sh --bench), cc and a
release build of breakwater (BREAKWATER_BIN or --breakwater; default .build/release/breakwater).
Writes results.json, results.md and every run's logs to the output directory (default
out/bench/milter-TIMESTAMP). Stops every process it started, by PID.

The code is in bench/milterbench/: corpora.py (the corpora and the wave), daemons.py (Postfix from
the integration tests' harness, smtp-sink, the milters), measure.py (/proc, the sampler), runs.py
(the runs and the judging of verdicts), report.py (medians, ratios, results.md).
"""

import argparse
import os
import shutil
import signal
import sys
import time

from milterbench.common import ALL_CONFIGS, CONFIGS, FLOOR_CONFIGS, HERE, REPO, Shield, filesystem_of, log
from milterbench.corpora import Corpus, generate_corpora
from milterbench.runs import Bench


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", help="mixed corpus: a directory with manifest.tsv (generate.py --seed 1 --count 3000)")
    ap.add_argument("--wave-corpus", help="wave corpus: a directory made by make_wave (or by this script), "
                    "or any generated corpus directory to use as is")
    ap.add_argument("--generator", help="a corpus generator (bench/corpus/generate.py, or one with its flags and manifest): generate both corpora (cached in --corpus-cache)")
    ap.add_argument("--corpus-cache", default=os.path.join(REPO, "out", "bench", "corpora"))
    ap.add_argument("--signatures", default=os.path.join(HERE, "sigs"),
                    help="signature directory the corpus manifest refers to (default bench/sigs)")
    ap.add_argument("--breakwater", default=os.environ.get("BREAKWATER_BIN", os.path.join(REPO, ".build", "release", "breakwater")))
    ap.add_argument("--clients", default="4,32,200")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smoke run: 200 messages per corpus, one round")
    ap.add_argument("--count", type=int, help="use only the first N messages of each corpus")
    ap.add_argument("--only-mixed", action="store_true", help="run the mixed corpus only (no wave corpus)")
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
    ap.add_argument("--workdir", default="/tmp", help="where the benchmark's own files live (load generator, lists)")
    ap.add_argument("--layouts", default="disk,tmpfs",
                    help="file-system layouts to run every configuration in, interleaved: disk (--disk-workdir), "
                         "tmpfs (--tmpfs-workdir)")
    ap.add_argument("--disk-workdir", default="/var/tmp",
                    help="the disk layout's directory (Postfix queues, spools, scan temporary files): a disk file "
                         "system, as /tmp and /var/spool/postfix are on Debian 12 (default /var/tmp)")
    ap.add_argument("--tmpfs-workdir", default="/dev/shm", help="the tmpfs layout's directory (default /dev/shm)")
    ap.add_argument("--baseline", help="another breakwater binary (the build before a change): adds the "
                    "configuration baseline, run like breakwater in the same rounds")
    ap.add_argument("--keep-work", action="store_true")
    a = ap.parse_args()
    if a.warmup != "auto" and not (a.warmup.isdigit()):
        ap.error(f"--warmup: {a.warmup!r} is neither a number of batches nor auto")
    a.warmup = str(int(a.warmup)) if a.warmup != "auto" else a.warmup
    a.argv = [os.path.relpath(sys.argv[0], REPO) if sys.argv[0].startswith(REPO) else sys.argv[0]] + sys.argv[1:]
    a.clients = [int(x) for x in a.clients.split(",") if x]
    a.configs = [x for x in a.configs.split(",") if x]
    if a.baseline:
        a.baseline = os.path.abspath(a.baseline)
        if "baseline" not in a.configs:
            a.configs.append("baseline")
    elif "baseline" in a.configs:
        ap.error("--configs baseline needs --baseline BIN")
    a.layouts = [x for x in a.layouts.split(",") if x]
    dirs = {"disk": a.disk_workdir, "tmpfs": a.tmpfs_workdir}
    unknown_layouts = [x for x in a.layouts if x not in dirs]
    if unknown_layouts or not a.layouts:
        ap.error(f"--layouts: give disk, tmpfs or both (not {', '.join(unknown_layouts) or 'nothing'})")
    a.layout_dirs = {x: dirs[x] for x in a.layouts}
    a.layout_desc = {}
    for x, d in a.layout_dirs.items():
        mnt, fstype = filesystem_of(d)
        a.layout_desc[x] = f"{d} ({fstype} on {mnt})"
        if (x == "disk") == (fstype == "tmpfs"):
            log(f"warning: layout {x}: {d} is on {fstype} ({mnt})")
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
    if not a.corpus or not (a.wave_corpus or a.only_mixed):
        sys.exit("milter_bench: give --corpus and --wave-corpus (generated corpus directories), or --generator bench/corpus/generate.py")
    base = [Corpus("mixed", os.path.abspath(a.corpus), a.count)]
    if not a.only_mixed:
        base.append(Corpus("wave", os.path.abspath(a.wave_corpus), a.count))
    corpora = [c.with_layout(x) for x in a.layouts for c in base]
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
            for w in [b.work, *b.works.values()]:
                shutil.rmtree(w, ignore_errors=True)
    print(md)
    log(f"results in {a.out}/results.md and results.json")


if __name__ == "__main__":
    main()

