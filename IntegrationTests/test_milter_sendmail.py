"""Breakwater behind a real Sendmail (8.17, Debian 12's), the second MTA the README names.

Sendmail runs in a small Debian root of its own (harness/sendmail.py: debootstrap once, cached in
/var/cache/breakwater-test/, an overlay on a tmpfs per instance, its own mount namespace), listens on a loopback
port, relays to the test's sink, and reaches the real `breakwater run` on the host through the .mc
line the README gives: INPUT_MAIL_FILTER(`breakwater', `S=inet:PORT@127.0.0.1, F=T,
T=S:30s;R:60s;E:5m') (or S=local:PATH for a unix socket bind-mounted into the root). Tests talk
SMTP to Sendmail.

The behaviours of test_milter_postfix.py, through Sendmail:
- ham arrives once with X-Virus-Scanned; EICAR and the wave spam get 550 5.7.1 naming the signature
  and never arrive; Breakwater's line names Sendmail's queue id and the client address;
- quarantine puts the message in Sendmail's quarantine queue (`mailq -qQ`), not on to the sink;
- an SMTP-authenticated sender is skipped (Sendmail's {auth_authen});
- busy: 451 4.3.2 at MAIL FROM, and a message submitted with the sendmail command waits in
  Sendmail's client queue until a queue run delivers it, scanned;
- Breakwater down: Sendmail answers 451 4.3.2 (F=T) and delivers nothing;
- a message waiting for a scan slot longer than Sendmail's R= timeout is kept alive by progress.

Where Sendmail differs from Postfix:
- it sends the queue id {i} with MAIL FROM (Postfix: only after the first RCPT), so Breakwater's
  lines written at MAIL FROM (skipped, busy) name it too (test_auth..., test_skip..., test_busy...);
- it does not show the milter the Received: header it adds (Postfix does), so Breakwater's size= is
  the message as the client sent it (test_ham...);
- it negotiates the same steps as Postfix over a unix socket, where Breakwater asks for no replies to
  connect, RCPT and headers (test_unix_socket...).
"""
import os
import pwd
import re
import time

import pytest

from conftest import REQUIRE, require, slow_scans
from harness import mail, sendmail
from harness.milterclient import start_session
from harness.ports import free_port, release_port
from harness.delivery import assert_delivered, assert_never_delivered, sender_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def sendmail_root(request):
    require(os.geteuid() == 0, "Sendmail in a Debian root needs root (mount, chroot)")
    missing = sendmail.tools_available()
    require(not missing, f"{', '.join(missing)} not found (scripts/setup.sh --test installs debootstrap)")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def report(text):
        if reporter:
            reporter.write_line(text)

    try:
        root, seconds = sendmail.ensure_root(report=report)
    except Exception as e:  # no archive reachable: say so, fail under REQUIRE
        if REQUIRE:
            raise
        pytest.skip(f"could not build the Sendmail root: {e}")
    if seconds is not None:
        report(f"Sendmail test root built in {seconds:.0f} s ({root})")
    return root


class SendmailStarter:
    def __init__(self, workdir, root, sink_port):
        self.workdir, self.root, self.sink_port, self.instances = workdir, root, sink_port, []

    def __call__(self, milter=None, binds=(), flags="T", timeouts="S:30s;R:60s;E:5m"):
        sm = sendmail.SendmailInstance(self.workdir, self.root, self.sink_port, milter=milter, milter_flags=flags,
                                       milter_timeouts=timeouts, binds=binds, name=f"sendmail{len(self.instances)}")
        self.instances.append(sm)
        return sm.start()

    def stop_all(self, show_logs=False):
        problems = []
        for sm in self.instances:
            if show_logs:
                print(f"\n--- {sm.base} ---\n{sm.diagnostics(60)}")
            killed = sm.stop()
            if killed:
                problems.append(f"Sendmail in {sm.base} left processes that had to be killed: {killed}")
        return problems


def _starter(workdir, root, sink_port, request):
    starter = SendmailStarter(workdir, root, sink_port)
    try:
        yield starter
    finally:
        rep = getattr(request.node, "rep_call", None)
        problems = starter.stop_all(show_logs=rep is not None and rep.failed)
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def sendmail_mta(sendmail_root, workdir, sink, request):
    """sendmail_mta(milter="inet:PORT@127.0.0.1" | "local:PATH", binds=...) -> a started SendmailInstance."""
    yield from _starter(workdir, sendmail_root, sink.port, request)


