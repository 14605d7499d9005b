"""`breakwater signatures add|list|remove|test`, `reload`, `status` and the control socket,
as ops use them: the real binary, real libclamav, a real daemon where one is needed.

- add refuses a signature that fires on known-good mail (listing the messages), a name
  outside the prefix, a duplicate name, text with a newline, a regex libclamav cannot
  compile; a refusal changes no file. remove of an unknown name exits non-zero and says so.
- with no daemon running, add and remove still work and say so; list shows author, time
  and comment; test shows every match with its file; concurrent adds lose nothing.
- the control socket: the documented requests, bounded and hostile requests, its mode,
  a stale socket left by a killed daemon, and clear start-up errors.
"""
import json
import os
import socket
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import mail
from harness.milterclient import run_session
from harness.ports import free_port, release_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAM = os.path.join(REPO, "Signatures", "ham")


def cli(binary, *args, timeout=120):
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


class Ops:
    """The ops commands pointed at a test's own directories (no daemon unless one is started)."""

    def __init__(self, binary, workdir, sigs):
        self.binary, self.sigs = binary, sigs
        self.ops = os.path.join(workdir, "ops")
        os.makedirs(self.ops)
        self.control = os.path.join(workdir, "no-daemon.sock")

    def flags(self):
        return ["--signatures", self.sigs, "--local-signatures", self.ops, "--control", self.control]

    def __call__(self, *args):
        if args and args[0] in ("reload", "status"):
            return cli(self.binary, *args, "--control", self.control)
        return cli(self.binary, "signatures", *args, *self.flags())

    def files(self):
        return {f: open(os.path.join(self.ops, f)).read() for f in sorted(os.listdir(self.ops)) if not f.startswith(".")}


@pytest.fixture
def ops(bw_binary, workdir, test_sigs):
    return Ops(bw_binary, workdir, test_sigs)


