"""Hot reload with the real daemon, libmilter and libclamav: no lost mail.

- Under a steady stream of messages (several milter sessions at once, 20 s and more),
  `breakwater signatures add` of a new wave pattern makes the wave's next messages get
  550 as soon as the command has returned (it waits for the new engine), while no
  message of the stream gets a 4xx or an error because of the reload.
- A broken signature file dropped into the ops directory is reported by `status` and
  the log (file and line); scanning goes on with the previous generation; fixing the
  file loads the next generation.

BREAKWATER_BIN may name a thread-sanitizer build (swift build --sanitize=thread): the
tests then also fail on any ThreadSanitizer report in the daemon's log.
"""
import json
import os
import subprocess
import threading
import time

from harness import mail
from harness.milterclient import run_session

WAVE_SIG = "Breakwater.Local.Spam.ZephyrCruiser"


def accepted(reply):
    """The milter accepts at end of message with `continue` (plus its header) or `accept`."""
    return not isinstance(reply, str) and reply.kind in ("accept", "continue")


def rejected(reply):
    return not isinstance(reply, str) and reply.kind == "reject" and reply.smtp_code == "550"


def cli(binary, *args, timeout=120):
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def control_path(bw):
    return os.path.join(bw.run_dir, "control.sock")


def status_json(binary, bw):
    r = cli(binary, "status", "--json", "--control", control_path(bw))
    assert r.returncode in (0, 1), f"status exited {r.returncode}: {r.stderr}"
    return r.returncode, json.loads(r.stdout)


# The engine, its reload and the control/watch services: a sanitizer report that names any of these
# fails the test. (With Swift 6.3 on Linux, ThreadSanitizer does not see Synchronization.Mutex's
# futex as synchronisation: a plain counter under Mutex.withLock in 4 threads is reported as a race.
# Reports elsewhere, and libmilter's own unjoined control thread, are printed, not failed on.)
WATCHED = ("EngineHolder", "ClamEngine", "ScanContext", "ControlServer", "SignatureWatch", "StatusReport",
           "cl_engine", "cl_scan", "cli_", "heap-use-after-free")


def no_sanitizer_reports(bw):
    reports = bw.log().split("==================")
    found = [r for r in reports if "Sanitizer" in r]
    mine = [r for r in found if any(w in r for w in WATCHED)]
    if found:
        print(f"\n{len(found)} sanitizer report(s) in {bw.log_path}, {len(mine)} about the engine or its reload")
    assert not mine, mine[0][:6000]
    assert "Fatal error" not in bw.log() and "use-after-free" not in bw.log(), bw.log_tail(80)


def wave_message(tid, variant):
    """A new wave the loaded signatures do not know: an e-bike 'delivery', the product name
    in varying case and wrapped across lines, in quoted-printable."""
    name = ["Zephyr Cruiser e-bike", "ZEPHYR CRUISER E-BIKE", "zephyr\r\n cruiser e-bike"][variant % 3]
    body = (f"Hello customer {variant},\r\n\r\nYour free {name} is waiting at our depot.\r\n"
            f"Confirm the delivery of order #{1000 + variant} within 24 hours.\r\n")
    return (f"From: Depot <depot{variant}@parcel.example>\r\nTo: Bob <user@dest.example>\r\n"
            f"Subject: Your order #{1000 + variant}\r\nMessage-ID: <{tid}@parcel.example>\r\n"
            f"X-Test-Id: {tid}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{body}").encode()


def known_good(directory):
    """Known-good mail for --check: ordinary ham, and a message that names the product
    without the wave's wording."""
    os.makedirs(directory, exist_ok=True)
    for i in range(3):
        with open(os.path.join(directory, f"ham{i}.eml"), "wb") as f:
            f.write(mail.ham(mail.test_id()))
    with open(os.path.join(directory, "zephyr-review.eml"), "wb") as f:
        f.write(b"From: a@example.org\r\nTo: b@example.net\r\nSubject: bikes\r\n\r\n"
                b"I test-rode the Zephyr yesterday; the cruiser frame is nice.\r\n")
    return directory


