"""The Prometheus endpoint of `breakwater run` (--metrics), driven over the milter protocol
(harness.milterclient, no MTA) and scraped over HTTP on 127.0.0.1 / [::1].

- after a known sequence of messages (every outcome, every signature path, a tempfail for the
  memory budget, then a burst that gets 451 busy), each counter has the exact value the milter
  answers imply, the histograms counted every scan, and `promtool check metrics` accepts the output;
- the detection counter keeps --metrics-max-signatures names and counts the rest as "other";
- gauges follow the daemon: slots, budget, sessions, threads, engine generation, reloads that
  succeed and fail; /health is 200 while an engine is loaded;
- malformed, oversized, stalled and wrong-method requests get 4xx or are closed, and messages keep
  being scanned while they are open;
- several scrapes are answered at once while slow-loris clients hold connections open (each
  connection has one deadline for the whole exchange);
- only a Host that names the endpoint is answered (no DNS rebinding from a browser on the host):
  evil.example gets 421, 127.0.0.1:PORT, localhost and [::1] are served, HTTP/1.0 may omit Host;
- the alert rules pass `promtool check rules` and their unit tests (`promtool test rules`).
"""
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import require
from harness.wire import exchange
from harness import mail, procs
from harness.milterclient import SMFIR_REPLYCODE, MilterConnection, run_session
from harness.ports import free_port, release_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(REPO, "contrib", "prometheus", "breakwater.rules.yml")
RULE_TESTS = os.path.join(REPO, "IntegrationTests", "prometheus", "breakwater.rules.test.yml")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

QUARANTINE_MARK, QUARANTINE_SIG = "bw-metrics-quarantine-marker-5d1c", "Test.Metrics.Quarantine"
DISCARD_MARK, DISCARD_SIG = "bw-metrics-discard-marker-9e27", "Test.Metrics.Discard"
SPOOL_THRESHOLD = 64 * 1024


@pytest.fixture(scope="session")
def promtool():
    require(os.access(PROMTOOL, os.X_OK), "promtool not installed (scripts/setup.sh --test installs prometheus)")
    return PROMTOOL


@pytest.fixture
def metrics_sigs(workdir):
    """The tests' signatures plus two markers that the daemon maps to quarantine and discard."""
    d = mail.write_signatures(os.path.join(workdir, "sigs"))
    with open(os.path.join(d, "metrics.ndb"), "w") as f:
        f.write(f"{QUARANTINE_SIG}:0:*:{QUARANTINE_MARK.encode().hex()}\n")
        f.write(f"{DISCARD_SIG}:0:*:{DISCARD_MARK.encode().hex()}\n")
    return d


@pytest.fixture
def metrics_port():
    port = free_port()
    yield port
    release_port(port)


def marked(tid, mark):
    return (f"From: a@example.org\r\nTo: user@dest.example\r\nSubject: marker\r\nMessage-ID: <{tid}@example.org>\r\n"
            f"X-Test-Id: {tid}\r\n\r\nThis message carries {mark} in its body.\r\n").encode()


def http_get(port, path, method="GET", host="127.0.0.1", timeout=10):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        c.close()


def raw_http(port, data, host="127.0.0.1", timeout=15, shut=False):
    """Sends raw bytes, reads to EOF. Returns (bytes received, error or None)."""
    return exchange((host, port), data, timeout=timeout, shut=shut)


def status_of(response):
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", response)
    return int(m.group(1)) if m else None


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$')


