"""Breakwater driven by miltertest (OpenDKIM's Lua MTA simulator, an implementation of the MTA side
independent of Postfix and of our own client): IntegrationTests/miltertest/*.lua for reject, accept with the
added header, tempfail on overload, quarantine, and skip for an authenticated sender."""
import os
import re
import subprocess
import threading

import pytest

from harness import mail
from harness.milterclient import run_session

LUA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "miltertest")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The 451 4.3.2 texts of `breakwater run` when every scan slot and waiting place is taken.
BUSY_TEXT = "Breakwater is busy scanning other mail, please try again later"


def miltertest(binary, script, daemon, timeout=120, **defs):
    """Runs IntegrationTests/miltertest/SCRIPT.lua against `daemon`; returns stdout; fails with all output."""
    cmd = [binary, "-D", f"sock={daemon.milter_spec}", "-D", f"libdir={LUA_DIR}"]
    for k, v in defs.items():
        cmd += ["-D", f"{k}={v}"]
    cmd += ["-s", os.path.join(LUA_DIR, script + ".lua")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0 or "PASS" not in r.stdout:
        pytest.fail(f"miltertest {script}.lua exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}\n"
                    f"breakwater log:\n{daemon.log_tail()}", pytrace=False)
    return r.stdout


def write(workdir, name, data):
    path = os.path.join(workdir, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.fixture(scope="module")
def std_daemons(module_breakwater, test_sigs):
    """The test signatures, skip-authenticated on; one on a loopback port, one on a unix socket."""
    args = ("--signatures", test_sigs, "--skip-authenticated", "yes")
    return {"inet": module_breakwater(*args, name="bw-inet"),
            "unix": module_breakwater(*args, socket="unix", name="bw-unix")}


@pytest.fixture(scope="module")
def quarantine_daemon(module_breakwater, test_sigs):
    return module_breakwater("--signatures", test_sigs, "--action", "* quarantine",
                             "--scanned-header", "X-Scanned-By-Test", name="bw-quarantine")


@pytest.mark.parametrize("socket", ["inet", "unix"])
def test_reject_names_signature(miltertest_bin, std_daemons, workdir, socket):
    bw = std_daemons[socket]
    miltertest(miltertest_bin, "reject", bw, msg=write(workdir, "eicar.eml", mail.eicar_attachment("mt1")),
               name=mail.EICAR_SIG, qid=f"MTQIDREJ1{socket}")
    miltertest(miltertest_bin, "reject", bw, msg=write(workdir, "spam.eml", mail.mini_cooper_spam("mt2", 3)),
               name=mail.SPAM_SIG, qid=f"MTQIDREJ2{socket}")
    assert bw.wait_log(f"queue=MTQIDREJ1{socket} ") and bw.wait_log(f"queue=MTQIDREJ2{socket} "), \
        f"queue ids missing from the log:\n{bw.log_tail()}"


@pytest.mark.parametrize("socket", ["inet", "unix"])
def test_declared_size_over_limit_is_still_scanned(miltertest_bin, std_daemons, workdir, socket):
    """Issue 19: MAIL FROM declares SIZE=30000000 (over the 25M max-message-size) and then sends a
    small EICAR message: it is scanned and rejected, never accepted as oversize, and the log's size=
    is the size received."""
    bw = std_daemons[socket]
    raw = mail.eicar_attachment("mtsize")
    qid = f"MTQIDSIZE{socket}"
    miltertest(miltertest_bin, "reject", bw, msg=write(workdir, "eicar-size.eml", raw), name=mail.EICAR_SIG,
               qid=qid, size=30000000)
    line = bw.wait_log(f"queue={qid} ")
    assert line, f"no log line for {qid}:\n{bw.log_tail()}"
    size = int(re.search(r" size=(\d+) ", line).group(1))
    assert "verdict=infected" in line and size < 10_000, line


def test_reject_with_shipped_signatures(miltertest_bin, breakwater, workdir):
    """The shipped set (no --signatures: the checkout's Signatures/ or the installed copy) names EICAR."""
    bw = breakwater()
    miltertest(miltertest_bin, "reject", bw, msg=write(workdir, "eicar.eml", mail.eicar_attachment("mt3")),
               name="Breakwater.Test.EICAR", qid="MTQIDSHIP")


def test_accept_adds_scanned_header(miltertest_bin, std_daemons, workdir):
    out = miltertest(miltertest_bin, "accept_header", std_daemons["inet"],
                     msg=write(workdir, "ham.eml", mail.ham("mt4")), header="X-Virus-Scanned")
    assert "X-Virus-Scanned:" in out


def test_accept_adds_configured_header(miltertest_bin, quarantine_daemon, workdir):
    miltertest(miltertest_bin, "accept_header", quarantine_daemon, msg=write(workdir, "ham.eml", mail.ham("mt5")),
               header="X-Scanned-By-Test")


def test_quarantine_action(miltertest_bin, quarantine_daemon, workdir):
    miltertest(miltertest_bin, "quarantine", quarantine_daemon,
               msg=write(workdir, "eicar.eml", mail.eicar_attachment("mt6")), name=mail.EICAR_SIG)


def test_skip_authenticated_sender(miltertest_bin, std_daemons, workdir):
    bw = std_daemons["unix"]
    miltertest(miltertest_bin, "skip_auth", bw, msg=write(workdir, "eicar.eml", mail.eicar_attachment("mt7")),
               name=mail.EICAR_SIG)
    assert bw.wait_log("auth=alice"), f"no log line for the authenticated sender:\n{bw.log_tail()}"


def test_tempfail_on_overload(miltertest_bin, breakwater, workdir, test_sigs):
    """--workers 1 --max-waiting 0: while a session of our own client keeps the only slot scanning slow
    messages, miltertest's transactions get a temporary failure (at MAIL FROM or 451 4.3.2 at EOM)."""
    bw = breakwater("--signatures", test_sigs, "--workers", "1", "--max-waiting", "0", "--max-files", "100000")
    slow = mail.slow_message()
    stop = threading.Event()
    holder_replies, holder_errors = [], []

    def holder():
        while not stop.is_set():
            try:
                holder_replies.append(run_session(bw.milter_spec, slow, timeout=60).kind)
            except Exception as e:  # reported below
                holder_errors.append(repr(e))
                return

    t = threading.Thread(target=holder, daemon=True)
    t.start()
    try:
        out = miltertest(miltertest_bin, "tempfail_overload", bw,
                         msg=write(workdir, "ham.eml", mail.ham("mt8")), busy_text=BUSY_TEXT, seconds=30, want=3)
    finally:
        stop.set()
        t.join(60)
    assert not holder_errors, holder_errors
    assert holder_replies and set(holder_replies) <= {"continue", "accept", "tempfail"}, holder_replies
    assert bw.wait_log("verdict=busy"), bw.log_tail()
    print(out)
