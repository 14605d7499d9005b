"""Engine limits that do not open a door (issue 19, item 2): ClamAV's own clam_cache_emax.tgz
(Debian's clamav-testfiles) holds its payload so deep that, attached to an ordinary message, the
executable sits past level 17. clamscan with its defaults finds it; Breakwater with max-recursion 16
and on-limit accept used to deliver it with only an X-Breakwater-Not-Scanned header. Now the limits
reach as deep as clamd's, and a message nested past them gets on-nesting-limit (reject by default),
through the real milter (miltertest) and a real Postfix."""
import base64
import os

import pytest

from harness import mail
from test_miltertest import miltertest, write

EMAX = "/usr/share/clamav-testfiles/clam_cache_emax.tgz"
NESTING_TEXT = "Message not accepted: exceeds scan limit (Heuristics.Limits.Exceeded.MaxRecursion)"


def emax_message(tid):
    """An ordinary message with clam_cache_emax.tgz attached (base64), as a mail client sends it."""
    if not os.path.exists(EMAX):
        pytest.fail(f"{EMAX} is missing: install clamav-testfiles (scripts/setup.sh --test)")
    with open(EMAX, "rb") as f:
        att = base64.encodebytes(f.read()).decode().replace("\n", "\r\n")
    b = "bw-" + tid
    return ("From: Alice Sender <alice@example.org>\r\nTo: Bob <user@dest.example>\r\n"
            f"Subject: the files\r\nDate: Mon, 04 Mar 2024 07:00:00 +0000\r\nMessage-ID: <{tid}@example.org>\r\n"
            f"X-Test-Id: {tid}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n"
            f"--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe files you asked for.\r\n"
            f"--{b}\r\nContent-Type: application/gzip; name=\"files.tgz\"\r\nContent-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment; filename=\"files.tgz\"\r\n\r\n" + att + f"--{b}--\r\n").encode()


@pytest.fixture(scope="module")
def limits_daemon(module_breakwater, test_sigs):
    """The tests' own signatures (which do not know clam.exe): all that can stop the message is the
    nesting limit. Every limit and on-* key at its default."""
    return module_breakwater("--signatures", test_sigs, name="bw-limits")


def test_emax_rejected_by_nesting_limit_miltertest(miltertest_bin, limits_daemon, workdir):
    miltertest(miltertest_bin, "reject_text", limits_daemon, msg=write(workdir, "emax.eml", emax_message("mtemax")),
               code="550", status="5.7.1", text=NESTING_TEXT, qid="MTQIDEMAX1")
    assert limits_daemon.wait_log("queue=MTQIDEMAX1 "), limits_daemon.log_tail()
    line = [l for l in limits_daemon.log_tail(200).splitlines() if "queue=MTQIDEMAX1 " in l][-1]
    assert "verdict=limit action=reject" in line and "Heuristics.Limits.Exceeded.MaxRecursion" in line, line


def test_emax_rejected_with_shipped_signatures_miltertest(miltertest_bin, breakwater, workdir):
    """With the shipped set and the default max-recursion (17, clamd's), the executable's name in the
    innermost tar is found, as clamscan with its defaults finds it."""
    bw = breakwater()
    miltertest(miltertest_bin, "reject", bw, msg=write(workdir, "emax.eml", emax_message("mtemax2")),
               name="Breakwater.Attachment.ExecutableName", qid="MTQIDEMAX2")


def test_nesting_limit_keys_through_milter(miltertest_bin, breakwater, workdir, test_sigs):
    """on-nesting-limit quarantine holds the message instead (with the X-Breakwater-Not-Scanned header)."""
    bw = breakwater("--signatures", test_sigs, "--on-nesting-limit", "quarantine")
    miltertest(miltertest_bin, "quarantine", bw, msg=write(workdir, "emax.eml", emax_message("mtemax3")),
               name="Heuristics.Limits.Exceeded.MaxRecursion")


def test_emax_rejected_through_postfix(limits_daemon, module_postfix, sink):
    pf = module_postfix(milters=limits_daemon.postfix_milter)
    tid = mail.test_id()
    r = pf.send(emax_message(tid), sender=f"s-{tid}@example.org")
    assert (r.code, r.text) == (550, "5.7.1 " + NESTING_TEXT), r
    ham = mail.test_id()
    assert pf.send(mail.ham(ham), sender=f"s-{ham}@example.org").code == 250
    assert sink.wait_for("X-Test-Id", ham), "the ham after it was not delivered"
    assert sink.find("X-Test-Id", tid) == [], "the nested message reached the sink"