@pytest.fixture(scope="module")
def module_sendmail(sendmail_root, session_dir, sink, request):
    d = os.path.join(session_dir, request.module.__name__ + "-sendmail")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    yield from _starter(d, sendmail_root, sink.port, request)


@pytest.fixture(scope="module")
def main_pair(module_breakwater, module_sendmail, test_sigs):
    """Breakwater (test signatures, SMTP-authenticated senders and @trusted.example skipped) behind its
    own Sendmail."""
    bw = module_breakwater("--signatures", test_sigs, "--workers", "2", "--skip-authenticated", "yes",
                           "--skip-senders", "@trusted.example", name="bw-sendmail")
    sm = module_sendmail(milter=bw.milter_spec)
    return bw, sm


@pytest.fixture(scope="module")
def quarantine_pair(module_breakwater, module_sendmail, test_sigs):
    bw = module_breakwater("--signatures", test_sigs, "--action", "Test.EICAR* quarantine", "--action", "* reject",
                           name="bw-sendmail-quarantine")
    sm = module_sendmail(milter=bw.milter_spec)
    return bw, sm





def sendmail_queue_id(sm, what, timeout=15):
    """The queue id on Sendmail's first syslog line matching `what` (a regular expression)."""
    line = sm.wait_log(r"\]: [0-9A-Za-z]{14}: .*" + what, timeout=timeout)
    assert line, f"no Sendmail log line matching {what!r}:\n{sm.diagnostics()}"
    return re.search(r"\]: ([0-9A-Za-z]{14}): ", line).group(1)


def test_sendmail_alone_delivers_to_sink(sendmail_mta, sink):
    """The harness itself: Sendmail without a milter relays to the sink, its Received header naming
    the queue id it answered with."""
    sm = sendmail_mta()
    tid = mail.test_id()
    r = sm.send(mail.ham(tid), sender=sender_for(tid))
    assert r.code == 250 and r.queue_id, r
    msg = assert_delivered(sink, tid)
    assert f"id {r.queue_id}" in msg.header("Received") and "Debian" in msg.header("Received"), msg.header("Received")
    assert msg.header("X-Virus-Scanned") is None


def test_ham_delivered_with_scanned_header(main_pair, sink):
    """Ham: 250, arrives once with X-Virus-Scanned; Breakwater's line names Sendmail's queue id and the
    client address. Its size is the message as sent: Sendmail does not pass the milter the Received
    header it adds (Postfix does), and adds it in front of the headers Breakwater added."""
    bw, sm = main_pair
    tid = mail.test_id()
    data = mail.ham(tid)
    r = sm.send(data, sender=sender_for(tid))
    assert r.code == 250 and r.queue_id, r
    msg = assert_delivered(sink, tid)
    scanned = msg.headers("X-Virus-Scanned")
    assert len(scanned) == 1 and scanned[0].startswith("Breakwater "), msg.data[:1200]
    names = [k.lower() for k in msg.message.keys()]
    assert names[0] == "received" and names.index("x-virus-scanned") > names.index("x-test-id"), names
    line = bw.wait_log(f"queue={r.queue_id} ")
    assert line and " client=127.0.0.1 " in line and "verdict=clean action=accept" in line, bw.log_tail()
    assert f" from=<{sender_for(tid)}> " in line and f" size={len(data)} " in line, line


def test_eicar_rejected_with_signature_name(main_pair, sink):
    bw, sm = main_pair
    tid = mail.test_id()
    r = sm.send(mail.eicar_attachment(tid), sender=sender_for(tid))
    assert (r.stage, r.code) == ("END-OF-DATA", 550), r
    assert r.text.startswith("5.7.1 ") and "Test.EICAR" in r.text, r
    assert_never_delivered(sm, sink, tid)
    qid = sendmail_queue_id(sm, r"Milter: data, reject=550 5\.7\.1 Rejected: Test\.EICAR")
    line = bw.wait_log(f"queue={qid} ")
    assert line and "client=127.0.0.1 " in line and "verdict=infected action=reject" in line, bw.log_tail()


