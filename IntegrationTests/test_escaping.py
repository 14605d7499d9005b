"""Attacker text never reaches a terminal or a log raw (issue 19, item 5).

Messages go through the real milter (libmilter, in-process libclamav) with the milter protocol
client: a client hostname, envelope sender, queue id and Subject full of ESC, CR, NUL (as an
encoded word), C1 controls, bidi overrides and invalid UTF-8, and an EICAR zip whose file names hold
escape sequences. The daemon's log, `breakwater waves` (text and JSON) and `waves promote` must show
them escaped: no control byte in the log or on the terminal, the log's key=value fields not forged,
JSON valid and exact, and the wave promotable.
"""
import base64
import io
import json
import os
import re
import subprocess
import zipfile

from harness.milterclient import SMFIC_HEADER, MilterConnection, _cstrings, split_message

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

# Bytes that must never appear raw: C0 controls but LF (the line end), DEL, and C1 controls in UTF-8.
RAW_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8-\xae]|\xe2\x81[\xa6-\xa9]")

# An RFC 2047 Subject that decodes to: clear screen, cursor home, a fake xterm title (OSC ... BEL), a
# NUL, a C1 CSI and a right-to-left override.
SUBJECT = " =?utf-8?q?=1B[2J=1B[H=1B]0;owned=07_Parcel_held=00_=C2=9B31m_fee=E2=80=AEtxt.exe?="


def signatures(directory):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "test.ndb"), "w") as f:
        f.write(f"Test.EICAR:0:*:{EICAR.hex()}\n")
    return directory


def cli(bw_binary, *args, check=True):
    r = subprocess.run([bw_binary, *args], capture_output=True, timeout=120)
    if check:
        assert r.returncode == 0, f"breakwater {args} exited {r.returncode}\n{r.stdout!r}\n{r.stderr!r}"
    return r


def send_raw(bw, raw, sender, ip, hostname=b"client.example", queue_id=b"4XyZ01", subject=SUBJECT.encode()):
    """One message with byte-exact envelope, hostname, queue id and Subject (the header helpers
    of the client take text; these are hostile bytes)."""
    headers, body = split_message(raw)
    with MilterConnection.open(bw.milter_spec) as m:
        m.negotiate()
        m.connect(hostname=hostname, address=ip, port=40000)
        m.mail(sender)
        m.rcpt(b"<victim@dest.example>")
        m.data()
        m._step(SMFIC_HEADER, _cstrings(b"Subject", subject), "header")
        for name, value in headers:
            m.header(name, value)
        m.eoh()
        if body:
            m.body(body)
        reply = m.eom(macros={"i": queue_id})
        m.quit()
    return reply


def wave_text(i):
    return ("We attempted to deliver your parcel today but it is being held at our regional depot because an "
            "import fee has not been paid. To release the parcel please confirm your address and pay the "
            f"outstanding fee within two days. Reference number {i:08d} for your records.\r\n")


