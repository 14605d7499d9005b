#!/usr/bin/env python3
"""What one crash of the scanner costs: the time from a message that crashes libclamav until mail is
accepted again, with a supervisor that restarts the daemon as systemd does (Restart=on-failure).

    python3 bench/crash_bench.py BINARY SIGDIR [--restart-sec 1] [--rounds 3] [--env K=V ...]

The crash is IntegrationTests/crashlib/crashlib.c (preloaded; it crashes libclamav's scan entry
point on a marker string), so nothing in the product is switched. For each round: the daemon is up
(unix socket), one session sends the crashing message, and the script records, from the end of that
message: when a new connection to the milter socket is refused (nothing takes connections that
nobody answers), when the process has exited, when the restarted daemon listens again, and when the
first ordinary message after it is accepted. The restart waits --restart-sec after the exit (the
unit's RestartSec=). --env sets the daemon's environment (SWIFT_BACKTRACE=... for instance; the
default leaves SWIFT_BACKTRACE unset, as main's unit did).
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "IntegrationTests"))
from harness import mail  # noqa: E402
from harness.breakwater import BreakwaterDaemon  # noqa: E402
from harness.milterclient import run_session, start_session  # noqa: E402


def build_crashlib(out_dir):
    so = os.path.join(out_dir, "crashlib.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", so,
                    os.path.join(REPO, "IntegrationTests", "crashlib", "crashlib.c"), "-ldl"], check=True)
    return so


def refuses(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.2)
    try:
        s.connect(path)
        return False
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    except OSError:  # a full backlog (timeout): still taking connections nobody answers
        return False
    finally:
        s.close()


def crashing_message(tid):
    return (f"From: <x@example.org>\r\nTo: <user@dest.example>\r\nSubject: crash\r\n"
            f"Message-ID: <{tid}@example.org>\r\n\r\nBREAKWATER-CRASH-MARKER:{tid}\r\n").encode()


def until_accepted(bw, pause):
    """Sends an ordinary message every `pause` seconds until one is accepted; returns when (monotonic)."""
    while run_session(bw.milter_spec, mail.ham(uuid.uuid4().hex[:12])).kind != "continue":
        time.sleep(pause)
    return time.monotonic()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary")
    ap.add_argument("sigdir")
    ap.add_argument("--restart-sec", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--extra", action="append", default=[], help="extra daemon flag (repeat; KEY=VALUE)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="crashbench-")
    so = build_crashlib(work)
    env = dict(os.environ)
    env.pop("SWIFT_BACKTRACE", None)
    env["LD_PRELOAD"] = so
    env["CRASHLIB_LOG"] = os.path.join(work, "crashes.log")
    for kv in a.env:
        k, _, v = kv.partition("=")
        env[k] = v
    extra = []
    for kv in a.extra:
        k, _, v = kv.partition("=")
        extra += [f"--{k}", v]
    bw = BreakwaterDaemon(os.path.abspath(a.binary), work,
                          ["--signatures", a.sigdir, "--workers", "2", "--metrics", "", *extra],
                          socket_kind="unix", env=env)
    t = time.monotonic()
    bw.start(timeout=600)
    print(f"first start: listening after {time.monotonic() - t:.1f} s", flush=True)
    rows = []
    for r in range(a.rounds):
        ok = run_session(bw.milter_spec, mail.ham(uuid.uuid4().hex[:12]))
        assert ok.kind == "continue", ok
        tid = uuid.uuid4().hex[:12]
        th, out = start_session(bw.milter_spec, crashing_message(tid), timeout=300)
        while "eom" not in out:
            time.sleep(0.001)
        t0 = out["eom"]
        refused = exited = None
        while exited is None:
            now = time.monotonic()
            if refused is None and refuses(bw.socket_path):
                refused = now
            if bw.proc.poll() is not None:
                exited = time.monotonic()
            elif "answered" in out or "error" in out:
                break  # scan workers: the daemon answered the crashing message and goes on
            time.sleep(0.001)
        if exited is None:
            answered = out.get("answered", time.monotonic())
            accepted = until_accepted(bw, 0.005)
            th.join(5)
            row = (answered - t0, answered - t0, answered - t0, accepted - t0)
            rows.append(row)
            print(f"round {r + 1}: the daemon went on (scan workers); crashing message answered {row[0]:.3f} s "
                  f"({out.get('reply') and out['reply'].smtp_code} {out.get('reply') and out['reply'].enhanced}), "
                  f"mail accepted again {row[3]:.3f} s after its end of data", flush=True)
            continue
        if refused is None:
            refused = exited
        time.sleep(a.restart_sec)
        bw.start(timeout=600)
        listening = time.monotonic()
        accepted = until_accepted(bw, 0.05)
        th.join(5)
        row = (refused - t0, exited - t0, listening - t0, accepted - t0)
        rows.append(row)
        print(f"round {r + 1}: socket refuses {row[0]:.2f} s, process exited {row[1]:.2f} s, listening again "
              f"{row[2]:.2f} s, mail accepted again {row[3]:.2f} s (restart after {a.restart_sec:g} s)", flush=True)
    bw.stop()
    lines = sum(1 for _ in open(bw.log_path, errors="replace"))
    print(f"log lines over {a.rounds} crashes: {lines}")
    med = [sorted(c)[len(c) // 2] for c in zip(*rows)]
    print(f"median: refuses {med[0]:.3f} s, exited {med[1]:.2f} s, listening {med[2]:.2f} s, accepted {med[3]:.2f} s")


if __name__ == "__main__":
    main()