def test_wave_spam_rejected_with_signature_name(main_pair, sink):
    bw, sm = main_pair
    tid = mail.test_id()
    r = sm.send(mail.mini_cooper_spam(tid, 1), sender=sender_for(tid))
    assert (r.stage, r.code) == ("END-OF-DATA", 550), r
    assert r.text.startswith("5.7.1 ") and "Test.Spam.MiniCooperWave" in r.text, r
    assert_never_delivered(sm, sink, tid)


def test_folded_header_lines(main_pair, sink):
    """Sendmail hands a folded header (the MIME boundary on its second line) over as one value with
    the line break inside; the message is rebuilt right and the attachment found."""
    bw, sm = main_pair
    tid = mail.test_id()
    raw = mail.eicar_attachment(tid)
    folded = raw.replace(b"Content-Type: multipart/mixed; boundary=", b"Content-Type: multipart/mixed;\r\n\tboundary=")
    assert folded != raw
    r = sm.send(folded, sender=sender_for(tid))
    assert r.code == 550 and "Test.EICAR" in r.text, r


def test_several_messages_in_one_smtp_session(main_pair, sink):
    """One SMTP session, one milter connection: each message judged on its own, each logged with the
    queue id Sendmail gave it."""
    bw, sm = main_pair
    plan = [("ham", 250), ("eicar", 550), ("ham", 250), ("spam", 550), ("ham", 250)]
    make = {"ham": mail.ham, "eicar": mail.eicar_attachment, "spam": mail.mini_cooper_spam}
    sent = []
    with sm.session() as s:
        for kind, want in plan:
            tid = mail.test_id()
            r = sm.transaction(s, make[kind](tid), sender=sender_for(tid))
            assert r.code == want, (kind, r)
            sent.append((tid, kind, r.queue_id))
    for tid, kind, qid in sent:
        if kind == "ham":
            assert len(assert_delivered(sink, tid).headers("X-Virus-Scanned")) == 1
            line = bw.wait_log(f"queue={qid} ")
            assert line and "verdict=clean" in line, bw.log_tail()
        else:
            assert sink.find("X-Test-Id", tid) == []
    assert len({qid for _, kind, qid in sent if kind == "ham"}) == 3


def test_quarantine_lands_in_sendmail_quarantine_queue(quarantine_pair, sink):
    """Action rule `Test.EICAR* quarantine` (smfi_quarantine): Sendmail answers 250 and keeps the
    message in its quarantine queue with Breakwater's reason (`mailq -qQ`, an hf control file); a
    queue run does not send it on, releasing it does. The wave spam still hits `* reject`."""
    bw, sm = quarantine_pair
    tid = mail.test_id()
    r = sm.send(mail.eicar_attachment(tid), sender=sender_for(tid))
    assert r.code == 250 and r.queue_id, r
    listing = sm.run("mailq", "-qQ").stdout
    entry = re.search(re.escape(r.queue_id) + r".*\n\s+QUARANTINE: (.*)\n", listing)
    assert entry and entry.group(1).startswith("Breakwater: Test.EICAR"), listing
    # A quarantined message's control file is hf..., not qf...: normal queue runs pass it by.
    files = sm.queue_files()
    assert f"hf{r.queue_id}" in files and f"qf{r.queue_id}" not in files, files
    assert re.search(r"^qBreakwater: Test\.EICAR", sm.read(f"/var/spool/mqueue/hf{r.queue_id}"), re.M)
    sm.run("/usr/sbin/sendmail", "-q")
    assert r.queue_id in sm.run("mailq", "-qQ").stdout
    assert_never_delivered(sm, sink, tid)
    line = bw.wait_log(f"queue={r.queue_id} ")
    assert line and "action=quarantine" in line, bw.log_tail()
    # What README.Debian tells the admin: release it (-Q without a reason), then deliver it.
    sm.run("/usr/sbin/sendmail", "-Q", "-qQ", f"-qI{r.queue_id}")
    assert r.queue_id not in sm.run("mailq", "-qQ").stdout
    sm.run("/usr/sbin/sendmail", f"-qI{r.queue_id}")
    assert assert_delivered(sink, tid).header("X-Breakwater-Signature").startswith("Test.EICAR")
    spam = mail.test_id()
    r = sm.send(mail.mini_cooper_spam(spam), sender=sender_for(spam))
    assert r.code == 550 and "Test.Spam.MiniCooperWave" in r.text, r


