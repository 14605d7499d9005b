"""Bounds that hold under hostile load (issue 19, items 3 and 7), with the real binary, libmilter and
a private Postfix:

- spool-budget: while other messages hold the spool, a message that needs it gets 451 4.3.2 through
  Postfix, its log line names the queue id and cause=spool_budget, and nothing is lost (the message
  held goes through scanned, the refused one goes through once sent again);
- max-sessions: past it a new milter session is answered 451 4.3.2 at connect (over TCP and over a
  unix socket, where connect otherwise has no reply), logged at most once a second, and sessions
  are taken again once others close;
- max-recipients: each RCPT past it gets 452 4.5.3 through Postfix, the message goes to the others;
- a daemon at its task limit (in a pids cgroup at its limit) still scans: a scan needs no new
  thread (the session's own thread talks to a scan worker), and the daemon lives on.
"""
import os
import re
import smtplib
import time
import uuid

import pytest

from harness import mail
from harness.milterclient import MilterConnection, run_session


def sender_for(tid):
    return f"s-{tid}@example.org"


def open_session(spec):
    m = MilterConnection.open(spec, timeout=30)
    m.negotiate()
    return m


def start_message(m, raw, qid):
    """Connect, HELO, MAIL, RCPT, DATA, the headers and the whole body of `raw`, but no end of
    message: the session then holds the message (in memory or spooled)."""
    r = m.connect(macros={"j": "mx.breakwater.test"})
    assert r is None or r.kind == "continue", r
    m.helo()
    r = m.mail("<holder@example.org>")
    assert r is None or r.kind == "continue", r
    m.rcpt("<user@dest.example>", macros={"i": qid})
    m.data()
    r = m.send_content(raw)
    assert r is None, r


def test_spool_budget_451(breakwater, postfix, sink, test_sigs):
    bw = breakwater("--signatures", test_sigs, "--max-message-size", "300K", "--spool-threshold", "16K",
                    "--spool-budget", "300K")
    pf = postfix(milters=bw.postfix_milter)
    # A session holds 250 KB in the spool (its body is in, its end of message not yet).
    held_raw = mail.large_ham(mail.test_id(), 250_000)
    holder = open_session(bw.milter_spec)
    start_message(holder, held_raw, "HOLDQID1")

    # Another 100 KB message would pass the 300K budget: 451 4.3.2 through Postfix.
    tid = mail.test_id()
    data = mail.large_ham(tid, 100_000)
    r = pf.send(data, sender=sender_for(tid))
    assert (r.stage, r.code) == ("END-OF-DATA", 451) and r.text.startswith("4.3.2 "), r
    assert "spool budget" in r.text, r
    line = bw.wait_log("cause=spool_budget")
    assert line and re.search(r"queue=[0-9A-F]{6,} ", line) and "action=tempfail" in line, bw.log_tail()
    # A small message (held in memory) still goes through meanwhile.
    small = mail.test_id()
    assert pf.send(mail.ham(small), sender=sender_for(small)).code == 250
    assert len(sink.wait_for("X-Test-Id", small)) == 1

    # The held message is scanned in full and accepted; the spool is free again.
    r = holder.eom(macros={"i": "HOLDQID1"})
    assert r.kind == "continue" and any(n == "X-Virus-Scanned" for n, _ in r.added_headers), r
    holder.quit()
    held_line = bw.wait_log("queue=HOLDQID1 ")
    assert held_line and "verdict=clean" in held_line and "spooled=size" in held_line, held_line

    # Nothing lost: the refused message, sent again as the client would, arrives once.
    r = pf.send(data, sender=sender_for(tid))
    assert r.code == 250, r
    assert len(sink.wait_for("X-Test-Id", tid)) == 1
    assert sink.find("X-Test-Id", tid)[0].header("X-Virus-Scanned")


