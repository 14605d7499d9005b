"""Wave detection through the real milter (libmilter, in-process libclamav), with default wave settings.

A generated wave of 300 messages with per-message variation (recipient names, tracking tokens,
unique URLs, varied subjects, HTML-only, base64 and quoted-printable parts, senders and client
networks) is mixed with 300 distinct ham messages and driven through `breakwater run` with the
milter protocol client:

- the wave is detected as one wave by its 60th message (from then on every wave message carries
  X-Breakwater-Wave with one id), and no ham is counted into it;
- `breakwater waves` lists it with a suggested signature, `breakwater waves promote ID` adds that
  signature, and the rest of the wave gets 550 through the milter while ham is still accepted;
- an allow-listed sender's identical message to many recipients is never a wave, while the same
  messages from senders that are not allow-listed are (so the test can fail).

The generator is the test's own (seeded); it does not use the shared corpus.
"""
import base64
import json
import os
import quopri
import random
import re
import subprocess
import time

import pytest

from harness.milterclient import MilterConnection

WORDS = """the of and to in for on with as by at from that this we our your you will be is are was
have has can should please thanks regards team project meeting agenda update report review budget
quarter schedule deadline client customer order invoice payment shipment delivery contract proposal
draft document attached summary notes minutes action items follow next week monday tuesday morning
afternoon call discuss confirm approve request support issue ticket resolved pending status progress
milestone release version feature design system server network database backup migration test
results analysis data figures sales revenue forecast growth market product service pricing""".split()
FIRST = ["Anna", "Ben", "Carla", "David", "Elena", "Frank", "Grace", "Hiro", "Ines", "Jonas", "Karin",
         "Luis", "Maria", "Nils", "Olga", "Peter", "Rosa", "Sven", "Tara", "Vera", "Wei", "Zoë", "Jürgen"]
LAST = ["Smith", "Jones", "Garcia", "Müller", "Rossi", "Dubois", "Novak", "Tanaka", "Chen", "Silva"]


def eicar_only_signatures(directory):
    """A signature set that knows nothing of the wave (the test's wave must be found by detection)."""
    os.makedirs(directory, exist_ok=True)
    eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    with open(os.path.join(directory, "test.ndb"), "w") as f:
        f.write(f"Test.EICAR:0:*:{eicar.encode().hex()}\n")
    return directory


def _b64(text):
    return base64.encodebytes(text.encode()).decode().replace("\n", "\r\n")


def _qp(text):
    return quopri.encodestring(text.replace("\r\n", "\n").encode()).decode().replace("\n", "\r\n")