def test_authenticated_sender_skipped_with_queue_id(main_pair, sink):
    """skip-authenticated: after AUTH PLAIN (Cyrus SASL, sasldb) Sendmail sends {auth_authen} with
    MAIL FROM, and EICAR from that sender is accepted unscanned; without AUTH it is rejected. Sendmail
    also sends the queue id {i} with MAIL FROM, so the skip line names it."""
    bw, sm = main_pair
    tid = mail.test_id()
    r = sm.send(mail.eicar_attachment(tid), sender=sender_for(tid), login=(sendmail.AUTH_USER, sendmail.AUTH_PASSWORD))
    assert r.code == 250 and r.queue_id, r
    assert assert_delivered(sink, tid).header("X-Virus-Scanned") is None
    line = bw.wait_log(f"from=<{sender_for(tid)}> auth={sendmail.AUTH_USER} verdict=skipped")
    assert line and "reason=skip-authenticated" in line, bw.log_tail()
    assert f"queue={r.queue_id} client=127.0.0.1 " in line, line

    tid = mail.test_id()
    r = sm.send(mail.eicar_attachment(tid), sender=sender_for(tid))
    assert r.code == 550 and "Test.EICAR" in r.text, r


def test_skip_lines_name_the_queue_id(main_pair, breakwater, sendmail_mta, sink, test_sigs):
    """The other lines Breakwater writes at MAIL FROM name Sendmail's queue id too: a sender in
    skip-senders, and a client in skip-networks skipped at MAIL FROM (over a unix socket, where
    connect gets no reply)."""
    bw, sm = main_pair
    tid = mail.test_id()
    r = sm.send(mail.eicar_attachment(tid), sender=f"robot-{tid}@trusted.example")
    assert r.code == 250 and r.queue_id, r
    assert assert_delivered(sink, tid).header("X-Virus-Scanned") is None
    line = bw.wait_log(f"from=<robot-{tid}@trusted.example> verdict=skipped reason=skip-senders")
    assert line and f"queue={r.queue_id} client=127.0.0.1 " in line, bw.log_tail()

    bw = breakwater("--signatures", test_sigs, "--skip-networks", "127.0.0.0/8", socket="unix")
    sm = sendmail_mta(milter="local:/run/breakwater/milter.sock",
                      binds=[(os.path.dirname(bw.socket_path), "/run/breakwater")])
    tid = mail.test_id()
    r = sm.send(mail.eicar_attachment(tid), sender=sender_for(tid))
    assert r.code == 250 and r.queue_id, r
    assert_delivered(sink, tid)
    line = bw.wait_log("verdict=skipped reason=skip-networks")
    assert line and line.split("] ", 1)[1].startswith(f"queue={r.queue_id} client=127.0.0.1 "), bw.log_tail()


def test_busy_answered_451_and_retried_from_sendmail_queue(breakwater, sendmail_mta, sink, test_sigs, crashlib):
    """--workers 1 --max-waiting 0 and a slow message holding the only slot: Sendmail answers MAIL FROM
    451 4.3.2 with Breakwater's text, and Breakwater's line names Sendmail's queue id. A message
    submitted with the sendmail command meanwhile waits in Sendmail's client queue (Deferred: 451);
    the queue run Debian's cron makes (`sendmail -Ac -q`) delivers it, scanned, once the slot is free."""
    # Every scan takes 6 s longer (the crash device's delay, conftest.slow_scans): the checks below take
    # well under that, and the slow reply is checked to come after them.
    bw = breakwater("--signatures", test_sigs, "--workers", "1", "--max-waiting", "0",
                    env=slow_scans(crashlib, 6000))
    sm = sendmail_mta(milter=bw.milter_spec)
    t, out = start_session(bw.milter_spec, mail.ham(mail.test_id()), timeout=120)
    while "eom" not in out and t.is_alive():
        time.sleep(0.005)
    time.sleep(0.2)
    tid = mail.test_id()
    r = sm.send(mail.ham(tid), sender=sender_for(tid))
    assert (r.stage, r.code) == ("MAIL", 451) and r.text.startswith("4.3.2 Breakwater is busy"), r
    qid = sendmail_queue_id(sm, r"Milter: from=<" + re.escape(sender_for(tid)) + r">, reject=451 4\.3\.2")
    line = bw.wait_log(f"queue={qid} client=127.0.0.1 from=<{sender_for(tid)}> verdict=busy")
    assert line and "stage=mail-from" in line, bw.log_tail()

    queued = mail.test_id()
    sub = sm.submit(mail.ham(queued), sender=sender_for(queued))
    assert sub.returncode == 0, sub
    client_queue = sm.run("mailq", "-Ac").stdout
    assert "Deferred: 451 4.3.2 Breakwater is busy" in client_queue, client_queue
    submitted_at = time.monotonic()
    t.join(120)
    assert "error" not in out and out["reply"].kind in ("continue", "accept"), out
    assert out["answered"] > submitted_at, "the slow scan ended before the submission: make the message slower"
    assert sink.find("X-Test-Id", queued) == []

    sm.run("/usr/sbin/sendmail", "-Ac", "-q")
    assert assert_delivered(sink, queued).header("X-Virus-Scanned")
    assert "Total requests: 0" in sm.run("mailq", "-Ac").stdout


