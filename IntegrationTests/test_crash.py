"""Crash containment through a real private Postfix: a message that crashes the scanner costs that
message only. Scans run in worker processes forked from an engine process (EngineHost.swift): the
worker that crashes held only that message, which is convicted at once (on-scan-crash); the daemon
goes on, a new worker is forked in milliseconds, and no other message is lost or answered 4xx. A
supervisor restarts the daemon as systemd would (Restart=on-failure) when the daemon itself ends.

The parser bug is a test device of our own, IntegrationTests/crashlib/crashlib.c, built here with cc
and preloaded into `breakwater run`: it makes libclamav's scan entry point fault on the marker
string BREAKWATER-CRASH-MARKER:ID (and, with CRASHLIB_DELAY_MS, slows every scan so that several
are in flight together). Nothing inside the product is switched.

The sending side retries each 4xx answer as an MTA's queue does (the same bytes again after a
pause); the receiving Postfix adds a new Received line with a new queue id to each attempt.
"""
import os
import random
import re
import signal
import threading
import time
import uuid

import pytest

from conftest import require
from harness import mail, procs
from harness.breakwater import BreakwaterDaemon

HERE = os.path.dirname(os.path.abspath(__file__))


class Supervisor:
    """Restarts the daemon `restart_sec` after each exit, as systemd's Restart=on-failure does."""

    def __init__(self, bw, restart_sec=0.3):
        self.bw, self.restart_sec = bw, restart_sec
        self.exits = []  # return codes of the exits seen
        self.stopping = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.bw.start()
        self.thread.start()
        return self

    def _run(self):
        while not self.stopping:
            with self.lock:
                p = self.bw.proc
                if p is not None and p.poll() is not None and not self.stopping:
                    self.exits.append(p.returncode)
                    self.bw._cleanup()
                    time.sleep(self.restart_sec)
                    self.bw.start(timeout=60)
            time.sleep(0.02)

    def kill9(self):
        with self.lock:
            if self.bw.proc is not None and self.bw.proc.poll() is None:
                os.kill(self.bw.proc.pid, signal.SIGKILL)
                return True
        return False

    def stop(self):
        self.stopping = True
        self.thread.join(70)
        with self.lock:
            return self.bw.stop()


def crashing(tid):
    return (f"From: Mallory <mallory@example.net>\r\nTo: <user@dest.example>\r\nSubject: invoice\r\n"
            f"Date: Mon, 04 Mar 2024 07:00:00 +0000\r\nMessage-ID: <{tid}@example.net>\r\nX-Test-Id: {tid}\r\n"
            f"\r\nPlease see the attached.\r\nBREAKWATER-CRASH-MARKER:{tid}\r\n").encode()


def deliver_all(pf, corpus, senders=4, retry_pause=0.3, deadline_s=150):
    """Sends every (tid, data) of `corpus` through `pf` with `senders` parallel clients; a 4xx answer
    (or a dropped connection) is retried after `retry_pause`, like an MTA's queue. Returns
    {tid: (final code, text, attempts)}; a message with no final answer by the deadline is missing."""
    pending = list(corpus)
    random.Random(7).shuffle(pending)
    lock = threading.Lock()
    final, attempts = {}, {}
    deadline = time.monotonic() + deadline_s

    def worker():
        while time.monotonic() < deadline:
            with lock:
                if not pending:
                    return
                tid, data = pending.pop(0)
                attempts[tid] = attempts.get(tid, 0) + 1
            try:
                r = pf.send(data, timeout=60)
                code, text = r.code, r.text
            except Exception as e:  # a dropped SMTP connection: the sender retries it too
                code, text = 421, repr(e)
            if 400 <= code < 500:
                time.sleep(retry_pause)
                with lock:
                    pending.append((tid, data))
                continue
            with lock:
                final[tid] = (code, text, attempts[tid])

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(senders)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(deadline_s + 70)
    return final, attempts


def crash_counts(log_path):
    counts = {}
    try:
        with open(log_path) as f:
            for line in f:
                _pid, tid = line.split()
                counts[tid] = counts.get(tid, 0) + 1
    except FileNotFoundError:
        pass
    return counts