def message(path, body, subject="hello"):
    with open(path, "wb") as f:
        f.write(f"From: a@example.org\r\nTo: b@example.net\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode())
    return path


def test_add_refuses_and_changes_nothing(ops):
    r = ops("add", "Breakwater.Local.Spam.Ok", "--text", "zephyr cruiser e-bike", "--ignore-case", "--comment", "first")
    assert r.returncode == 0, r.stderr
    assert "added Breakwater.Local.Spam.Ok" in r.stdout
    assert "no daemon is running" in r.stdout, r.stdout
    before = ops.files()
    assert list(before) == ["breakwater-local.ldb"]

    cases = [
        # fires on known-good mail: refused, with the messages named
        (["add", "Breakwater.Local.Spam.Meeting", "--text", "meeting", "--check", HAM], "fires on"),
        # the name is outside the prefix
        (["add", "Acme.Spam.Thing", "--text", "some wave text"], "does not start with Breakwater.Local."),
        # a duplicate name
        (["add", "Breakwater.Local.Spam.Ok", "--text", "another wave text"], "already exists in " + ops.ops),
        # a newline in the text
        (["add", "Breakwater.Local.Spam.NL", "--text", "mini\ncooper"], "line break"),
        # a colon or newline where it would end a field, in the name
        (["add", "Breakwater.Local.Spam:X", "--text", "some wave text"], "':'"),
        # libclamav cannot compile it
        (["add", "Breakwater.Local.Spam.Rx", "--regex", "claim (your prize"], "libclamav refuses the new set"),
        # nothing literal to trigger on
        (["add", "Breakwater.Local.Spam.Rx", "--regex", "(gift|prize)\\s+(card|box)"], "--trigger"),
        # a comment on two lines
        (["add", "Breakwater.Local.Spam.C", "--text", "some wave text", "--comment", "a\nb"], "one line"),
        # an empty file as a hash
        (["add", "Breakwater.Local.Spam.H", "--sha256-of", "/dev/null"], "not a regular file"),
    ]
    for args, expect in cases:
        r = ops(*args)
        assert r.returncode == 1, f"{args}: exited {r.returncode}\n{r.stdout}{r.stderr}"
        assert expect in r.stderr, f"{args}: {r.stderr}"
        assert ops.files() == before, f"{args} changed the ops directory"
    r = ops("add", "Breakwater.Local.Spam.Meeting", "--text", "meeting", "--check", HAM)
    fired = [l.split("fires on ", 1)[1] for l in r.stderr.splitlines() if l.strip().startswith("fires on")]
    assert fired and all(f.startswith(HAM + "/") for f in fired), r.stderr

    # Usage errors (ArgumentParser's own exit status).
    for args in (["add", "Breakwater.Local.X"], ["add", "Breakwater.Local.X", "--text", "abcd", "--hex", "abcd"],
                 ["add", "Breakwater.Local.X", "--hex", "abcdef", "--ignore-case"]):
        r = ops(*args)
        assert r.returncode not in (0, 1), (args, r.returncode, r.stderr)
        assert ops.files() == before

    # --force adds it anyway, and still lists where it fires.
    r = ops("add", "Breakwater.Local.Spam.Meeting", "--text", "meeting", "--check", HAM, "--force")
    assert r.returncode == 0 and "added anyway" in r.stderr and "fires on " + HAM in r.stderr, r.stderr


def test_remove_unknown_and_foreign_names(ops):
    r = ops("remove", "Breakwater.Local.Nope")
    assert r.returncode == 1
    assert "no local signature named Breakwater.Local.Nope" in r.stderr, r.stderr
    with open(os.path.join(ops.ops, "hand.ndb"), "w") as f:
        f.write("Breakwater.Local.Hand:0:*:0a0b0c0d0e\n")
    r = ops("remove", "Breakwater.Local.Hand")
    assert r.returncode == 1 and "did not write" in r.stderr and "hand.ndb" in r.stderr, r.stderr
    r = ops("remove", mail.EICAR_SIG)
    assert r.returncode == 1 and "never changes that set" in r.stderr, r.stderr


def test_add_list_test_remove_without_a_daemon(ops, workdir):
    att = os.path.join(workdir, "invoice.pdf.exe")
    with open(att, "wb") as f:
        f.write(b"MZ pretend dropper " + os.urandom(32))
    steps = [
        ("Breakwater.Local.Spam.Zephyr", ["--text", "zephyr cruiser e-bike", "--ignore-case"]),
        ("Breakwater.Local.Spam.Exact", ["--text", "Gift Card"]),
        ("Breakwater.Local.Spam.Rx", ["--regex", "claim (your|the) prize now", "--ignore-case"]),
        ("Breakwater.Local.Malware.Bytes", ["--hex", "cafe??babe"]),
        ("Breakwater.Local.Malware.Invoice", ["--sha256-of", att]),
    ]
    for name, args in steps:
        r = ops("add", name, *args, "--comment", f"ticket 42: {name}")
        assert r.returncode == 0, (name, r.stderr)
    assert set(ops.files()) == {"breakwater-local.ldb", "breakwater-local.ndb", "breakwater-local.hsb"}

    r = ops("list", "--local")
    assert r.returncode == 0
    for name, _ in steps:
        line = next(l for l in r.stdout.splitlines() if l.startswith(name + " "))
        assert "local" in line and f"ticket 42: {name}" in line and " by " in line, line
    listed = [json.loads(l) for l in ops("list", "--json").stdout.splitlines()]
    names = {e["name"]: e for e in listed}
    assert names["Breakwater.Local.Spam.Zephyr"]["type"] == "ldb"
    assert names["Breakwater.Local.Spam.Zephyr"]["pattern"] == "text (ignore case): zephyr cruiser e-bike"
    assert names["Breakwater.Local.Malware.Invoice"]["type"] == "hsb"
    assert names[mail.EICAR_SIG]["set"] == "shipped" and "author" not in names[mail.EICAR_SIG]
    assert os.access(os.path.join(ops.ops, "breakwater-local.ldb"), os.R_OK)
    assert stat.S_IMODE(os.stat(os.path.join(ops.ops, "breakwater-local.ldb")).st_mode) == 0o644

    # test: every match of each message, with the file and line it comes from.
    spam = message(os.path.join(workdir, "spam.eml"), "Your ZEPHYR Cruiser\r\n e-bike: claim the prize now! " + mail.EICAR.decode())
    ham = message(os.path.join(workdir, "ham.eml"), "the quarterly report is attached")
    r = ops("test", spam, ham)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert f"{ham}: no match" in out
    block = out.split(f"{spam}:", 1)[1].split(f"{ham}:", 1)[0]
    assert f"Breakwater.Local.Spam.Zephyr  {ops.ops}/breakwater-local.ldb:" in block, out
    assert f"Breakwater.Local.Spam.Rx  {ops.ops}/breakwater-local.ldb:" in block, out
    assert f"{mail.EICAR_SIG}  {ops.sigs}/test.ndb:1" in block, out
    assert "Breakwater.Local.Spam.Exact" not in block
    assert ops("test", ham).returncode == 0

    for name, _ in steps:
        r = ops("remove", name)
        assert r.returncode == 0 and f"removed {name}" in r.stdout and "no daemon is running" in r.stdout, r.stderr
    assert ops.files() == {}, "owned files with no signature left are removed"
    assert ops("test", spam).stdout.count("Breakwater.Local.") == 0


def test_concurrent_adds_lose_nothing(ops):
    names = [f"Breakwater.Local.Spam.Parallel{i}" for i in range(8)]
    with ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(lambda n: ops("add", n, "--text", f"parallel wave text {n[-1]}", "--ignore-case"), names))
    assert [r.returncode for r in results] == [0] * len(names), [r.stderr for r in results if r.returncode]
    listed = ops("list", "--local").stdout
    assert all(n in listed for n in names), listed
    m = message(os.path.join(ops.ops, "..", "parallel.eml"), "Parallel WAVE text 5")
    r = ops("test", m)
    assert r.returncode == 1 and "Breakwater.Local.Spam.Parallel5" in r.stdout, r.stdout + r.stderr


