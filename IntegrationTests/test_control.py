"""The control socket of `breakwater run` against hostile or unprivileged local clients (issue 19).

- a client that is not root, not the daemon's user and not in the socket's group is refused by its
  credentials (SO_PEERCRED), even when the socket file's mode lets it connect, with a clear error and
  a log line that is rate-limited; a member of the socket's group (primary or supplementary) is served;
- many clients that connect and send nothing (or trickle a line) hold no slot: a normal
  `breakwater status` is answered at once meanwhile, and each silent client gets an error after the
  read deadline;
- every request argument is checked: a WAVES PROMOTED name with a control character, a name outside
  local-prefix, a malformed wave id, an unknown verb or an overlong request gets ERR, and the daemon
  goes on answering.

The tests run as root; unprivileged clients run under `setpriv` (util-linux) as nobody. The socket
lives in a directory of its own that nobody may traverse (the session directory is 0700).
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

import test_waves as tw
from conftest import require
from harness.wire import exchange

SETPRIV = shutil.which("setpriv")
NOBODY = 65534
TEST_GID = 4242  # a group nobody is in unless the test says so; SO_PEERGROUPS needs no group entry


@pytest.fixture
def control_dir():
    d = tempfile.mkdtemp(prefix="bw-control-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def request(path, data, timeout=15):
    """Sends raw bytes to the control socket, returns everything it answers (to EOF)."""
    return exchange(path, data, timeout=timeout)[0].decode("utf-8", "replace")


def wait_answering(path, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if request(path, b"PING\n", timeout=2).startswith("OK"):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no answer on {path}")


def as_user(bw_binary, *args, uid=NOBODY, gid=NOBODY, groups=None, timeout=30):
    """Runs the real client as another user (setpriv), returns the CompletedProcess."""
    require(SETPRIV is not None, "setpriv (util-linux) not installed")
    cmd = [SETPRIV, f"--reuid={uid}", f"--regid={gid}"]
    cmd += [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
    return subprocess.run(cmd + [bw_binary, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "HOME": "/"})


@pytest.fixture
def daemon(breakwater, test_sigs, control_dir):
    def start(*extra):
        path = os.path.join(control_dir, "control.sock")
        bw = breakwater("--signatures", test_sigs, "--control", path, *extra)
        wait_answering(path)
        return bw, path
    return start


def test_peer_not_root_not_daemon_user_not_in_group_is_refused(daemon, bw_binary):
    # Mode 0666: the file lets anyone connect; only the credentials check can refuse.
    bw, path = daemon("--control-mode", "0666")
    r = as_user(bw_binary, "status", "--control", path)
    assert r.returncode != 0, f"nobody was served:\n{r.stdout}"
    assert "permission denied" in r.stderr and "uid 65534" in r.stderr, r.stderr
    assert '"engine"' not in r.stdout and "generation" not in r.stdout, r.stdout
    bw.wait_log("control: refused uid 65534")
    # More refusals within a second: not one log line each.
    for _ in range(10):
        assert as_user(bw_binary, "status", "--control", path).returncode != 0
    time.sleep(1.1)
    assert as_user(bw_binary, "status", "--control", path).returncode != 0
    bw.wait_log("more refused")
    lines = [l for l in bw.log().splitlines() if "control: refused" in l]
    assert 2 <= len(lines) <= 6, f"12 refusals, {len(lines)} log lines: {lines}"
    # Root is still served.
    assert request(path, b"PING\n").startswith("OK breakwater")


def test_member_of_the_socket_group_is_served(daemon, bw_binary):
    bw, path = daemon("--control-mode", "0660")
    os.chown(path, -1, TEST_GID)
    for kw in ({"groups": [TEST_GID]}, {"gid": TEST_GID}):
        r = as_user(bw_binary, "status", "--json", "--control", path, **kw)
        assert r.returncode in (0, 1), f"{kw}: exited {r.returncode}: {r.stderr}"
        assert "signatures" in json.loads(r.stdout)["engine"], r.stdout
    # Not in the group: the file's mode already stops it (EACCES at connect), with a clear message.
    r = as_user(bw_binary, "status", "--control", path)
    assert r.returncode != 0 and "permission denied" in r.stderr, r.stderr


def test_silent_clients_do_not_hold_the_slots(daemon, bw_binary):
    bw, path = daemon()
    silent = []
    try:
        for i in range(100):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            if i % 2:
                s.sendall(b"STAT")  # a line that never ends
            silent.append(s)
        time.sleep(0.3)
        for _ in range(3):
            t0 = time.monotonic()
            r = subprocess.run([bw_binary, "status", "--json", "--control", path], capture_output=True, text=True,
                               timeout=30, stdin=subprocess.DEVNULL)
            took = time.monotonic() - t0
            assert r.returncode in (0, 1), f"status exited {r.returncode} with 100 silent clients: {r.stderr}"
            assert "signatures" in json.loads(r.stdout)["engine"]
            assert took < 3, f"status took {took:.1f} s with 100 silent clients"
        # The newest silent clients are closed with an error after the read deadline (5 s), the
        # oldest ones earlier, to make room.
        last = silent[-1]
        last.settimeout(15)
        t0 = time.monotonic()
        answer = last.recv(4096).decode()
        assert answer.startswith("ERR no request line within 5 s"), answer
        assert time.monotonic() - t0 < 7
        first = silent[0]
        first.settimeout(1)
        assert first.recv(4096).decode().startswith("ERR no request line")
    finally:
        for s in silent:
            s.close()
    assert request(path, b"PING\n").startswith("OK breakwater")


def make_wave(bw):
    """Sends a small wave (wave-threshold 3) and returns its id."""
    gen = tw.Generator(7)
    ids = set()
    for i in range(12):
        raw, sender, rcpt, ip, _ = gen.wave(i)
        wid = tw.wave_header(tw.send(bw, raw, sender, rcpt, f"203.0.{i + 1}.7"))
        if wid:
            ids.add(wid)
    assert len(ids) == 1, f"expected one wave, got {ids}\n{bw.log_tail()}"
    return ids.pop()


def test_request_arguments_are_checked(daemon, test_sigs):
    bw, path = daemon("--wave-threshold", "3", "--wave-min-sources", "0")
    wid = make_wave(bw)
    bad = [
        (f"WAVES PROMOTED {wid} Breakwater.Local.X\x1b[2J\n", "control character (\\x1b)"),
        (f"WAVES PROMOTED {wid} Breakwater.Local.X\u009b2J\n", "control character (\\x9b)"),
        (f"WAVES PROMOTED {wid} Breakwater.Local.X\tY\n", "control character (\\x09)"),
        (f"WAVES PROMOTED {wid} Other.Prefix.Name\n", "does not start with Breakwater.Local."),
        (f"WAVES PROMOTED {wid} Breakwater.Local.a;b\n", "contains"),
        (f"WAVES PROMOTED {wid} Breakwater.Local.{'x' * 200}\n", "longer than 128"),
        ("WAVES PROMOTED ../../etc Breakwater.Local.Good\n", "is not a wave id"),
        ("WAVES SUGGEST w\x1b]0;x\x07\n", "control character"),
        ("WAVES SUGGEST zz\n", "is not a wave id"),
        ("FROBNICATE\n", "unknown request 'FROBNICATE'"),
        ("ST4TUS\n", "unknown request"),
        ("STATUS " + "x" * 2000 + "\n", "longer than 1024 bytes"),
        ("PING " + "x" * 5000 + "\n", "request too long"),
        ("\n", "empty request"),
    ]
    for line, expected in bad:
        answer = request(path, line.encode())
        assert answer.startswith("ERR ") and expected in answer, f"{line[:80]!r}: {answer[:300]!r}"
        assert "\x1b" not in answer and "\x9b" not in answer, answer
    assert request(path, b"\xff\xfe PING\n").startswith("ERR the request is not a line of UTF-8")
    # Nothing of the refused names was recorded; a good name is.
    listed = json.loads(request(path, b"WAVES JSON\n").split("\n", 1)[1])
    assert [w.get("promoted_as") for w in listed if w["id"] == wid] in ([None], [""]), listed
    assert request(path, f"WAVES PROMOTED {wid} Breakwater.Local.Wave.Good\n".encode()).startswith("OK")
    assert "Breakwater.Local.Wave.Good" in request(path, b"WAVES JSON\n")
    assert request(path, b"PING\n").startswith("OK breakwater")
    assert "Fatal error" not in bw.log()