def start_daemon(workdir, test_sigs, crashlib, delay_ms, extra=()):
    env = dict(os.environ)
    env.pop("SWIFT_BACKTRACE", None)
    env["LD_PRELOAD"] = crashlib
    env["CRASHLIB_LOG"] = os.path.join(workdir, "crashes.log")
    env["CRASHLIB_DELAY_MS"] = str(delay_ms)
    binary = os.environ.get("BREAKWATER_BIN", os.path.join(os.path.dirname(HERE), ".build/debug/breakwater"))
    bw = BreakwaterDaemon(os.path.abspath(binary), workdir,
                          ["--signatures", test_sigs, "--workers", "2", *extra], socket_kind="unix", env=env)
    return bw


def check_ordinary(final, sink, hams, eicars):
    lost = [t for t in hams + eicars if t not in final]
    assert not lost, f"messages with no final answer: {lost}"
    for tid in hams:
        code, text, _ = final[tid]
        assert code == 250, f"ham {tid}: {code} {text}"
        assert sink.wait_for("X-Test-Id", tid, timeout=30), f"ham {tid} accepted but not delivered"
    for tid in eicars:
        code, text, _ = final[tid]
        assert code == 550 and "5.7.1" in text and mail.EICAR_SIG in text, f"eicar {tid}: {code} {text}"


def test_crash_costs_only_that_message(workdir, test_sigs, crashlib, postfix, sink):
    """Crashing messages among ordinary ones, several scans in flight: each crashing message crashes
    a scan worker once and is answered 550 5.7.0 at its first attempt; the daemon process survives
    (same PID, never restarted); every ordinary message, including those in flight beside a crash,
    is delivered or rejected as it should be at its first attempt (none 4xx)."""
    bw = start_daemon(workdir, test_sigs, crashlib, delay_ms=40)
    sup = Supervisor(bw).start()
    pid = bw.pid
    try:
        pf = postfix(milters=bw.postfix_milter)
        hams = [mail.test_id() for _ in range(24)]
        eicars = [mail.test_id() for _ in range(6)]
        bombs = [mail.test_id() for _ in range(3)]
        corpus = ([(t, mail.ham(t)) for t in hams] + [(t, mail.eicar_attachment(t)) for t in eicars]
                  + [(t, crashing(t)) for t in bombs])
        final, attempts = deliver_all(pf, corpus)
        assert bw.pid == pid and procs.alive(pid), "the daemon process did not survive the crashes"
    finally:
        rc = sup.stop()
    log = bw.log()
    assert sup.exits == [], f"the daemon ended {sup.exits}\n{bw.log_tail()}"
    check_ordinary(final, sink, hams, eicars)
    retried = {t: attempts[t] for t in hams + eicars if attempts[t] != 1}
    assert not retried, f"ordinary messages answered 4xx (retried): {retried}\n{bw.log_tail()}"
    counts = crash_counts(os.path.join(workdir, "crashes.log"))
    for tid in bombs:
        assert tid in final, f"crashing message {tid} has no final answer; crashes {counts.get(tid)}\n{bw.log_tail()}"
        code, text, n = final[tid]
        assert code == 550 and "5.7.0" in text and "could not be scanned safely" in text, f"{tid}: {code} {text}"
        assert n == 1, f"{tid} needed {n} attempts"
        assert counts.get(tid, 0) == 1, f"{tid} crashed a worker {counts.get(tid, 0)} times"
        assert not sink.find("X-Test-Id", tid)
    # Logged with queue id, sender and digest; a copy of each convicted message kept, mode 0600.
    convicted = [l for l in log.splitlines() if "convicted, answered on-scan-crash (reject)" in l]
    assert len(convicted) == len(bombs), "\n".join(convicted)
    for line in convicted:
        assert re.search(r"queue=[0-9A-F]+ from=<sender@example.org> digest=[0-9a-f]{64}", line), line
        assert "signal 11" in line, line
    crash_dir = os.path.join(bw.spool_dir, "crash")
    copies = [n for n in os.listdir(crash_dir) if n.startswith("crashed-")]
    assert len(copies) == len(bombs)
    for n in copies:
        assert os.stat(os.path.join(crash_dir, n)).st_mode & 0o777 == 0o600
        with open(os.path.join(crash_dir, n), "rb") as f:
            assert b"BREAKWATER-CRASH-MARKER:" in f.read()
    assert not [n for n in os.listdir(crash_dir) if n.startswith("inflight-")]
    assert rc == 0, bw.log_tail()


