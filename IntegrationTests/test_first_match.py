"""Issue 23: no scanning past the decision. `breakwater run` scans for the first signature and
scans again for every match only when that signature's action is not the strictest configured, so
the strictest applicable action still wins; `breakwater scan` keeps reporting every match.

Real daemon (libmilter, libclamav), driven over the milter protocol. Signatures: Test.EICAR
(reject, by the catch-all rule) and Tag.Marker, a body signature tagged by `--action "Tag.* tag"`.
"""
import base64
import os
import re
import subprocess

import pytest

from harness import mail
from harness.milterclient import run_session

TAG_TEXT = b"breakwater-tag-marker-7f3c1e"
TAG_SIG = "Tag.Marker"


def signatures(directory):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "first.ndb"), "w") as f:
        f.write(f"{mail.EICAR_SIG}:0:*:{mail.EICAR.hex()}\n")
        f.write(f"{TAG_SIG}:0:*:{TAG_TEXT.hex()}\n")
    return directory


def message(tid, parts):
    """multipart/mixed with one base64 attachment per part, in this order: "tag", "eicar" or "ham"."""
    payload = {"tag": b"Notes for the meeting.\n" + TAG_TEXT + b"\n", "eicar": mail.EICAR,
               "ham": b"The quarterly figures are attached for review.\n"}
    b = "bw-" + tid
    out = (f"From: Alice <alice@example.org>\r\nTo: Bob <user@dest.example>\r\nSubject: parts\r\n"
           f"Message-ID: <{tid}@example.org>\r\nMIME-Version: 1.0\r\n"
           f'Content-Type: multipart/mixed; boundary="{b}"\r\n\r\n')
    for i, p in enumerate(parts):
        att = base64.encodebytes(payload[p]).decode().replace("\n", "\r\n")
        out += (f'--{b}\r\nContent-Type: application/octet-stream; name="p{i}.bin"\r\n'
                f"Content-Transfer-Encoding: base64\r\n\r\n{att}")
    return (out + f"--{b}--\r\n").encode()


@pytest.fixture(scope="module")
def daemon(module_breakwater, session_dir):
    sigs = signatures(os.path.join(session_dir, "first-match-sigs"))
    return module_breakwater("--signatures", sigs, "--action", "Tag.* tag", "--log-level", "debug",
                             "--waves", "no", name="bw-first-match")


def send(bw, tid, parts):
    qid = "FM" + tid.upper()
    reply = run_session(bw.milter_spec, message(tid, parts), rcpt_macros={"i": qid})
    line = bw.wait_log(f"queue={qid} client=")
    assert line, f"no log line for {qid}:\n{bw.log_tail()}"
    rescanned = bw.wait_log(f"queue={qid} scanning again", timeout=0.2) is not None
    return reply, line, rescanned


def signatures_of(line):
    m = re.search(r" signatures=(\S+)", line)
    return m.group(1).split(",") if m else []


def test_reject_first_is_the_verdict_without_scanning_on(daemon):
    """The reject signature comes first: it is the verdict; the tag signature after it is never
    reached (before issue 23 the log named both), and there is no second scan."""
    reply, line, rescanned = send(daemon, "rejfirst", ["eicar", "tag"])
    assert reply.smtp_code == "550", (reply, line)
    assert mail.EICAR_SIG in reply.text, reply.text
    assert signatures_of(line) == [mail.EICAR_SIG], line
    assert not rescanned, daemon.log_tail()


def test_tag_first_then_reject_still_rejects(daemon):
    """A tag signature first: another name could be stricter, so the message is scanned again for
    every match, and the reject wins, as before."""
    reply, line, rescanned = send(daemon, "tagfirst", ["tag", "eicar"])
    assert reply.smtp_code == "550", (reply, line)
    assert mail.EICAR_SIG in reply.text, reply.text
    assert sorted(signatures_of(line)) == sorted([TAG_SIG, mail.EICAR_SIG]), line
    assert rescanned, daemon.log_tail()


def test_tag_only_is_tagged(daemon):
    reply, line, rescanned = send(daemon, "tagonly", ["ham", "tag"])
    assert reply.smtp_code is None, (reply, line)
    assert "action=tag" in line and signatures_of(line) == [TAG_SIG], line
    assert ("X-Breakwater-Signature", TAG_SIG) in [(n, v.strip()) for n, v in reply.added_headers], reply
    assert rescanned, daemon.log_tail()


def test_ham_is_scanned_once(daemon):
    reply, line, rescanned = send(daemon, "hamonly", ["ham", "ham"])
    assert "verdict=clean action=accept" in line, line
    assert not rescanned, daemon.log_tail()


def test_scan_command_keeps_every_match(bw_binary, session_dir, workdir):
    """`breakwater scan` reports every signature, in any order of the parts."""
    sigs = signatures(os.path.join(session_dir, "first-match-sigs"))
    path = os.path.join(workdir, "rejfirst.eml")
    with open(path, "wb") as f:
        f.write(message("scanall", ["eicar", "tag"]))
    r = subprocess.run([bw_binary, "scan", "--signatures", sigs, path], capture_output=True, text=True, timeout=60)
    found = re.findall(r": (\S+) FOUND", r.stdout)
    assert sorted(n.replace(".UNOFFICIAL", "") for n in found) == sorted([mail.EICAR_SIG, TAG_SIG]), r.stdout