class Stream:
    """`sessions` threads, each sending one message per milter session, back to back,
    alternating ham and the wave. Records every answer with the time its EOM was sent."""

    def __init__(self, spec, sessions=4, pause=0.01):
        self.spec, self.sessions, self.pause = spec, sessions, pause
        self.records = []  # (kind, eom_sent, reply or exception text)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = []

    def _run(self, n):
        i = 0
        while not self.stop.is_set():
            kind = "wave" if (i + n) % 2 else "ham"
            tid = mail.test_id()
            raw = wave_message(tid, i * self.sessions + n) if kind == "wave" else mail.ham(tid)
            sent = []
            try:
                reply = run_session(self.spec, raw, timeout=60, before_eom=lambda: sent.append(time.monotonic()))
                outcome = reply
            except Exception as e:  # recorded: the test fails on it
                outcome = f"{type(e).__name__}: {e}"
            with self.lock:
                self.records.append((kind, sent[0] if sent else time.monotonic(), outcome))
            i += 1
            time.sleep(self.pause)

    def start(self):
        for n in range(self.sessions):
            t = threading.Thread(target=self._run, args=(n,), daemon=True)
            t.start()
            self.threads.append(t)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(90)
        assert not any(t.is_alive() for t in self.threads), "a sender thread hung"
        return list(self.records)


def test_signature_added_under_load_rejects_the_wave_and_loses_nothing(breakwater, bw_binary, test_sigs, workdir):
    ops = os.path.join(workdir, "ops")
    os.makedirs(ops)
    good = known_good(os.path.join(workdir, "known-good"))
    bw = breakwater("--signatures", test_sigs, "--local-signatures", ops, "--workers", "2", "--self-check", "1s")
    stream = Stream(bw.milter_spec, sessions=4)
    t0 = time.monotonic()
    stream.start()
    try:
        time.sleep(8)
        r = cli(bw_binary, "signatures", "add", WAVE_SIG, "--text", "zephyr cruiser e-bike", "--ignore-case",
                "--comment", "e-bike delivery wave", "--check", good,
                "--signatures", test_sigs, "--local-signatures", ops, "--control", control_path(bw))
        returned = time.monotonic()
        assert r.returncode == 0, f"add exited {r.returncode}\n{r.stdout}\n{r.stderr}"
        assert "loaded engine generation" in r.stdout, r.stdout
        # Keep the stream going: at least 20 s in all, and 8 s after the command returned.
        time.sleep(max(8.0, 20.0 - (time.monotonic() - t0)))
    finally:
        records = stream.finish()
    duration = time.monotonic() - t0
    assert duration >= 20

    problems = [(k, round(t - returned, 3), o) for k, t, o in records if not (accepted(o) or rejected(o))]
    assert not problems, f"{len(problems)} messages got neither accept nor reject (4xx, error):\n{problems[:10]}\n{bw.log_tail()}"
    ham = [o for k, _, o in records if k == "ham"]
    assert ham and all(accepted(o) for o in ham), [o for o in ham if not accepted(o)][:5]

    wave = [(t, o) for k, t, o in records if k == "wave"]
    before = [o for t, o in wave if t < returned - 3]  # well before the command (it takes a fraction of a second)
    after = [(t, o) for t, o in wave if t >= returned]
    assert len(before) >= 20 and all(accepted(o) for o in before), \
        f"the wave was not new: {[o for o in before if not accepted(o)][:3]}"
    assert len(after) >= 20, f"only {len(after)} wave messages after the add"
    # The command waits for the new engine: every wave message whose end of data reaches the
    # daemon after it returned is scanned by it (the requirement is within 2 s).
    late = [(round(t - returned, 3), o) for t, o in after if not rejected(o)]
    assert not late, f"wave messages accepted after the add returned: {late[:5]}"
    assert all(WAVE_SIG in o.text for _, o in after), after[0][1]
    first_rejected = min(t for t, o in wave if rejected(o))
    print(f"\n{len(records)} messages in {duration:.1f} s ({len(records) / duration:.0f}/s, 4 sessions); "
          f"{len(wave)} wave, {len(ham)} ham; add took {returned - t0 - 8:.2f} s; first 550 at "
          f"{first_rejected - returned:+.3f} s from the command's return")

    assert bw.wait_log(f"engine generation 2 loaded"), bw.log_tail()
    assert "scan error" not in bw.log()
    rc, st = status_json(bw_binary, bw)
    assert rc == 0 and st["last_reload"]["succeeded"] is True, st
    assert st["counters"]["tempfailed"] == 0, st
    assert st["counters"]["rejected"] == len([1 for _, o in wave if rejected(o)]), st
    assert ops in st["engine"]["directories"], st
    no_sanitizer_reports(bw)


def atomic_write(path, text):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def token_message(token):
    tid = mail.test_id()
    return (f"From: a@example.org\r\nTo: user@dest.example\r\nSubject: t\r\nMessage-ID: <{tid}@example.org>\r\n"
            f"\r\nhere is {token} in the body\r\n").encode()