def test_progress_keeps_sendmail_waiting_past_its_reply_timeout(breakwater, sendmail_mta, sink, test_sigs, crashlib):
    """Sendmail's R= timeout (here 2 s) bounds each wait for a reply from the milter. A message that
    waits for a scan slot longer than that (--max-wait 4 s, behind a slow scan) keeps Sendmail waiting
    with progress packets: Sendmail does not time out (its F=T answer would be a bare 451 "Please try
    again later"); the answer is Breakwater's own, scanned or "waited too long"."""
    # Every scan takes 8 s longer (the crash device's delay): the message behind the slot holder waits
    # its whole max-wait, 4 s, twice Sendmail's R=2s.
    bw = breakwater("--signatures", test_sigs, "--workers", "1", "--max-waiting", "4", "--max-wait", "4000ms",
                    env=slow_scans(crashlib, 8000))
    sm = sendmail_mta(milter=bw.milter_spec, timeouts="S:10s;R:2s;E:5m")
    t, out = start_session(bw.milter_spec, mail.ham(mail.test_id()), timeout=120)
    while "eom" not in out and t.is_alive():
        time.sleep(0.005)
    time.sleep(0.2)
    tid = mail.test_id()
    t0 = time.monotonic()
    r = sm.send(mail.ham(tid), sender=sender_for(tid))
    waited = time.monotonic() - t0
    t.join(120)
    assert "error" not in out, out
    assert waited > 2.5, f"answered after {waited:.1f} s, within R=2s: make the slow message slower ({r})"
    # R: "Milter (breakwater): timeout before data read ..."; E: "milter_data(breakwater): EOM ACK/NAK timeout"
    assert not sm.wait_log(r"\(breakwater\).*timeout", timeout=0.5), sm.diagnostics()
    if r.code == 250:
        assert assert_delivered(sink, tid).header("X-Virus-Scanned")
    else:
        assert r.code == 451 and "waited too long" in r.text, r
    line = bw.wait_log(f"from=<{sender_for(tid)}> ")
    assert line and f"queue={r.queue_id or ''}" in line, bw.log_tail()


def test_progress_keeps_sendmail_waiting_through_a_long_scan(breakwater, sendmail_mta, sink, test_sigs, crashlib):
    """A scan that itself takes longer than Sendmail's R= (3 s against 2 s): the session sends progress
    while the scan runs, so Sendmail waits for the verdict and the message is delivered, scanned."""
    bw = breakwater("--signatures", test_sigs, "--workers", "1", env=slow_scans(crashlib, 3000))
    sm = sendmail_mta(milter=bw.milter_spec, timeouts="S:10s;R:2s;E:5m")
    tid = mail.test_id()
    t0 = time.monotonic()
    r = sm.send(mail.ham(tid), sender=sender_for(tid))
    waited = time.monotonic() - t0
    assert r.code == 250, (r, sm.diagnostics())
    assert waited > 2.5, f"answered after {waited:.1f} s: the scan was not slower than R=2s"
    assert not sm.wait_log(r"\(breakwater\).*timeout", timeout=0.5), sm.diagnostics()
    assert assert_delivered(sink, tid).header("X-Virus-Scanned")