def test_kill9_convicts_no_innocent(workdir, test_sigs, crashlib, postfix, sink):
    """kill -9 of the daemon at random moments while scans are in flight: the messages in flight become
    suspects and are scanned alone when they come again, and none of them is convicted (no crash while
    alone); every message ends delivered or rejected as it should be. One crashing message among them
    is still convicted."""
    bw = start_daemon(workdir, test_sigs, crashlib, delay_ms=150)
    sup = Supervisor(bw).start()
    kills = []
    stop = threading.Event()

    def killer():
        rnd = random.Random(11)
        while not stop.is_set() and len(kills) < 4:
            if stop.wait(rnd.uniform(0.8, 2.0)):
                break  # the mail is through: a kill now would only hit the final stop
            if os.path.exists(bw.log_path) and sup.kill9():
                kills.append(time.monotonic())

    try:
        pf = postfix(milters=bw.postfix_milter)
        hams = [mail.test_id() for _ in range(24)]
        eicars = [mail.test_id() for _ in range(6)]
        bomb = mail.test_id()
        corpus = ([(t, mail.ham(t)) for t in hams] + [(t, mail.eicar_attachment(t)) for t in eicars]
                  + [(bomb, crashing(bomb))])
        k = threading.Thread(target=killer, daemon=True)
        k.start()
        final, attempts = deliver_all(pf, corpus)
        stop.set()
        k.join(5)
    finally:
        rc = sup.stop()
    log = bw.log()
    assert len(kills) >= 2, "the daemon was not killed"
    in_flight = [l for l in log.splitlines() if "was being scanned (not a crash of that scan)" in l]
    assert in_flight, "no kill hit a scan in flight: the test proves nothing\n" + bw.log_tail()
    check_ordinary(final, sink, hams, eicars)
    cleared = [l for l in log.splitlines() if "scanned alone without a crash: cleared" in l]
    assert cleared, "no suspect was scanned alone again"
    code, text, _ = final[bomb]
    assert code == 550 and "5.7.0" in text, f"{bomb}: {code} {text}"
    assert crash_counts(os.path.join(workdir, "crashes.log")).get(bomb, 0) <= 2
    assert rc == 0, bw.log_tail()