def parse_samples(text):
    """{(name, frozenset(labels)): value}; label values unescaped."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


class Scrape:
    def __init__(self, port, host="127.0.0.1"):
        status, headers, body = http_get(port, "/metrics", host=host)
        assert status == 200, body
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers
        self.text = body
        self.samples = parse_samples(body)

    def get(self, name, **labels):
        key = (name, frozenset(labels.items()))
        assert key in self.samples, f"no sample {name}{labels} in:\n{self.text}"
        return self.samples[key]


def promtool_check(promtool, text):
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"promtool check metrics: {r.stdout}{r.stderr}"
    assert r.stdout.strip() == "" and r.stderr.strip() == "", f"promtool lint: {r.stdout}{r.stderr}"


def wait_for(predicate, timeout=20, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def kind(reply):
    if reply.action == SMFIR_REPLYCODE:
        return f"{reply.smtp_code} {reply.enhanced}"
    return reply.kind


def burst(spec, n, raw):
    """n sessions send `raw` and wait at a barrier, then all send end-of-message at once."""
    barrier = threading.Barrier(n, timeout=60)
    replies, errors = [None] * n, []

    def one(i):
        ok = False
        try:
            with MilterConnection.open(spec, timeout=60) as m:
                m.negotiate()
                m.connect(address=f"198.51.100.{i + 1}")

                def sync():
                    nonlocal ok
                    ok = True
                    barrier.wait()

                replies[i] = m.send_message(raw, rcpt_macros={"i": f"BURST{i}"}, before_eom=sync)
                m.quit()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
        finally:
            if not ok:
                barrier.abort()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return replies


def test_counters_histograms_and_gauges_after_a_known_sequence(breakwater, metrics_sigs, metrics_port, promtool, workdir):
    spool = os.path.join(workdir, "spool")
    os.makedirs(spool)
    bw = breakwater("--signatures", metrics_sigs, "--metrics", f"127.0.0.1:{metrics_port}",
                    "--metrics-max-signatures", "2", "--workers", "1", "--max-waiting", "0",
                    "--memory-budget", "16M", "--spool-threshold", str(SPOOL_THRESHOLD), "--spool-directory", spool,
                    "--action", "Test.Spam.* tag", "--action", f"{QUARANTINE_SIG}* quarantine",
                    "--action", f"{DISCARD_SIG}* discard",
                    "--skip-networks", "192.0.2.0/24", "--skip-recipients", "skip@dest.example")
    spec = bw.milter_spec

    # Before any message: every outcome and cause at 0, "other" present, histograms empty.
    s = Scrape(metrics_port)
    promtool_check(promtool, s.text)
    for outcome in ("accepted", "rejected", "tempfailed", "discarded", "quarantined", "tagged", "skipped"):
        assert s.get("breakwater_messages_total", outcome=outcome) == 0
    for cause in ("busy", "memory_budget", "timeout", "scan_error", "size", "policy", "wave"):
        assert s.get("breakwater_tempfails_total", cause=cause) == 0
    assert s.get("breakwater_detections_total", signature="other") == 0
    assert s.get("breakwater_scan_duration_seconds_count") == 0

    # The known sequence, one session each; the answers are checked so that the counts below are
    # what the milter did, not what the test hoped.
    scanned_sizes = []  # the milter holds a CRLF message as sent: its size is len(raw)

    def send(raw, expect, scanned=True, **kw):
        r = run_session(spec, raw, **kw)
        assert kind(r) == expect, (r, bw.log_tail())
        if scanned:
            scanned_sizes.append(len(raw))
        return r

    for i in range(3):
        send(mail.ham(mail.test_id()), "continue")
    # Signature names as the engine reports them (libclamav may append .UNOFFICIAL).
    for i in range(2):
        r = send(mail.eicar_attachment(mail.test_id()), "550 5.7.1")
        eicar = r.text.split(": ", 1)[1]
        assert eicar.startswith(mail.EICAR_SIG), r
    r = send(mail.mini_cooper_spam(mail.test_id()), "continue")
    spam = dict(r.added_headers).get("X-Breakwater-Signature", "").strip()
    assert spam.startswith(mail.SPAM_SIG), r
    r = send(marked(mail.test_id(), QUARANTINE_MARK), "continue")
    assert r.quarantine_reason and QUARANTINE_SIG in r.quarantine_reason, r
    send(marked(mail.test_id(), DISCARD_MARK), "discard")
    # Skipped: a client in --skip-networks (answered at connect), and a message to a skipped recipient.
    with MilterConnection.open(spec) as m:
        m.negotiate()
        assert m.connect(address="192.0.2.7").kind == "accept"
        m.quit()
    r = send(mail.ham(mail.test_id()), "continue", scanned=False, rcpts=("<skip@dest.example>",))  # as an MTA sends it
    assert not any(n == "X-Virus-Scanned" for n, _ in r.added_headers), "a skipped message was scanned"
    # The memory budget: a message past --spool-threshold that cannot be spooled (its directory is gone).
    shutil.rmtree(spool)  # with the crash directory and the private copy of the signature set in it
    try:
        r = send(mail.large_ham(mail.test_id(), 4 * SPOOL_THRESHOLD), "451 4.3.2", scanned=False)
        assert "memory budget" in r.text, r
    finally:
        os.makedirs(spool)

    s = Scrape(metrics_port)
    promtool_check(promtool, s.text)
    expected = {"accepted": 3, "rejected": 2, "tempfailed": 1, "discarded": 1, "quarantined": 1, "tagged": 1, "skipped": 2}
    for outcome, n in expected.items():
        assert s.get("breakwater_messages_total", outcome=outcome) == n, outcome
    assert s.get("breakwater_tempfails_total", cause="memory_budget") == 1
    assert s.get("breakwater_tempfails_total", cause="busy") == 0
    scans = 3 + 2 + 1 + 1 + 1
    assert len(scanned_sizes) == scans
    assert s.get("breakwater_scans_total") == scans
    # Detections: the first two names under their own label (cap 2), the markers as "other".
    assert s.get("breakwater_detections_total", signature=eicar) == 2
    assert s.get("breakwater_detections_total", signature=spam) == 1
    assert s.get("breakwater_detections_total", signature="other") == 2
    assert len([k for k in s.samples if k[0] == "breakwater_detections_total"]) == 3
    # Every scan is in each histogram, and only scans.
    for h in ("breakwater_scan_duration_seconds", "breakwater_slot_wait_seconds", "breakwater_message_size_bytes"):
        assert s.get(h + "_count") == scans, h
        assert s.get(h + "_bucket", le="+Inf") == scans, h
    assert s.get("breakwater_scan_duration_seconds_sum") > 0
    assert s.get("breakwater_message_size_bytes_sum") == sum(scanned_sizes)
    for le in (1024, 4096, 16384, 65536):
        assert s.get("breakwater_message_size_bytes_bucket", le=f"{le}.0") == len([n for n in scanned_sizes if n <= le]), le
    # Gauges.
    assert s.get("breakwater_scan_slots") == 1
    assert s.get("breakwater_scan_slots_busy") == 0
    assert s.get("breakwater_messages_waiting") == 0
    assert s.get("breakwater_messages_waiting_limit") == 0
    assert s.get("breakwater_messages_in_progress") == 0
    assert s.get("breakwater_buffered_bytes") == 0
    assert s.get("breakwater_memory_budget_bytes") == 16 * 1024 * 1024
    assert s.get("breakwater_signatures_loaded") == 4
    assert s.get("breakwater_engine_generation") == 1
    assert s.get("breakwater_reload_last_success") == 1
    assert abs(s.get("breakwater_start_time_seconds") - time.time()) < 600
    threads = procs.status_kb(bw.pid, "Threads")
    assert abs(s.get("breakwater_process_threads") - threads) <= 2, (s.get("breakwater_process_threads"), threads)
    wait_for(lambda: Scrape(metrics_port).get("breakwater_milter_sessions") == 0, what="sessions to close")
    with MilterConnection.open(spec) as m:
        m.negotiate()
        m.connect()
        assert wait_for(lambda: Scrape(metrics_port).get("breakwater_milter_sessions") == 1, what="session open")
        m.quit()

    # A burst at one slot and no waiting line: some messages get 451 busy. Whatever the split, the
    # counters follow the answers exactly.
    raw = mail.large_ham("burst", 512 * 1024)
    got_accept = got_busy = 0
    for attempt in range(5):
        for r in burst(spec, 12, raw):
            if kind(r) == "continue":
                got_accept += 1
            else:
                assert kind(r) == "451 4.3.2" and "busy" in r.text, r
                got_busy += 1
        if got_busy:
            break
    assert got_busy, "12 simultaneous ends of message with one slot and no waiting line: never busy"
    s = Scrape(metrics_port)
    promtool_check(promtool, s.text)
    assert s.get("breakwater_messages_total", outcome="accepted") == 3 + got_accept
    assert s.get("breakwater_messages_total", outcome="tempfailed") == 1 + got_busy
    assert s.get("breakwater_tempfails_total", cause="busy") == got_busy
    assert s.get("breakwater_scans_total") == scans + got_accept
    for h in ("breakwater_scan_duration_seconds", "breakwater_slot_wait_seconds", "breakwater_message_size_bytes"):
        assert s.get(h + "_count") == scans + got_accept, h
    assert s.get("breakwater_message_size_bytes_bucket", le="262144.0") == scans
    assert s.get("breakwater_message_size_bytes_bucket", le="1048576.0") == scans + got_accept


def test_signature_tempfail_is_logged_and_counted_as_policy(breakwater, metrics_sigs, metrics_port):
    """A signature whose action is tempfail: 451 4.7.1, logged cause=policy and counted under
    tempfails_total{cause="policy"} (it was counted as scan_error before issue 20)."""
    bw = breakwater("--signatures", metrics_sigs, "--metrics", f"127.0.0.1:{metrics_port}",
                    "--action", f"{DISCARD_SIG}* tempfail")
    r = run_session(bw.milter_spec, marked(mail.test_id(), DISCARD_MARK))
    assert kind(r) == "451 4.7.1", (r, bw.log_tail())
    line = bw.wait_log("verdict=infected action=tempfail")
    assert line and DISCARD_SIG in line and " cause=policy " in line, bw.log_tail()
    s = Scrape(metrics_port)
    assert s.get("breakwater_messages_total", outcome="tempfailed") == 1
    assert s.get("breakwater_tempfails_total", cause="policy") == 1
    assert s.get("breakwater_tempfails_total", cause="scan_error") == 0


def test_reloads_and_health(breakwater, metrics_sigs, metrics_port, promtool):
    bw = breakwater("--signatures", metrics_sigs, "--metrics", f"127.0.0.1:{metrics_port}")
    status, _, body = http_get(metrics_port, "/health")
    assert status == 200 and "generation 1, 4 signatures" in body, body
    first = Scrape(metrics_port)
    loaded_at = first.get("breakwater_engine_loaded_timestamp_seconds")
    assert first.get("breakwater_reload_last_timestamp_seconds") == loaded_at
    assert first.get("breakwater_reload_duration_seconds") > 0

    # A good reload: generation 2, success.
    time.sleep(1.1)
    bw.signal(signal.SIGUSR2)
    s = wait_for(lambda: (lambda s: s if s.get("breakwater_engine_generation") == 2 else None)(Scrape(metrics_port)),
                 what="generation 2")
    assert s.get("breakwater_reload_last_success") == 1
    assert s.get("breakwater_engine_loaded_timestamp_seconds") > loaded_at
    good_reload_at = s.get("breakwater_reload_last_timestamp_seconds")
    assert good_reload_at > loaded_at

    # A broken database: the reload fails, generation 2 stays in service and healthy.
    with open(os.path.join(metrics_sigs, "broken.ndb"), "w") as f:
        f.write("this is not a signature line\n")
    time.sleep(1.1)
    bw.signal(signal.SIGUSR2)
    s = wait_for(lambda: (lambda s: s if s.get("breakwater_reload_last_success") == 0 else None)(Scrape(metrics_port)),
                 what="a failed reload")
    promtool_check(promtool, s.text)
    assert s.get("breakwater_engine_generation") == 2
    assert s.get("breakwater_signatures_loaded") == 4
    assert s.get("breakwater_reload_last_timestamp_seconds") > good_reload_at
    status, _, body = http_get(metrics_port, "/health")
    assert status == 200 and "generation 2" in body, body
    assert kind(run_session(bw.milter_spec, mail.eicar_attachment(mail.test_id()))) == "550 5.7.1"


class Traffic(threading.Thread):
    """Sends ham through the milter in a loop, one session each, counting the answers."""

    def __init__(self, spec):
        super().__init__(daemon=True)
        self.spec, self.stop_event = spec, threading.Event()
        self.answered, self.errors = 0, []
        self.lock = threading.Lock()

    def run(self):
        while not self.stop_event.is_set():
            try:
                r = run_session(self.spec, mail.ham(mail.test_id()), timeout=30)
                assert kind(r) == "continue", r
                with self.lock:
                    self.answered += 1
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(e))
                return

    def count(self):
        with self.lock:
            return self.answered


def test_hostile_requests_get_4xx_and_scanning_goes_on(breakwater, test_sigs, metrics_port, promtool):
    bw = breakwater("--signatures", test_sigs, "--metrics", f"127.0.0.1:{metrics_port}")
    traffic = Traffic(bw.milter_spec)
    traffic.start()
    try:
        wait_for(lambda: traffic.count() >= 3 or traffic.errors, what="traffic to flow")

        # Wrong method, unknown paths.
        for method in ("POST", "PUT", "DELETE", "HEAD", "OPTIONS"):
            status, headers, _ = http_get(metrics_port, "/metrics", method=method)
            assert status == 405 and headers.get("Allow") == "GET", (method, status)
        for path in ("/", "/metrics/", "/metrics/../health", "/favicon.ico", "/" + "a" * 2000):
            assert http_get(metrics_port, path)[0] == 404, path
        assert http_get(metrics_port, "/metrics?format=x")[0] == 200

        # Malformed request heads: 400, whatever the bytes.
        for junk in (b"GET /metrics\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n",
                     b"GET /metrics HTTP/1.1\r\nX: a\x00b\r\n\r\n", b"get /metrics HTTP/1.1\r\n\r\n",
                     b"GET\t/metrics HTTP/1.1\r\n\r\n", b"GET /metrics HTTP/9.9\r\n\r\n", b"\r\n\r\n",
                     b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"):
            out, _ = raw_http(metrics_port, junk)
            assert status_of(out) == 400, (junk[:40], out[:80])

        # Oversized heads: 431 (or a reset once the server has answered), never a hang or a 200.
        for big in (b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 100_000 + b"\r\n\r\n",
                    b"GET /" + b"m" * 20_000 + b" HTTP/1.1\r\n\r\n", b"x" * 1_000_000):
            out, err = raw_http(metrics_port, big)
            assert status_of(out) == 431 or (out == b"" and err is not None), (out[:80], err)

        # Connections that close at once, or half-close without a request.
        for _ in range(200):
            with socket.create_connection(("127.0.0.1", metrics_port), timeout=5):
                pass
        out, _ = raw_http(metrics_port, b"GET /metr", shut=True)
        assert out == b""

        # A stalled request holds its connection for the 5 s deadline, never the milter: messages keep
        # being answered meanwhile, then it gets 408.
        before = traffic.count()
        stalled = socket.create_connection(("127.0.0.1", metrics_port), timeout=15)
        try:
            stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            got = b""
            while True:
                chunk = stalled.recv(4096)
                if not chunk:
                    break
                got += chunk
            during = traffic.count() - before
        finally:
            stalled.close()
        assert status_of(got) == 408, got[:80]
        assert during >= 3, f"only {during} messages answered while a metrics request was stalled"

        assert not traffic.errors, traffic.errors
        s = Scrape(metrics_port)
        promtool_check(promtool, s.text)
    finally:
        traffic.stop_event.set()
        traffic.join(60)
    assert not traffic.errors, traffic.errors
    s = Scrape(metrics_port)
    assert s.get("breakwater_messages_total", outcome="accepted") == traffic.count()
    assert s.get("breakwater_scan_duration_seconds_count") == traffic.count()
    assert http_get(metrics_port, "/health")[0] == 200


def test_scrapes_at_once_while_slow_loris_clients_hold_connections(breakwater, test_sigs, metrics_port):
    breakwater("--signatures", test_sigs, "--metrics", f"127.0.0.1:{metrics_port}")
    assert http_get(metrics_port, "/health")[0] == 200
    stop = threading.Event()
    loris, silent = [], []

    def trickle():
        # Two slow-loris clients: a header byte every 0.3 s, never the blank line.
        while not stop.is_set():
            for s in loris:
                try:
                    s.sendall(b"a")
                except OSError:
                    pass
            stop.wait(0.3)

    try:
        # Many that connect and say nothing (more than the endpoint keeps: the oldest are dropped)...
        for _ in range(80):
            silent.append(socket.create_connection(("127.0.0.1", metrics_port), timeout=15))
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", metrics_port), timeout=15)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            loris.append(s)
        pump = threading.Thread(target=trickle)
        pump.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        results = [None, None]

        def scrape(i):
            try:
                results[i] = http_get(metrics_port, "/metrics", timeout=3)[0]
            except OSError as e:
                results[i] = repr(e)

        threads = [threading.Thread(target=scrape, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        took = time.monotonic() - t0
        assert results == [200, 200], f"scrapes while slow clients hold connections: {results}"
        assert took < 3, f"two scrapes took {took:.1f} s"
        # Trickling does not extend a connection: it ends at its 5 s deadline with 408.
        got = b""
        loris[0].settimeout(10)
        try:
            while True:
                chunk = loris[0].recv(4096)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:  # the pump may still write after the close
            pass
        assert status_of(got) == 408, got[:80]
        assert time.monotonic() - t0 < 7
    finally:
        stop.set()
        for s in loris + silent:
            s.close()
    assert http_get(metrics_port, "/health")[0] == 200


def host_request(port, host_header, version="HTTP/1.1", path="/metrics"):
    head = f"GET {path} {version}\r\n" + (f"Host: {host_header}\r\n" if host_header is not None else "") + "\r\n"
    out, _ = raw_http(port, head.encode())
    return status_of(out), out


def test_host_header_must_name_the_endpoint(breakwater, test_sigs, metrics_port):
    breakwater("--signatures", test_sigs, "--metrics", f"127.0.0.1:{metrics_port}")
    for host in ("evil.example", f"evil.example:{metrics_port}", "127.0.0.1.evil.example", "localhost.evil.example",
                 f"attacker.test:{metrics_port}", "10.1.2.3", "", f"127.0.0.1:{metrics_port}0"):
        status, out = host_request(metrics_port, host)
        assert status == 421, (host, out[:200])
        assert b"breakwater_" not in out
    for host in (f"127.0.0.1:{metrics_port}", "127.0.0.1", "localhost", f"localhost:{metrics_port}",
                 "LOCALHOST", f"[::1]:{metrics_port}", "127.0.0.53"):
        status, out = host_request(metrics_port, host)
        assert status == 200 and b"breakwater_scans_total" in out, (host, out[:200])
    # HTTP/1.1 requires Host (400); HTTP/1.0 may leave it out (no browser does).
    assert host_request(metrics_port, None)[0] == 400
    assert host_request(metrics_port, None, version="HTTP/1.0")[0] == 200
    assert host_request(metrics_port, "evil.example", version="HTTP/1.0")[0] == 421
    assert host_request(metrics_port, "evil.example", path="/health")[0] == 421
    # Two Host headers: 400.
    out, _ = raw_http(metrics_port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n")
    assert status_of(out) == 400


def test_ipv6_loopback(breakwater, test_sigs):
    if not os.path.exists("/proc/net/if_inet6") or "00000000000000000000000000000001" not in open("/proc/net/if_inet6").read():
        pytest.skip("no IPv6 loopback")
    port = free_port()
    try:
        breakwater("--signatures", test_sigs, "--metrics", f"[::1]:{port}")
        assert http_get(port, "/health", host="::1")[0] == 200
        s = Scrape(port, host="::1")
        assert s.get("breakwater_scans_total") == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        release_port(port)


def test_metrics_off_and_bad_addresses(breakwater, bw_binary, test_sigs):
    bw = breakwater("--signatures", test_sigs)  # the harness passes --metrics "" unless told otherwise
    assert "metrics on" not in bw.log()
    assert len(listening_tcp_sockets(bw.pid)) == 1, "more than the milter socket listening with --metrics \"\""
    for bad in ("localhost", "9897", "127.0.0.1:0", "::1:9897", "mx.example:9897"):
        r = subprocess.run([bw_binary, "check-config", "--config", "/dev/null", "--metrics", bad],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "metrics" in r.stderr, (bad, r.stdout, r.stderr)


def listening_tcp_sockets(pid):
    """Local addresses (hex, as in /proc/net/tcp*) of the TCP sockets `pid` listens on."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.read().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:
                    out.append(parts[1])
    return out


def test_metrics_port_taken_is_a_startup_error(bw_binary, workdir, test_sigs, metrics_port):
    """A daemon that cannot serve its metrics says so and exits non-zero, rather than run unwatched."""
    milter_port = free_port()
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", metrics_port))
            s.listen(1)
            r = subprocess.run([bw_binary, "run", "--socket", f"inet:{milter_port}@127.0.0.1", "--signatures", test_sigs,
                                "--metrics", f"127.0.0.1:{metrics_port}", "--control", os.path.join(workdir, "control.sock"),
                                "--local-signatures", os.path.join(workdir, "none"), "--spool-directory", workdir],
                               capture_output=True, text=True, timeout=60)
    finally:
        release_port(milter_port)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert f"cannot listen on 127.0.0.1:{metrics_port}" in r.stderr, r.stderr


def test_alert_rules_check(promtool):
    r = subprocess.run([promtool, "check", "rules", RULES], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 7 rules found" in r.stdout, r.stdout


def test_alert_rules_fire_when_they_should(promtool):
    r = subprocess.run([promtool, "test", "rules", RULE_TESTS], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