def test_broken_file_keeps_the_previous_generation_until_fixed(breakwater, bw_binary, test_sigs, workdir):
    ops = os.path.join(workdir, "ops")
    os.makedirs(ops)
    first, second = "bwtokenalpha" + mail.test_id(), "bwtokenbeta" + mail.test_id()
    with open(os.path.join(ops, "good.ndb"), "w") as f:
        f.write(f"Breakwater.Local.First:0:*:{first.encode().hex()}\n")
    bw = breakwater("--signatures", test_sigs, "--local-signatures", ops, "--self-check", "1s")
    ctl = control_path(bw)

    def verdict(raw):
        r = run_session(bw.milter_spec, raw, timeout=30)
        return ("accept" if accepted(r) else r.kind, r.smtp_code, r.text)

    assert verdict(token_message(first))[:2] == ("reject", "550")

    broken = os.path.join(ops, "broken.ndb")
    atomic_write(broken, "# a comment line\nBreakwater.Local.Second:0:*:zz-not-hex\n")
    line = bw.wait_log("reload failed", timeout=15)
    assert line, f"the watch did not report the broken file:\n{bw.log_tail()}"
    assert broken in line and "line 2" in line, line

    rc, st = status_json(bw_binary, bw)
    assert rc == 1, "status exits 1 while the last reload failed"
    assert st["last_reload"]["succeeded"] is False
    assert broken in st["last_reload"]["error"] and "line 2" in st["last_reload"]["error"], st["last_reload"]
    assert st["engine"]["generation"] == 1, st["engine"]
    text = cli(bw_binary, "status", "--control", ctl)
    assert text.returncode == 1 and "FAILED, still serving generation 1" in text.stdout and broken in text.stdout, text.stdout

    # `breakwater reload` says the same and exits 1; the watch does not retry on its own.
    r = cli(bw_binary, "reload", "--control", ctl)
    assert r.returncode == 1 and broken in r.stderr and "still serving generation 1" in r.stderr, (r.returncode, r.stderr)

    # Scanning goes on with generation 1: its signatures still fire, ham passes, nothing is tempfailed.
    assert verdict(token_message(first))[:2] == ("reject", "550")
    assert verdict(mail.eicar_attachment(mail.test_id()))[:2] == ("reject", "550")
    assert verdict(mail.ham(mail.test_id()))[0] == "accept"
    assert verdict(token_message(second))[0] == "accept"

    # The fix loads as generation 2.
    atomic_write(broken, f"Breakwater.Local.Second:0:*:{second.encode().hex()}\n")
    assert bw.wait_log("engine generation 2 loaded", timeout=15), bw.log_tail()
    rc, st = status_json(bw_binary, bw)
    assert rc == 0 and st["last_reload"]["succeeded"] is True and st["last_reload"]["error"] is None, st
    assert st["engine"]["generation"] == 2
    kind, code, text = verdict(token_message(second))
    assert (kind, code) == ("reject", "550") and "Breakwater.Local.Second" in text
    assert verdict(token_message(first))[:2] == ("reject", "550")
    assert st["counters"]["tempfailed"] == 0, st
    no_sanitizer_reports(bw)


def test_sigusr2_and_reload_command_and_a_removed_file(breakwater, bw_binary, test_sigs, workdir):
    """SIGUSR2 (systemd's ExecReload) and `breakwater reload` load a change; with the watch
    off (self-check 0) nothing loads by itself; removing the ops file unloads its signature."""
    ops = os.path.join(workdir, "ops")
    os.makedirs(ops)
    token = "bwtokengamma" + mail.test_id()
    bw = breakwater("--signatures", test_sigs, "--local-signatures", ops, "--self-check", "0")
    ctl = control_path(bw)
    path = os.path.join(ops, "hand.ndb")
    atomic_write(path, f"Breakwater.Local.Gamma:0:*:{token.encode().hex()}\n")
    time.sleep(2)
    assert accepted(run_session(bw.milter_spec, token_message(token), timeout=30)), "loaded without a reload"
    bw.signal(__import__("signal").SIGUSR2)
    assert bw.wait_log("engine generation 2 loaded", timeout=15), bw.log_tail()
    assert run_session(bw.milter_spec, token_message(token), timeout=30).smtp_code == "550"
    os.unlink(path)
    r = cli(bw_binary, "reload", "--control", ctl)
    assert r.returncode == 0 and "loaded engine generation 3" in r.stdout, (r.stdout, r.stderr)
    assert accepted(run_session(bw.milter_spec, token_message(token), timeout=30))
    r = cli(bw_binary, "reload", "--no-wait", "--control", ctl)
    assert r.returncode == 0 and "reload started" in r.stdout, r.stdout
    assert bw.wait_log("engine generation 4 loaded", timeout=15), bw.log_tail()
    assert bw.wait_log("control: RELOAD from uid", timeout=1)
    no_sanitizer_reports(bw)
