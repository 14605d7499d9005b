"""Issue 23: libclamav's temporary files in memory, bounded, with the spool directory behind them.

`breakwater run` with scan-temporary-directory unset makes a private directory on a tmpfs
($RUNTIME_DIRECTORY, else /dev/shm) when it has room for workers x (max-scan-size +
max-message-size); a scan that finds it full is scanned again in the spool directory; a scan that
cannot write its temporary files anywhere is answered 451, never on what it saw.

Real daemon, real libclamav and libmilter, over the milter protocol. The file systems are small
tmpfs mounts made for each test (root; the tests skip where mounting is not allowed): a tmpfs with
its inodes used up is one where libclamav cannot create a file, whatever room it has in bytes.
"""
import errno
import os
import re
import subprocess

import pytest

from harness import mail
from harness.milterclient import run_session

LIMITS = ("--workers", "1", "--max-scan-size", "8M", "--max-message-size", "8M")


class Tmpfs:
    def __init__(self, path, size="64M", inodes=256):
        self.path = path
        os.makedirs(path, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},nr_inodes={inodes},mode=0755", "tmpfs", path],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        self.fillers = []

    def use_up_inodes(self):
        """Creates empty files until the tmpfs has no inode left."""
        d = os.path.join(self.path, "filler")
        os.makedirs(d, exist_ok=True)
        n = 0
        while True:
            try:
                open(os.path.join(d, str(n)), "w").close()
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                return n
            n += 1

    def unmount(self):
        subprocess.run(["umount", "-l", self.path], capture_output=True)


@pytest.fixture
def tmpfs(workdir):
    made = []

    def make(name, **kw):
        t = Tmpfs(os.path.join(workdir, name), **kw)
        made.append(t)
        return t

    yield make
    for t in made:
        t.unmount()


def start(breakwater, test_sigs, memory, spool, *extra):
    return breakwater("--signatures", test_sigs, "--spool-directory", spool, *LIMITS, *extra,
                      env=dict(os.environ, RUNTIME_DIRECTORY=memory))


def send(bw, tid, raw):
    qid = "SM" + tid.upper()
    reply = run_session(bw.milter_spec, raw, rcpt_macros={"i": qid})
    line = bw.wait_log(f"queue={qid} client=")
    assert line, f"no log line for {qid}:\n{bw.log_tail()}"
    return reply, line


def private_dirs(path):
    return [n for n in os.listdir(path) if n.startswith("breakwater-scan.")]


def test_scan_files_in_memory_by_default(breakwater, test_sigs, tmpfs):
    """The temporary files go to a private directory on the tmpfs: with the spool's file system
    unable to create a file, messages are still scanned and answered; the directory goes with the
    daemon."""
    mem, spool = tmpfs("mem"), tmpfs("spool")
    bw = start(breakwater, test_sigs, mem.path, spool.path)
    line = bw.wait_log("scan temporary files:")
    assert line and f"in memory, {mem.path}/breakwater-scan." in line and "room planned for 16M" in line, line
    assert len(private_dirs(mem.path)) == 1
    spool.use_up_inodes()
    reply, log = send(bw, "memeicar", mail.eicar_attachment("memeicar"))
    assert reply.smtp_code == "550" and mail.EICAR_SIG in reply.text, (reply, log)
    reply, log = send(bw, "memham", mail.large_ham("memham", 300_000))
    assert reply.smtp_code is None and "verdict=clean action=accept" in log, (reply, log)
    assert "did not fit in memory" not in bw.log()
    bw.stop()
    assert private_dirs(mem.path) == []


