"""The benchmark's corpora: a generated directory with manifest.tsv (file, class, expected signature,
kind, bytes) read as a Corpus; the mixed corpus and the spam wave made from the generator's output;
the warm-up messages sent before a measured SMTP run."""
import copy
import os
import random
import re
import shutil
import subprocess
import sys

from .common import log

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
    # The file-system layout the runs on this corpus use (with_layout); None: --workdir.
    layout = None

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
                raise RuntimeError(f"{p}: no X-Bench-Id header (not a generated corpus message?)")
            self.ids.append(m.group(1).decode())
        self.total_bytes = sum(r["bytes"] for r in rows)
        sizes = sorted(r["bytes"] for r in rows)
        self.median_bytes = sizes[len(sizes) // 2]

    def __len__(self):
        return len(self.rows)

    def with_layout(self, layout):
        """The same messages, run in `layout` (a key of --layouts): named NAME@LAYOUT in the results."""
        c = copy.copy(self)
        c.name, c.layout = f"{self.name}@{layout}", layout
        return c

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
WAVE_SOURCE_COUNT = 15080   # --seed 7 makes about 26 % spam: enough for WAVE_SPAM


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
    """A spam wave from a generated corpus directory: its spam (the Mini Cooper and phishing waves, near-
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