def metric(port, name):
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    m = re.search(rf"^breakwater_{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_crash_metrics_and_tempfail_answer(workdir, test_sigs, crashlib):
    """Over the milter protocol, one crashing message sent again and again: the first attempt crashes
    a worker and is answered on-scan-crash at once, here tempfail (451 4.7.0) with crash-copies 0 (no
    copy kept); the next attempts are answered without a scan. Counted in
    breakwater_scan_crashes_total and breakwater_scan_worker_restarts_total; the daemon never ends, and
    the next ordinary message is accepted well under a second after the crash's answer."""
    from harness.milterclient import run_session
    from harness.ports import free_port, release_port
    port = free_port()
    bw = start_daemon(workdir, test_sigs, crashlib, delay_ms=0,
                      extra=("--metrics", f"127.0.0.1:{port}", "--on-scan-crash", "tempfail", "--crash-copies", "0"))
    sup = Supervisor(bw, restart_sec=0.1).start()
    pid = bw.pid
    tid = mail.test_id()
    try:
        assert metric(port, "scan_crashes_total") == 0
        for n in range(3):
            r = run_session(bw.milter_spec, crashing(tid), timeout=10)
            answered = time.monotonic()
            assert r.kind == "tempfail" and r.smtp_code == "451" and r.enhanced == "4.7.0", vars(r)
            assert "could not be scanned safely" in r.text
            ham = run_session(bw.milter_spec, mail.ham(mail.test_id()), timeout=10)
            took = time.monotonic() - answered
            assert ham.kind in ("accept", "continue"), vars(ham)
            assert took < 1.0, f"the next message took {took:.2f} s after the crash"
            # The first attempt crashed a worker; the next ones were answered without a scan.
            assert metric(port, "scan_crashes_total") == 1
            assert metric(port, "scan_worker_restarts_total") == 1
        assert crash_counts(os.path.join(workdir, "crashes.log")) == {tid: 1}
        assert bw.pid == pid and procs.alive(pid) and sup.exits == []
    finally:
        rc = sup.stop()
        release_port(port)
    assert not [n for n in os.listdir(os.path.join(bw.spool_dir, "crash")) if n.startswith("crashed-")]
    assert rc == 0


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def engine_processes(bw):
    """(host pid, [worker pids]) of a running daemon: the engine host, and the scan workers of the
    engine processes under it."""
    hosts = [p for p in procs.children(bw.pid) if comm(p) == "bw-host"]
    assert len(hosts) == 1, f"engine hosts: {hosts}"
    return hosts[0], sorted(w for e in engine_children(hosts[0]) for w in procs.children(e) if comm(w) == "bw-scan")


def engine_children(host):
    """The engine processes (one per generation of the signature set) under the engine host."""
    return [p for p in procs.children(host) if comm(p) == "bw-engine"]


def wait_workers(bw, n, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        host, workers = engine_processes(bw)
        if len(workers) == n or time.monotonic() > deadline:
            return host, workers
        time.sleep(0.05)


def test_engine_host_and_workers(workdir, test_sigs, crashlib):
    """`breakwater run` is four kinds of process: the daemon, the single-threaded engine host it
    forked first (bw-host), the engine process the host forked for the signature set in service
    (bw-engine), and one single-threaded scan worker per scan slot forked from that (bw-scan). None of
    the children holds the milter or control socket; all end with the daemon."""
    bw = start_daemon(workdir, test_sigs, crashlib, delay_ms=0, extra=("--workers", "3"))
    bw.start()
    try:
        host, workers = wait_workers(bw, 3)
        assert len(workers) == 3, workers
        engines = engine_children(host)
        assert len(engines) == 1, engines
        assert procs.status_kb(bw.pid, "Threads") > 1
        for p in [host] + engines + workers:
            assert procs.status_kb(p, "Threads") == 1, f"{p} ({comm(p)}) is not single-threaded"
            targets = [os.readlink(f"/proc/{p}/fd/{fd}") for fd in os.listdir(f"/proc/{p}/fd")]
            assert len(targets) < 12, f"{comm(p)} {p} holds {targets}"
            # Its one socket: its own to the daemon (host, engine process, worker); never the milter's
            # or the control socket.
            assert len([t for t in targets if t.startswith("socket:")]) == 1, f"{comm(p)} {p}: {targets}"
        # The workers get the messages as descriptors and scan them side by side: every EICAR found,
        # and no worker trips over another's temporary files (forked with one random state, they
        # would draw the same names: libclamav names them from rand()).
        from harness.milterclient import run_session
        results = []

        def send():
            for _ in range(6):
                results.append(run_session(bw.milter_spec, mail.eicar_attachment(mail.test_id()), timeout=30))

        ts = [threading.Thread(target=send) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        assert len(results) == 24 and all(r.kind == "reject" and r.smtp_code == "550" for r in results), \
            [vars(r) for r in results if r.kind != "reject"][:3]
        assert "did not fit in memory" not in bw.log() and "temporary file" not in bw.log().split("listening on")[1], \
            bw.log_tail()
    finally:
        rc = bw.stop()
    assert rc == 0
    for p in [host] + engines + workers:
        assert procs.wait_gone(p, 5), f"{comm(p)} {p} outlived the daemon"


def test_kill9_of_a_worker_mid_scan(workdir, test_sigs, crashlib):
    """kill -9 of the scan workers while one scans: that message is answered 451 4.3.2 (SIGKILL is
    likely the OOM killer, not a crash of the scan: no conviction), the workers are replaced at
    once, and the next messages scan as they should."""
    from harness.milterclient import run_session, start_session
    bw = start_daemon(workdir, test_sigs, crashlib, delay_ms=1500)
    bw.start()
    try:
        host, workers = wait_workers(bw, 2)
        thread, out = start_session(bw.milter_spec, mail.eicar_attachment(mail.test_id()), timeout=30)
        deadline = time.monotonic() + 10
        while "eom" not in out and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # the scan is under way (1.5 s each)
        for p in workers:
            procs.kill(p)
        thread.join(30)
        r = out.get("reply")
        assert r is not None and r.kind == "tempfail" and r.smtp_code == "451" and r.enhanced == "4.3.2", out
        # The other worker died idle: the next message finds it dead, and goes to its replacement.
        ok = run_session(bw.milter_spec, mail.ham(mail.test_id()), timeout=30)
        assert ok.kind in ("accept", "continue"), vars(ok)
        bad = run_session(bw.milter_spec, mail.eicar_attachment(mail.test_id()), timeout=30)
        assert bad.kind == "reject" and bad.smtp_code == "550", vars(bad)
        _, fresh = wait_workers(bw, 2)
        assert len(fresh) == 2 and not set(fresh) & set(workers), (workers, fresh)
        log = bw.log()
        assert "not a crash of the scan" in log and "signal 9" in log, bw.log_tail()
        assert "convicted" not in log
    finally:
        rc = bw.stop()
    assert rc == 0


def test_a_long_scan_keeps_the_mta_waiting(workdir, test_sigs, crashlib):
    """The session's own thread hands its message to a scan worker and waits for the answer: during
    a long scan (2.6 s here, with no other message in line) it sends the MTA a progress packet about
    every second, as it does while a message waits in line, so the MTA's timeout does not run out."""
    from harness.milterclient import run_session
    bw = start_daemon(workdir, test_sigs, crashlib, delay_ms=2600)
    bw.start()
    try:
        wait_workers(bw, 2)
        t0 = time.monotonic()
        reply = run_session(bw.milter_spec, mail.ham(mail.test_id()), timeout=30)
        took = time.monotonic() - t0
        assert reply.kind in ("accept", "continue"), vars(reply)
        assert took >= 2.5, f"the scan took {took:.1f} s: the device's delay did not apply"
        assert reply.progress >= 2, f"{reply.progress} progress packet(s) in a {took:.1f} s scan"
    finally:
        rc = bw.stop()
    assert rc == 0


@pytest.mark.parametrize("mode", ["concurrent", "blocking"])
def test_reload_replaces_workers(workdir, test_sigs, crashlib, bw_binary, mode):
    """A reload builds the new engine in a new engine process and forks new workers from it; the old
    engine process and its workers end (after their scans), and the next messages scan with the new
    generation."""
    import subprocess
    from harness.milterclient import run_session
    bw = start_daemon(workdir, test_sigs, crashlib, delay_ms=0, extra=("--reload-mode", mode))
    bw.start()
    try:
        host, old = wait_workers(bw, 2)
        old_engine = engine_children(host)
        r = subprocess.run([bw_binary, "reload", "--control", bw.control_path()], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stdout + r.stderr
        for p in old:
            assert procs.wait_gone(p, 10), f"old worker {p} still runs"
        host2, new = wait_workers(bw, 2)
        assert host2 == host and len(new) == 2 and not set(new) & set(old), (old, new)
        assert len(old_engine) == 1 and procs.wait_gone(old_engine[0], 10), "the old engine process still runs"
        # Ended (a zombie for wait_gone) is not yet reaped: the host waits for it within milliseconds.
        deadline = time.monotonic() + 5
        while len(engine_children(host)) != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine_children(host) == [p for p in engine_children(host) if p not in old_engine], \
            "the host did not reap the old engine process"
        assert len(engine_children(host)) == 1
        assert f"reloading signatures ({mode})" in bw.log()
        bad = run_session(bw.milter_spec, mail.eicar_attachment(mail.test_id()), timeout=30)
        assert bad.kind == "reject" and bad.smtp_code == "550", vars(bad)
    finally:
        rc = bw.stop()
    assert rc == 0


@pytest.mark.parametrize("victim", ["host", "engine"])
def test_engine_host_death_stops_the_daemon(workdir, test_sigs, crashlib, victim):
    """kill -9 of the engine host, or of the engine process of the set in service: the daemon logs
    it and exits non-zero, so that systemd (Restart=on-failure) starts the whole service again; the
    workers end with it. The engine process's death is found by the next scan, whose message is
    answered 451 (the MTA retries it)."""
    from harness.milterclient import run_session
    bw = start_daemon(workdir, test_sigs, crashlib, delay_ms=0)
    bw.start()
    host, workers = wait_workers(bw, 2)
    procs.kill(host if victim == "host" else engine_children(host)[0])
    if victim == "engine":
        for p in workers:
            assert procs.wait_gone(p, 5)
        r = run_session(bw.milter_spec, mail.ham(mail.test_id()), timeout=30)
        assert r.kind == "tempfail" and r.smtp_code == "451", vars(r)
    try:
        bw.proc.wait(20)
    except Exception:
        pass
    rc = bw.stop()
    assert rc not in (0, None), bw.log_tail()
    assert ("the engine host process" if victim == "host" else "the engine process") in bw.log(), bw.log_tail()
    for p in workers:
        assert procs.wait_gone(p, 5)