def eicar_zip_message():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("invoice\x1b[2J\x1b]0;pwned\x07.txt", EICAR)
        z.writestr("dir\u202e/\x9bnote.com", b"hello")
    att = base64.encodebytes(buf.getvalue()).decode().replace("\n", "\r\n")
    return ("From: a@example.org\r\nTo: victim@dest.example\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            "--b1\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n"
            '--b1\r\nContent-Type: application/zip; name="inv\x1b[31m.zip"\r\n'
            'Content-Disposition: attachment; filename="inv\x1b[31m.zip"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n" + att + "--b1--\r\n").encode()


def test_hostile_text_is_escaped_in_log_waves_and_promote(breakwater, workdir, bw_binary):
    sigs = signatures(os.path.join(workdir, "sigs"))
    local = os.path.join(workdir, "local-signatures")
    os.makedirs(local)
    bw = breakwater("--signatures", sigs, "--local-signatures", local, "--wave-threshold", "5",
                    "--wave-min-sources", "2")
    control = os.path.join(bw.run_dir, "control.sock")

    # 1. Malware with a sender that tries to forge the verdict field, ESC/CR/C1/invalid UTF-8 in the
    # hostname, sender and queue id, and escape sequences in the zip's file names.
    forged = b"<evil\x1b[2J\r\xc2\x9b\xff@x.test> verdict=clean action=accept"
    reply = send_raw(bw, eicar_zip_message(), forged, "192.0.2.10", hostname=b"host\x1b]0;x\x07\r.example",
                     queue_id=b"Q\x1b[31m\x00ID")
    assert reply.kind == "reject", reply
    # A client whose address the MTA does not know: the log names it by its (hostile) host name.
    reply = send_raw(bw, eicar_zip_message(), b"<x@y.test>", None, hostname=b"[host\x1b]0;x\x07\r] verdict=clean",
                     queue_id=b"Q2")
    assert reply.kind == "reject", reply

    # 2. A wave whose Subject is the hostile encoded word, from distinct client networks.
    for i in range(8):
        r = send_raw(bw, ("From: n@parcel.test\r\nTo: v@dest.example\r\n\r\n" + wave_text(i)).encode(),
                     f"<notice{i}@parcel{i}.test>".encode(), f"198.51.{10 + i}.7", queue_id=f"W{i}".encode())
        assert r.kind in ("accept", "continue"), r
    assert bw.wait_log(" started: ", timeout=10), bw.log_tail()

    with open(bw.log_path, "rb") as f:
        log = f.read()
    bad = RAW_CONTROL.search(log)
    assert bad is None, f"raw control byte {bad.group()!r} in the log:\n{log.decode('utf-8', 'replace')}"
    text = log.decode("utf-8")
    line = next(l for l in text.splitlines() if "queue=Q\\x1b" in l)
    # One verdict and one action field: the sender's text stayed inside from=<...>.
    assert len(re.findall(r" verdict=", line)) == 1 and len(re.findall(r" action=", line)) == 1, line
    assert "from=<evil\\x1b[2J\\x0d\\x9b\ufffd@x.test>\\x20verdict=clean\\x20action=accept>" in line, line
    assert "client=192.0.2.10" in line and "queue=Q\\x1b[31m client=" in line and "verdict=infected" in line, line
    line = next(l for l in text.splitlines() if "queue=Q2 " in l)
    assert "client=[host\\x1b]0;x\\x07\\x0d]\\x20verdict=clean from=<x@y.test>" in line, line
    assert len(re.findall(r" verdict=", line)) == 1, line
    started = next(l for l in text.splitlines() if " started: " in l)
    assert 'subject="' in started, started
    assert '\\x1b[2J\\x1b[H\\x1b]0;owned\\x07 Parcel held\\x00 \\x9b31m fee\\u{202e}txt.exe"' in started, started

    # 3. `breakwater waves`: nothing raw on the terminal, the suggested command line included.
    out = cli(bw_binary, "waves", "--control", control).stdout
    bad = RAW_CONTROL.search(out)
    assert bad is None, f"raw control byte {bad.group()!r} in `waves`:\n{out.decode('utf-8', 'replace')}"
    assert b"subject: \\x1b[2J\\x1b[H" in out, out
    # JSON: valid, exact (the real subject, JSON-escaped), and no raw control either.
    js = cli(bw_binary, "waves", "--json", "--control", control).stdout
    assert RAW_CONTROL.search(js) is None, js
    assert b"\\u001b[2J" in js and b"\\u009b" in js and b"\\u202e" in js, js
    waves = json.loads(js)
    assert len(waves) == 1, waves
    w = waves[0]
    assert ("\x1b[2J\x1b[H\x1b]0;owned\x07 Parcel held\x00 \x9b31m fee\u202etxt.exe") in w["subject"], w
    cmd = w["suggestion"]["command"]
    assert RAW_CONTROL.search(cmd.encode()) is None, cmd

    # 4. `waves promote` is not blocked by the subject (the comment is escaped text) and prints
    # nothing raw.
    r = cli(bw_binary, "waves", "promote", w["id"], "--control", control, "--signatures", sigs,
            "--local-signatures", local, check=False)
    assert r.returncode == 0, f"promote exited {r.returncode}\n{r.stdout!r}\n{r.stderr!r}"
    assert RAW_CONTROL.search(r.stdout + r.stderr) is None, r.stdout + r.stderr
    listed = json.loads(cli(bw_binary, "waves", "--json", "--control", control).stdout)
    assert listed[0]["promoted_as"] == w["suggestion"]["name"]