def test_reload_and_status_without_a_daemon(ops):
    r = ops("reload")
    assert r.returncode == 3 and "does not exist" in r.stderr, (r.returncode, r.stderr)
    r = ops("status")
    assert r.returncode == 3 and "not running" in r.stderr, (r.returncode, r.stderr)


# --- with a daemon ---------------------------------------------------------------------------

def control_of(bw):
    return os.path.join(bw.run_dir, "control.sock")


def request(path, data, timeout=10, eof=False):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    if len(path) > 100:  # sun_path is 108 bytes: go through the directory, as breakwater does
        fd = os.open(os.path.dirname(path), os.O_RDONLY)
        try:
            s.connect(f"/proc/self/fd/{fd}/{os.path.basename(path)}")
        finally:
            os.close(fd)
    else:
        s.connect(path)
    if data:
        s.sendall(data)
    if eof:
        s.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return out.decode("utf-8", "replace")


def test_add_and_remove_reload_the_running_daemon(breakwater, bw_binary, ops):
    bw = breakwater("--signatures", ops.sigs, "--local-signatures", ops.ops, "--self-check", "0")
    ops.control = control_of(bw)
    token = "bwopstoken" + mail.test_id()
    raw = f"From: a@example.org\r\nTo: b@example.net\r\nSubject: x\r\n\r\nthe {token} inside\r\n".encode()
    assert run_session(bw.milter_spec, raw, timeout=30).kind in ("accept", "continue")
    r = ops("add", "Breakwater.Local.Spam.Token", "--text", token)
    assert r.returncode == 0 and "loaded engine generation 2: 3 signatures" in r.stdout, r.stdout + r.stderr
    reply = run_session(bw.milter_spec, raw, timeout=30)
    assert reply.smtp_code == "550" and "Breakwater.Local.Spam.Token" in reply.text
    st = json.loads(ops("status", "--json").stdout)
    assert st["engine"]["generation"] == 2 and st["engine"]["signatures"] == 3, st
    assert ops.ops in st["engine"]["directories"]
    r = ops("remove", "Breakwater.Local.Spam.Token")
    assert r.returncode == 0 and "loaded engine generation 3: 2 signatures" in r.stdout, r.stdout + r.stderr
    assert run_session(bw.milter_spec, raw, timeout=30).kind in ("accept", "continue")
    # --no-reload only writes (self-check is off here): the daemon keeps generation 3 until asked.
    r = ops("add", "Breakwater.Local.Spam.Token2", "--text", token, "--no-reload")
    assert r.returncode == 0 and "loaded" not in r.stdout
    assert run_session(bw.milter_spec, raw, timeout=30).kind in ("accept", "continue")
    r = ops("reload")
    assert r.returncode == 0 and r.stdout.startswith("loaded engine generation 4: 3 signatures"), r.stdout
    assert run_session(bw.milter_spec, raw, timeout=30).smtp_code == "550"