@pytest.mark.parametrize("socket", ["inet", "unix"])
def test_session_cap_451_at_connect(breakwater, test_sigs, socket):
    bw = breakwater("--signatures", test_sigs, "--max-sessions", "3", socket=socket)
    spec = bw.milter_spec
    held = []
    for _ in range(3):
        m = open_session(spec)
        r = m.connect()
        assert r is None or r.kind == "continue", r
        held.append(m)
    start = time.monotonic()
    refused = 0
    for _ in range(25):
        m = open_session(spec)
        r = m.connect()
        assert r is not None and r.kind == "tempfail" and (r.smtp_code, r.enhanced) == ("451", "4.3.2"), r
        assert "too many sessions" in r.text, r
        refused += 1
        m.quit()
    elapsed = time.monotonic() - start
    # The sessions held still carry mail.
    r = held[0].send_message(mail.eicar_attachment(mail.test_id()), rcpt_macros={"i": "CAPQID1"})
    assert r.kind == "reject" and r.smtp_code == "550", r
    assert bw.wait_log("sessions: more than max-sessions (3) open")
    time.sleep(1.2)
    lines = [l for l in bw.log().splitlines() if "more than max-sessions" in l]
    assert 1 <= len(lines) <= int(elapsed) + 2, f"{refused} refused in {elapsed:.1f}s gave {len(lines)} lines:\n" + "\n".join(lines)
    assert sum(int(re.search(r": (\d+) new session", l).group(1)) for l in lines) <= refused
    # Once held sessions close, new ones are taken again.
    for m in held:
        m.quit()
    deadline = time.monotonic() + 10
    while True:
        m = open_session(spec)
        r = m.connect()
        if r is None or r.kind == "continue":
            r = m.send_message(mail.ham(mail.test_id()), rcpt_macros={"i": "CAPQID2"})
            assert r.kind == "continue", r
            m.quit()
            break
        m.quit()
        assert time.monotonic() < deadline, "sessions were not taken again after the held ones closed"
        time.sleep(0.2)


@pytest.mark.parametrize("socket", ["inet", "unix"])
def test_recipient_cap_452(breakwater, postfix, sink, test_sigs, socket):
    bw = breakwater("--signatures", test_sigs, "--max-recipients", "3", socket=socket)
    pf = postfix(milters=bw.postfix_milter)
    tid = mail.test_id()
    rcpts = [f"r{i}@dest.example" for i in range(5)]
    with pf.session() as s:
        assert s.mail(sender_for(tid))[0] == 250
        answers = [s.rcpt(r) for r in rcpts]
        code, text = s.data(mail.ham(tid))
    assert [a[0] for a in answers] == [250, 250, 250, 452, 452], answers
    assert all(a[1].startswith(b"4.5.3 ") for a in answers[3:]), answers
    assert code == 250, (code, text)
    got = sink.wait_for("X-Test-Id", tid)
    assert len(got) == 1 and sorted(r.strip("<>") for r in got[0].rcpts) == rcpts[:3], got[0].rcpts
    line = bw.wait_log("more than max-recipients")
    assert line and re.search(r"queue=[0-9A-F]{6,} ", line), bw.log_tail()
    assert bw.wait_log("rcpts=3 ") and "rcpts_refused=2" in bw.wait_log("rcpts_refused="), bw.log_tail()


def pids_cgroup_root():
    if os.path.exists("/sys/fs/cgroup/pids/cgroup.procs"):
        return "/sys/fs/cgroup/pids"  # cgroup v1
    controllers = "/sys/fs/cgroup/cgroup.controllers"
    if os.path.exists(controllers) and "pids" in open(controllers).read().split():
        return "/sys/fs/cgroup"  # cgroup v2
    return None