def _message(headers, content_type, body, encoding="7bit"):
    h = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (h + f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n" + body).encode()


def _multipart(headers, boundary, parts):
    h = "".join(f"{k}: {v}\r\n" for k, v in headers)
    out = h + f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
    for ctype, enc, body in parts:
        out += f"--{boundary}\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: {enc}\r\n\r\n{body}\r\n"
    return (out + f"--{boundary}--\r\n").encode()


class Generator:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def hexid(self, n):
        return "%0*x" % (n, self.r.getrandbits(4 * n))

    def recipient(self):
        first, last = self.r.choice(FIRST), self.r.choice(LAST)
        local = f"{first}.{last}{self.r.randint(1, 99)}".lower().encode("ascii", "ignore").decode()
        return first, f"{first} {last}", f"{local}@dest.example"

    def wave(self, i):
        """Message i of a parcel-fee wave: (raw, envelope sender, recipient, client ip, shape)."""
        r = self.r
        first, full, rcpt = self.recipient()
        token = self.hexid(16)
        domain = r.choice(["parcel-desk.test", "delivery-notice.test", "customs-center.test"])
        url = f"https://track-{token[:8]}.{domain}/p/{token}?r={base64.urlsafe_b64encode(rcpt.encode()).decode()}"
        subject = r.choice([f"{first}, your parcel is on hold",
                            f"Action needed: parcel {r.randint(100000, 999999)} awaiting customs fee",
                            f"Delivery attempt failed for {full}",
                            f"RE: shipment {self.hexid(6).upper()} held at the depot",
                            "Your package could not be delivered"])
        sender = f"{r.choice(['notice', 'noreply', 'dispatch'])}@{self.hexid(5)}.{domain}"
        text = (f"Dear {full},\r\n\r\n"
                f"We attempted to deliver your parcel today but it is being held at our regional depot\r\n"
                f"because an import fee of {r.randint(1, 4)}.{r.randint(10, 99)} EUR has not been paid.\r\n"
                f"Tracking number: {token[:12].upper()}\r\n\r\n"
                f"To release the parcel please confirm your address and pay the outstanding fee within\r\n"
                f"{r.randint(24, 72)} hours at {url}\r\n\r\n"
                f"If the fee is not paid the parcel will be returned to the sender.\r\n"
                f"Questions: write to help-{self.hexid(4)}@{domain}\r\n"
                f"Reference {self.hexid(10)} / {first}\r\n")
        html = (f'<html><body><div style="font-family:Arial"><p>Dear {full},</p>'
                f"<p>We attempted to deliver your parcel today but it is being held at our regional depot "
                f"because an import fee of {r.randint(1, 4)}.{r.randint(10, 99)}&nbsp;EUR has not been paid.</p>"
                f"<p>Tracking number: <b>{token[:12].upper()}</b></p>"
                f"<p>To release the parcel please confirm your address and pay the outstanding fee within "
                f'{r.randint(24, 72)} hours: <a href="{url}">release my parcel</a></p>'
                f"<p>If the fee is not paid the parcel will be returned to the sender.</p>"
                f'<img src="https://t.{domain}/o/{token}.gif" width="1" height="1"></div></body></html>')
        headers = [("From", f"Parcel Service <{sender}>"), ("To", f"{full} <{rcpt}>"),
                   ("Subject", subject), ("Date", "Mon, 04 Mar 2024 07:00:00 +0000"),
                   ("Message-ID", f"<{self.hexid(16)}@{domain}>")]
        shape = ["html-only", "alternative", "text-base64", "text-qp"][i % 4]
        if shape == "html-only":
            raw = _message(headers, "text/html; charset=utf-8", _b64(html) if i % 8 == 0 else _qp(html),
                           "base64" if i % 8 == 0 else "quoted-printable")
        elif shape == "alternative":
            raw = _multipart(headers, "b" + token, [("text/plain; charset=utf-8", "quoted-printable", _qp(text)),
                                                  ("text/html; charset=utf-8", "base64", _b64(html))])
        elif shape == "text-base64":
            raw = _message(headers, "text/plain; charset=utf-8", _b64(text), "base64")
        else:
            raw = _message(headers, "text/plain; charset=utf-8", _qp(text), "quoted-printable")
        ip = f"198.{18 + i % 2}.{r.randint(0, 255)}.{r.randint(1, 254)}"
        return raw, f"<{sender}>", f"<{rcpt}>", ip, shape

    def sentence(self):
        w = [self.r.choice(WORDS) for _ in range(self.r.randint(6, 16))]
        return " ".join(w).capitalize() + "."

    def ham(self, i):
        r = self.r
        first, full, rcpt = self.recipient()
        sfirst, sfull, sender = self.recipient()
        sender = sender.replace("dest.example", r.choice(["example.org", "example.net", "corp.example"]))
        subject = r.choice(["Re: ", "Fwd: ", "", "Notes: "]) + " ".join(r.choice(WORDS) for _ in range(3))
        body = (f"Hi {first},\r\n\r\n" + "\r\n".join(" ".join(self.sentence() for _ in range(r.randint(2, 4)))
                                                 for _ in range(r.randint(2, 5)))
                + f"\r\n\r\nBest regards,\r\n{sfull}\r\n")
        headers = [("From", f"{sfull} <{sender}>"), ("To", f"{full} <{rcpt}>"), ("Subject", subject),
                   ("Date", "Mon, 04 Mar 2024 07:00:00 +0000"), ("Message-ID", f"<{self.hexid(16)}@example.org>")]
        if i % 3 == 0:
            html = "<html><body>" + "".join(f"<p>{p}</p>" for p in body.split("\r\n\r\n")) + "</body></html>"
            raw = _message(headers, "text/html; charset=utf-8", _qp(html), "quoted-printable")
        else:
            raw = _message(headers, "text/plain; charset=utf-8", _qp(body), "quoted-printable")
        ip = f"203.0.{r.randint(0, 255)}.{r.randint(1, 254)}"
        return raw, f"<{sender}>", f"<{rcpt}>", ip, "ham"


def send(bw, raw, sender, rcpt, ip):
    """One message on its own connection from client `ip`: the EOM reply."""
    with MilterConnection.open(bw.milter_spec) as m:
        m.negotiate()
        m.connect(hostname="client.example", address=ip, port=40000)
        reply = m.send_message(raw, sender=sender, rcpts=(rcpt,))
        m.quit()
    return reply


def wave_header(reply):
    return next((v.strip() for n, v in reply.added_headers if n == "X-Breakwater-Wave"), None)


def bw_cli(bw_binary, *args, check=True):
    r = subprocess.run([bw_binary, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, f"breakwater {' '.join(args)} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def control_path(bw):
    return os.path.join(bw.run_dir, "control.sock")


def waves_json(bw_binary, bw):
    return json.loads(bw_cli(bw_binary, "waves", "--json", "--control", control_path(bw)).stdout)


@pytest.fixture
def daemon(breakwater, workdir):
    sigs = eicar_only_signatures(os.path.join(workdir, "sigs"))
    local = os.path.join(workdir, "local-signatures")
    os.makedirs(local)
    bw = breakwater("--signatures", sigs, "--local-signatures", local, "--workers", "2")
    return bw, sigs, local


def test_wave_detected_by_60th_message_then_promoted(daemon, bw_binary):
    bw, sigs, local = daemon
    gen = Generator(2024)
    waves = [gen.wave(i) for i in range(300)]
    hams = [gen.ham(i) for i in range(300)]

    first_tagged = None
    ids = set()
    ham_tagged = []
    for i in range(150):
        w = waves[i]
        reply = send(bw, *w[:4])
        assert reply.kind in ("accept", "continue"), f"wave message {i + 1} ({w[4]}): {reply}"
        wid = wave_header(reply)
        if wid:
            ids.add(wid)
            if first_tagged is None:
                first_tagged = i + 1
        elif first_tagged is not None:
            pytest.fail(f"wave message {i + 1} ({w[4]}) not tagged after the wave was detected at {first_tagged}")
        h = hams[i]
        reply = send(bw, *h[:4])
        assert reply.kind in ("accept", "continue"), f"ham {i + 1}: {reply}"
        if wave_header(reply):
            ham_tagged.append(i + 1)

    assert first_tagged is not None and first_tagged <= 60, f"wave first tagged at message {first_tagged}"
    assert len(ids) == 1, f"more than one wave: {ids}"
    assert not ham_tagged, f"ham tagged as wave: {ham_tagged}"
    wid = ids.pop()
    assert re.search(rf"wave {wid} started", bw.log())
    print(f"\nwave {wid} detected at wave message {first_tagged} (of 150 so far, with 150 ham between)")

    listed = waves_json(bw_binary, bw)
    assert [w["id"] for w in listed] == [wid], listed
    w = listed[0]
    assert w["active"]
    # Every counted message is a wave message (150 sent): no ham counted into it.
    assert 140 <= w["total_count"] <= 150, w
    assert w["senders"] > 5
    assert w["suggestion"] and w["suggestion"]["command"].startswith("breakwater signatures add "), w
    text = bw_cli(bw_binary, "waves", "--control", control_path(bw)).stdout
    assert wid in text and "breakwater signatures add" in text
    print(text)

    r = bw_cli(bw_binary, "waves", "promote", wid, "--control", control_path(bw), "--signatures", sigs,
               "--local-signatures", local)
    name = w["suggestion"]["name"]
    assert name in r.stdout + r.stderr

    rejected, not_rejected = 0, []
    for i in range(150, 300):
        w = waves[i]
        reply = send(bw, *w[:4])
        if reply.kind == "reject" and reply.smtp_code == "550":
            assert name in reply.text
            rejected += 1
        else:
            not_rejected.append((i + 1, w[4], reply))
        h = hams[i]
        reply = send(bw, *h[:4])
        assert reply.kind in ("accept", "continue"), f"ham {i + 1} after promote: {reply}"
        assert not wave_header(reply)
    assert not not_rejected, f"{len(not_rejected)} wave messages not rejected after promote: {not_rejected[:5]}"
    assert rejected == 150
    listed = waves_json(bw_binary, bw)
    assert listed[0]["promoted_as"] == name
    # `breakwater status` shows the waves part.
    status = json.loads(bw_cli(bw_binary, "status", "--json", "--control", control_path(bw)).stdout)
    assert status["waves"]["enabled"] and status["waves"]["active"] == 1 and status["waves"]["started"] == 1
    assert status["waves"]["messages_in_waves"] >= 150 + 150 - first_tagged
    assert "waves:" in bw_cli(bw_binary, "status", "--control", control_path(bw)).stdout


def test_allow_listed_sender_never_a_wave(breakwater, workdir, bw_binary):
    sigs = eicar_only_signatures(os.path.join(workdir, "sigs"))
    bw = breakwater("--signatures", sigs, "--wave-allow-senders", "@lists.example.org",
                    "--wave-allow-networks", "192.0.2.0/24")
    gen = Generator(7)
    raw = gen.wave(1)[0]  # one message, sent unchanged (byte for byte) to every recipient
    for i in range(120):
        rcpt = f"<member{i}@dest.example>"
        # The list's own address from many networks, and anyone from the allow-listed network.
        r1 = send(bw, raw, "<news@lists.example.org>", rcpt, f"198.51.{i % 200}.{1 + i % 250}")
        r2 = send(bw, raw, f"<bulk{i}@anywhere.test>", rcpt, f"192.0.2.{1 + i % 250}")
        assert not wave_header(r1) and not wave_header(r2), f"message {i + 1}: {r1} {r2}"
    assert waves_json(bw_binary, bw) == []
    assert " wave=" not in bw.log()
    # The same identical message from senders that are not allow-listed is a wave.
    tagged = 0
    for i in range(120):
        r = send(bw, raw, f"<bulk{i}@anywhere.test>", f"<member{i}@dest.example>", f"198.51.{i % 200}.7")
        tagged += bool(wave_header(r))
    assert tagged >= 60
    assert len(waves_json(bw_binary, bw)) == 1


@pytest.mark.parametrize("spool", ["memory", "spooled"])
def test_wave_action_reject(breakwater, workdir, spool):
    """wave-action reject; messages scanned from memory, and spooled to a file (scanned by descriptor)."""
    sigs = eicar_only_signatures(os.path.join(workdir, "sigs"))
    extra = ["--spool-threshold", "1K"] if spool == "spooled" else []
    bw = breakwater("--signatures", sigs, "--wave-action", "reject", "--wave-threshold", "20", *extra)
    gen = Generator(99)
    codes = []
    for i in range(40):
        reply = send(bw, *gen.wave(i)[:4])
        codes.append(reply.smtp_code if reply.kind == "reject" else reply.kind)
    first = next(i for i, c in enumerate(codes) if c == "550")
    assert first < 25, codes
    assert all(c == "550" for c in codes[first:]), codes
    assert re.search(r"verdict=clean action=reject wave=w[0-9a-f]+ .*reply=\"550 5\.7\.1 Rejected: wave w", bw.log())
    if spool == "spooled":
        assert "spooled=" in bw.log()


def test_wave_action_tempfail_has_cause_wave(breakwater, workdir, bw_binary):
    """wave-action tempfail: 451 4.7.1, logged and counted with cause wave (scan_error before issue 20)."""
    sigs = eicar_only_signatures(os.path.join(workdir, "sigs"))
    bw = breakwater("--signatures", sigs, "--wave-action", "tempfail", "--wave-threshold", "20")
    gen = Generator(77)
    codes = []
    for i in range(40):
        reply = send(bw, *gen.wave(i)[:4])
        codes.append(f"{reply.smtp_code} {reply.enhanced}" if reply.kind == "tempfail" else reply.kind)
    first = next(i for i, c in enumerate(codes) if c == "451 4.7.1")
    assert first < 25, codes
    assert all(c == "451 4.7.1" for c in codes[first:]), codes
    assert re.search(r"verdict=clean action=tempfail cause=wave wave=w[0-9a-f]+ ", bw.log()), bw.log_tail()
    assert "cause=scan_error" not in bw.log()
    st = json.loads(bw_cli(bw_binary, "status", "--json", "--control", control_path(bw)).stdout)
    assert st["tempfailed_by_cause"]["wave"] == 40 - first, st
    assert st["tempfailed_by_cause"]["scan_error"] == 0, st