def test_control_socket_protocol(breakwater, bw_binary, test_sigs):
    bw = breakwater("--signatures", test_sigs)
    path = control_of(bw)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    assert request(path, b"PING\n").startswith("OK breakwater ")
    assert request(path, b"ping", eof=True).startswith("OK breakwater "), "a request without its newline, then EOF"
    help_text = request(path, b"HELP\n")
    for verb in ("PING", "HELP", "STATUS", "RELOAD"):
        assert f"\n{verb}" in help_text, help_text
    head, body = request(path, b"STATUS\n").split("\n", 1)
    assert head == "OK"
    st = json.loads(body)
    for key in ("version", "libclamav", "uptime_seconds", "engine", "last_reload", "slots", "waiting", "memory",
                "counters", "tempfailed_by_cause"):
        assert key in st, key
    assert st["slots"]["total"] >= 1 and st["memory"]["budget_bytes"] > 0
    assert "generation 1" in request(path, b"STATUS TEXT\n")
    assert request(path, b"RELOAD\n").startswith("OK generation 2 signatures 2 ms ")
    # Hostile or broken requests get ERR and never take the daemon down.
    assert request(path, b"FROBNICATE now\n").startswith("ERR unknown request 'FROBNICATE now'")
    assert request(path, b"STATUS XML\n").startswith("ERR STATUS takes JSON or TEXT")
    assert request(path, b"A" * 10000).startswith("ERR request too long")
    assert request(path, b"", eof=True).startswith("ERR empty request")
    assert request(path, b"\xff\xfe\n").startswith("ERR the request is not a line of UTF-8")
    assert request(path, b"PI\0NG\n").startswith("ERR the request contains a control character (\\x00)")
    assert request(path, b"\n").startswith("ERR empty request")
    assert request(path, b"", timeout=15).startswith("ERR no request line within 5 s")
    # Idle connections hold no slot (issue 19: only a whole request line takes one of the 8 handler
    # threads); the next client is served at once.
    idle = []
    try:
        for _ in range(8):
            s = socket.socket(socket.AF_UNIX)
            fd = os.open(os.path.dirname(path), os.O_RDONLY)
            s.connect(f"/proc/self/fd/{fd}/{os.path.basename(path)}")
            os.close(fd)
            idle.append(s)
        time.sleep(0.5)
        t = time.monotonic()
        assert request(path, b"PING\n").startswith("OK breakwater")
        assert time.monotonic() - t < 2
    finally:
        for s in idle:
            s.close()
    time.sleep(0.5)
    assert request(path, b"PING\n").startswith("OK breakwater")
    assert bw.proc.poll() is None


def test_control_socket_start_up(bw_binary, workdir, test_sigs):
    """A stale socket left by a killed daemon is replaced; a missing directory, a file that is
    not a socket and a live daemon on the same path are clear errors."""
    def start(control, expect_exit=False):
        """(process, None) once it answers on `control`, or (None, (exit status, output)) when it
        exits (with expect_exit, only that is waited for: another daemon may answer on `control`)."""
        port = free_port()
        try:
            p = subprocess.Popen([bw_binary, "run", "--socket", f"inet:{port}@127.0.0.1", "--signatures", test_sigs,
                                  "--metrics", "", "--control", control, "--local-signatures", os.path.join(workdir, "none"),
                                  "--spool-directory", workdir],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and p.poll() is None:
                try:
                    if not expect_exit and request(control, b"PING\n", timeout=2).startswith("OK"):
                        return p, None
                except OSError:
                    pass
                time.sleep(0.05)
            if p.poll() is None:
                p.kill()
                p.wait()
                raise AssertionError("the daemon neither answered on its control socket nor exited")
            return None, (p.returncode, p.stdout.read())
        finally:
            release_port(port)

    def stop(p):
        os.kill(p.pid, 15)
        p.wait(30)

    rc, out = start(os.path.join(workdir, "missing-dir", "control.sock"))[1]
    assert rc == 1 and "missing-dir does not exist" in out and "RuntimeDirectory" in out, out

    not_socket = os.path.join(workdir, "file.sock")
    open(not_socket, "w").close()
    rc, out = start(not_socket)[1]
    assert rc == 1 and "is not a socket" in out, out

    stale = os.path.join(workdir, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()  # bound, never listened, left behind: as after a SIGKILL
    p, err = start(stale)
    assert err is None, err
    try:
        assert request(stale, b"PING\n").startswith("OK")
        rc, out = start(stale, expect_exit=True)[1]
        assert rc == 1 and "another daemon answers on it" in out, out
        assert request(stale, b"PING\n").startswith("OK"), "the second daemon took the socket away"
    finally:
        stop(p)
    assert not os.path.exists(stale), "the socket is removed at stop"