def test_scans_need_no_new_thread_at_the_task_limit(breakwater, test_sigs):
    """The daemon is moved into a pids cgroup whose limit is its thread count before its first scan:
    no thread can start (EAGAIN). The message is still scanned and answered (550 for EICAR): the
    session's own thread hands it to a scan worker, with no scanner thread to start (before the
    scan workers took the scans, it got 451 4.3.2, cause=threads). The daemon lives on."""
    root = pids_cgroup_root()
    if root is None or os.geteuid() != 0:
        pytest.skip("needs root and a pids cgroup controller")
    bw = breakwater("--signatures", test_sigs, "--workers", "2")
    group = os.path.join(root, f"bw-test-{uuid.uuid4().hex[:8]}")
    os.mkdir(group)
    try:
        with open(os.path.join(group, "cgroup.procs"), "w") as f:
            f.write(str(bw.pid))
        with open(os.path.join(group, "pids.current")) as f:
            current = int(f.read())
        with open(os.path.join(group, "pids.max"), "w") as f:
            f.write(str(current))
        r = run_session(bw.milter_spec, mail.eicar_attachment(mail.test_id()), rcpt_macros={"i": "THRQID1"})
        assert r.kind == "reject" and r.smtp_code == "550", r
        line = bw.wait_log("queue=THRQID1 client=")
        assert line and "verdict=infected" in line, bw.log_tail()
        assert "cannot start scanner thread" not in bw.log(), bw.log_tail()
        assert bw.proc.poll() is None, "the daemon ended"
        with open(os.path.join(group, "pids.current")) as f:
            assert int(f.read()) <= current
        with open(os.path.join(group, "pids.max"), "w") as f:
            f.write("max")
        r = run_session(bw.milter_spec, mail.ham(mail.test_id()), rcpt_macros={"i": "THRQID2"})
        assert r.kind in ("accept", "continue"), r
    finally:
        if bw.proc.poll() is None:
            with open(os.path.join(root, "cgroup.procs"), "w") as f:
                f.write(str(bw.pid))
        for _ in range(50):
            try:
                os.rmdir(group)
                break
            except OSError:
                time.sleep(0.1)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def unit_entries(path, key):
    out = []
    with open(path) as f:
        for line in f:
            k, sep, v = line.strip().partition("=")
            if sep and k == key:
                out.append(v.strip())
    return out


def test_package_spools_on_disk():
    """The shipped unit points TMPDIR (spool-directory's default, "$TMPDIR or /tmp") at its state
    directory's spool/, which systemd creates writable under ProtectSystem=strict, and the conffile
    leaves spool-directory at that default. (IntegrationTests/test_deb.py checks the running service.)"""
    unit = os.path.join(REPO, "debian", "breakwater.service")
    env = dict(item.split("=", 1) for v in unit_entries(unit, "Environment") for item in v.split())
    spool = env.get("TMPDIR")
    assert spool == "/var/lib/breakwater/spool", env
    assert "breakwater/spool" in " ".join(unit_entries(unit, "StateDirectory")).split()
    with open(os.path.join(REPO, "debian", "breakwater.conf")) as f:
        assert not [l for l in f if l.startswith("spool-directory")], "the conffile overrides spool-directory"


def test_recipient_cap_off(breakwater, postfix, sink, test_sigs):
    """max-recipients = 0: no cap of Breakwater's own, and over a unix socket RCPT is negotiated
    without a reply (SMFIP_NR_RCPT); every recipient is taken and the message is scanned."""
    bw = breakwater("--signatures", test_sigs, "--max-recipients", "0", socket="unix")
    pf = postfix(milters=bw.postfix_milter)
    tid = mail.test_id()
    rcpts = [f"r{i}@dest.example" for i in range(5)]
    r = pf.send(mail.eicar_attachment(tid), sender=sender_for(tid), rcpts=rcpts)
    assert r.code == 550, r
    tid = mail.test_id()
    r = pf.send(mail.ham(tid), sender=sender_for(tid), rcpts=rcpts)
    assert r.code == 250, r
    got = sink.wait_for("X-Test-Id", tid)
    assert len(got) == 1 and sorted(x.strip("<>") for x in got[0].rcpts) == rcpts, got[0].rcpts
    assert bw.wait_log("rcpts=5 "), bw.log_tail()
