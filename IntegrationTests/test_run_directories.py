"""Where `breakwater run` writes: the spool directory and libclamav's scan directory.

- scan-temporary-directory is where libclamav really puts what it decodes during a scan (seen
  there while a slow scan runs), and nothing is left behind once it ends; the verdicts are the
  usual ones.
- A missing, non-directory spool or scan directory stops start-up with an error that names the key
  and the path, instead of a tempfail for every message later.
"""
import os
import subprocess
import time

from harness import mail
from harness.milterclient import MilterConnection, start_session
from harness.ports import free_port, release_port


def test_scan_temporary_directory_is_used_and_left_empty(breakwater, test_sigs, workdir):
    scan_dir = os.path.join(workdir, "scan-tmp")
    os.makedirs(scan_dir)
    bw = breakwater("--signatures", test_sigs, "--workers", "1", "--max-files", "100000",
                    "--scan-temporary-directory", scan_dir)
    seen = set()
    t, out = start_session(bw.milter_spec, mail.slow_message(16000))
    while t.is_alive():
        seen.update(os.listdir(scan_dir))
        time.sleep(0.01)
    t.join()
    assert "error" not in out, out["error"]
    assert out["reply"].kind in ("continue", "accept"), out["reply"]
    assert seen, f"libclamav wrote nothing to {scan_dir} during a scan of 16,000 MIME parts"
    with MilterConnection.open(bw.milter_spec, timeout=30) as m:
        m.negotiate()
        m.connect()
        reply = m.send_message(mail.eicar_attachment("scan-dir"))
    assert reply.smtp_code == "550" and mail.EICAR_SIG in reply.text, reply
    assert os.listdir(scan_dir) == [], f"left behind in {scan_dir}: {os.listdir(scan_dir)}"


def start_up_error(bw_binary, test_sigs, workdir, *flags):
    port = free_port()
    try:
        r = subprocess.run([bw_binary, "run", "--socket", f"inet:{port}@127.0.0.1", "--signatures", test_sigs,
                            "--metrics", "", "--control", "", "--local-signatures", os.path.join(workdir, "none"),
                            *flags], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        release_port(port)
    return r.returncode, r.stdout + r.stderr


def test_missing_or_wrong_directories_stop_start_up(bw_binary, test_sigs, workdir):
    missing = os.path.join(workdir, "no-such-dir")
    rc, out = start_up_error(bw_binary, test_sigs, workdir, "--spool-directory", missing)
    assert rc == 1 and f"spool-directory {missing}: No such file or directory" in out, out

    rc, out = start_up_error(bw_binary, test_sigs, workdir, "--spool-directory", workdir,
                             "--scan-temporary-directory", missing)
    assert rc == 1 and f"scan-temporary-directory {missing}: No such file or directory" in out, out

    a_file = os.path.join(workdir, "a-file")
    open(a_file, "w").close()
    rc, out = start_up_error(bw_binary, test_sigs, workdir, "--spool-directory", a_file)
    assert rc == 1 and f"spool-directory {a_file}: not a directory" in out, out


def test_malloc_arenas_capped_per_scan_slot_unless_the_environment_sets_them(breakwater, test_sigs):
    """run caps glibc's malloc arenas at one per scan slot; an administrator's MALLOC_ARENA_MAX wins
    (then run sets nothing and says nothing)."""
    bw = breakwater("--signatures", test_sigs, "--workers", "3")
    assert bw.wait_log("malloc: at most 3 arenas"), bw.log_tail()
    env = dict(os.environ, MALLOC_ARENA_MAX="8")
    other = breakwater("--signatures", test_sigs, "--workers", "3", env=env)
    assert other.wait_log("engine generation 1 loaded"), other.log_tail()
    assert "malloc: at most" not in other.log(), other.log_tail()


def environ_of(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return f.read()


def test_thread_caches_limited_by_re_execution_unless_the_environment_sets_them(breakwater, test_sigs):
    """run re-executes itself once, same PID, with glibc.malloc.tcache_max=64 added to GLIBC_TUNABLES
    (kept beside the administrator's other tunables); an administrator's own tcache tunable wins."""
    env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.perturb=0")
    bw = breakwater("--signatures", test_sigs, env=env)
    assert bw.wait_log("malloc: per-thread caches keep blocks of at most 64 bytes"), bw.log_tail()
    # The environment the process was (re-)executed with. (glibc's start-up writes a NUL into the
    # variable where its tunables are separated, so match the parts.)
    environ = environ_of(bw.pid)
    assert b"GLIBC_TUNABLES=glibc.malloc.perturb=0" in environ, environ
    assert b"glibc.malloc.tcache_max=64" in environ, environ
    with open(f"/proc/{bw.pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[1] == b"run"
    # The process keeps its name (re-executing /proc/self/exe alone would name it "exe"): ps, top, pgrep
    # and pidof find it as before.
    with open(f"/proc/{bw.pid}/comm") as f:
        assert f.read().strip() == "breakwater"
    assert bw.log().count("engine generation 1 loaded") == 1, bw.log_tail()

    env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.tcache_count=2")
    other = breakwater("--signatures", test_sigs, env=env)
    assert other.wait_log("engine generation 1 loaded"), other.log_tail()
    assert "per-thread caches" not in other.log(), other.log_tail()
    environ = environ_of(other.pid)
    assert b"tcache_max" not in environ and b"BREAKWATER_REEXECUTED" not in environ, environ