def test_full_memory_scans_again_on_disk(breakwater, test_sigs, tmpfs, workdir):
    """A tmpfs that cannot take the scan's files: the message is scanned again in the spool
    directory, with the same answer, and the log says so."""
    mem = tmpfs("mem")
    spool = os.path.join(workdir, "spool")
    os.makedirs(spool)
    bw = start(breakwater, test_sigs, mem.path, spool)
    assert f"in memory, {mem.path}/" in (bw.wait_log("scan temporary files:") or "")
    mem.use_up_inodes()
    reply, log = send(bw, "fulleicar", mail.large_with_eicar_at_end("fulleicar", 400_000))
    assert reply.smtp_code == "550" and mail.EICAR_SIG in reply.text, (reply, log)
    warn = bw.wait_log("scan temporary files did not fit in memory")
    assert warn and f"scanned again in {spool}" in warn, bw.log_tail()


def test_no_room_anywhere_is_a_tempfail_not_an_accept(breakwater, test_sigs, tmpfs):
    """Neither the tmpfs nor the spool can take a file: 451 4.3.2, even with on-scan-error accept
    (before, libclamav's failure to write became an accept, or a clean verdict on what it saw)."""
    mem, spool = tmpfs("mem"), tmpfs("spool")
    bw = start(breakwater, test_sigs, mem.path, spool.path, "--on-scan-error", "accept")
    mem.use_up_inodes()
    spool.use_up_inodes()
    reply, log = send(bw, "nowhere", mail.eicar_attachment("nowhere"))
    assert reply.smtp_code == "451" and reply.enhanced == "4.3.2", (reply, log)
    assert "cause=scan_error" in log, log


def test_without_room_in_memory_the_spool_is_used(breakwater, test_sigs, tmpfs, workdir):
    """No tmpfs with room for workers x (max-scan-size + max-message-size): the spool directory,
    and the start-up log says why."""
    small = tmpfs("small", size="4M")
    shm = os.statvfs("/dev/shm")
    beyond = (shm.f_bavail * shm.f_frsize >> 20) + 64  # MiB: more than /dev/shm has free
    spool = os.path.join(workdir, "spool")
    os.makedirs(spool)
    bw = breakwater("--signatures", test_sigs, "--spool-directory", spool, "--workers", "1",
                    "--max-scan-size", f"{beyond}M", env=dict(os.environ, RUNTIME_DIRECTORY=small.path))
    line = bw.wait_log("scan temporary files:")
    assert line and f"scan temporary files: {spool} (no tmpfs with" in line, line
    assert re.search(rf"{re.escape(small.path)}: \d+M free", line) and "/dev/shm: " in line, line
    assert private_dirs(small.path) == []
    reply, log = send(bw, "diskeicar", mail.eicar_attachment("diskeicar"))
    assert reply.smtp_code == "550" and mail.EICAR_SIG in reply.text, (reply, log)


def test_configured_directory_is_used_as_is(breakwater, test_sigs, tmpfs, workdir):
    mem = tmpfs("mem")
    own = os.path.join(workdir, "own")
    os.makedirs(own)
    bw = breakwater("--signatures", test_sigs, "--scan-temporary-directory", own, *LIMITS,
                    env=dict(os.environ, RUNTIME_DIRECTORY=mem.path))
    line = bw.wait_log("scan temporary files:")
    assert line and f"scan temporary files: {own} (scan-temporary-directory)" in line, line
    assert private_dirs(mem.path) == []


def test_failed_start_leaves_no_directory(bw_binary, test_sigs, tmpfs, workdir):
    """A start that fails after the directory in memory was made (here: the milter socket cannot be
    opened) removes it on the way out."""
    mem = tmpfs("mem")
    r = subprocess.run([bw_binary, "run", "--socket", f"unix:{workdir}/missing/milter.sock", "--signatures", test_sigs,
                        "--metrics", "", "--control", os.path.join(workdir, "control.sock"),
                        "--local-signatures", os.path.join(workdir, "none"), "--spool-directory", workdir, *LIMITS],
                       capture_output=True, text=True, timeout=60, env=dict(os.environ, RUNTIME_DIRECTORY=mem.path))
    assert r.returncode != 0 and f"in memory, {mem.path}/breakwater-scan." in r.stderr, r.stderr[-2000:]
    assert private_dirs(mem.path) == []