def test_breakwater_down_sendmail_tempfails(breakwater, sendmail_mta, sink, test_sigs):
    """F=T: while Breakwater runs, mail is scanned; once it is stopped Sendmail answers 451 4.3.2 and
    delivers nothing; and so from the start when nothing listens on the milter's port. Without F=T
    (the flag the README insists on) the same Sendmail passes mail unscanned."""
    bw = breakwater("--signatures", test_sigs)
    sm = sendmail_mta(milter=bw.milter_spec)
    tid = mail.test_id()
    assert sm.send(mail.ham(tid), sender=sender_for(tid)).code == 250
    assert assert_delivered(sink, tid).header("X-Virus-Scanned")
    assert bw.stop() == 0
    tid = mail.test_id()
    r = sm.send(mail.eicar_attachment(tid), sender=sender_for(tid))
    assert (r.stage, r.code) == ("MAIL", 451) and r.text.startswith("4.3.2 "), r
    assert sm.wait_log(r"Milter \(breakwater\): error connecting to filter"), sm.diagnostics()

    port = free_port()  # reserved, nothing listens
    try:
        sm2 = sendmail_mta(milter=f"inet:{port}@127.0.0.1")
        down = mail.test_id()
        r = sm2.send(mail.ham(down), sender=sender_for(down))
        assert (r.stage, r.code) == ("MAIL", 451), r
        sm3 = sendmail_mta(milter=f"inet:{port}@127.0.0.1", flags="")
        unscanned = mail.test_id()
        assert sm3.send(mail.ham(unscanned), sender=sender_for(unscanned)).code == 250
        assert assert_delivered(sink, unscanned).header("X-Virus-Scanned") is None
    finally:
        release_port(port)
    assert sink.find("X-Test-Id", tid) == [] and sink.find("X-Test-Id", down) == []


def test_unix_socket_in_sendmail_reach(breakwater, sendmail_mta, sink, test_sigs):
    """Breakwater on a unix socket whose directory Sendmail can reach (here bind-mounted to
    /run/breakwater in the root): S=local:/run/breakwater/milter.sock. Over a unix socket Breakwater
    negotiates no replies to connect, RCPT and headers; Sendmail honours that: EICAR 550, ham scanned."""
    bw = breakwater("--signatures", test_sigs, socket="unix")
    # As Debian's /run/breakwater (RuntimeDirectory=): a directory and socket of the service's user,
    # mode 0755 and srwxrwx---; Sendmail connects as root.
    nobody = pwd.getpwnam("nobody")
    sock_dir = os.path.dirname(bw.socket_path)
    os.chown(sock_dir, nobody.pw_uid, nobody.pw_gid)
    os.chmod(sock_dir, 0o755)
    os.chown(bw.socket_path, nobody.pw_uid, nobody.pw_gid)
    assert os.stat(bw.socket_path).st_mode & 0o777 == 0o770
    sm = sendmail_mta(milter="local:/run/breakwater/milter.sock",
                      binds=[(os.path.dirname(bw.socket_path), "/run/breakwater")])
    bad, good = mail.test_id(), mail.test_id()
    with sm.session() as s:
        r = sm.transaction(s, mail.eicar_attachment(bad), sender=sender_for(bad),
                           rcpts=("a@dest.example", "b@dest.example"))
        assert r.code == 550 and "Test.EICAR" in r.text, r
        r = sm.transaction(s, mail.ham(good), sender=sender_for(good))
        assert r.code == 250, r
    assert assert_delivered(sink, good).header("X-Virus-Scanned")
    line = bw.wait_log(f"queue={r.queue_id} ")
    assert line and "client=127.0.0.1 " in line, bw.log_tail()
    assert sink.find("X-Test-Id", bad) == []


def test_documented_mc_line_is_the_tested_one():
    """README.md and debian/README.Debian give the .mc line these tests build sendmail.cf from."""
    line = sendmail.milter_line("inet:8897@127.0.0.1")
    for doc in ("README.md", "debian/README.Debian"):
        with open(os.path.join(REPO, doc)) as f:
            text = f.read()
        assert line in text, f"{doc} does not give the tested .mc line {line}"
    with open(os.path.join(REPO, "debian/README.Debian")) as f:
        assert sendmail.milter_line("local:/run/breakwater/milter.sock") in f.read()
