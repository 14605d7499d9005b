"""Fixtures for Breakwater's integration tests with the real peers.

Every server a test starts listens on 127.0.0.1 (a free, locked port) or a unix socket in
the test's own directory, and every fixture stops what it started, by PID.

A needed binary that is absent skips the tests that need it, with the reason, unless
BREAKWATER_REQUIRE_PEERS=1 (set by scripts/integration-tests.sh, so CI fails instead).
BREAKWATER_BIN names the binary under test (default .build/debug/breakwater).
BW_KEEP_TMP=1 keeps the temporary directories (logs, Postfix instances) for a look.
"""
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import mail  # noqa: E402
from harness.breakwater import BreakwaterDaemon, breakwater_binary  # noqa: E402
from harness.postfix import POSTFIX, PostfixInstance, postfix_available  # noqa: E402
from harness.sink import SmtpSink  # noqa: E402

REQUIRE = os.environ.get("BREAKWATER_REQUIRE_PEERS") == "1"
MILTERTEST = shutil.which("miltertest") or "/usr/bin/miltertest"


def require(ok, reason):
    if ok:
        return
    if REQUIRE:
        pytest.fail(f"{reason} (BREAKWATER_REQUIRE_PEERS=1)", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is not None and rep.failed


@pytest.fixture(scope="session")
def bw_binary():
    path = breakwater_binary()
    require(os.access(path, os.X_OK), f"breakwater binary not found at {path} (build it, or set BREAKWATER_BIN)")
    return path


@pytest.fixture(scope="session")
def postfix_bin():
    require(postfix_available() and os.geteuid() == 0,
            f"a private Postfix needs {POSTFIX} and root (scripts/setup.sh --test installs it)")
    return POSTFIX


@pytest.fixture(scope="session")
def miltertest_bin():
    require(os.access(MILTERTEST, os.X_OK), "miltertest not installed (scripts/setup.sh --test installs it)")
    return MILTERTEST


@pytest.fixture(scope="session")
def session_dir():
    """A directory for the whole session, traversable by the postfix user (mode 0755)."""
    d = tempfile.mkdtemp(prefix="bw-itest-")
    os.chmod(d, 0o755)
    yield d
    if os.environ.get("BW_KEEP_TMP") != "1":
        shutil.rmtree(d, ignore_errors=True)
    else:
        print(f"\nkept {d}")


@pytest.fixture(scope="session")
def crashlib(session_dir):
    """IntegrationTests/crashlib/crashlib.c built as a preloadable library: a test device that wraps
    libclamav's scan entry points (a crash on a marker, or a fixed delay in every scan with
    CRASHLIB_DELAY_MS). Nothing in the product knows of it."""
    cc = shutil.which("cc") or shutil.which("gcc")
    require(cc is not None, "no C compiler (cc) to build the crash device")
    out = os.path.join(session_dir, "crashlib.so")
    if not os.path.exists(out):
        subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", out,
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "crashlib", "crashlib.c"), "-ldl"],
                       check=True)
    return out


def slow_scans(crashlib, ms):
    """The environment for a daemon whose every scan takes `ms` longer (the crash device's delay):
    a slot holder whose duration does not depend on the machine's speed."""
    env = dict(os.environ)
    env["LD_PRELOAD"] = crashlib
    env["CRASHLIB_DELAY_MS"] = str(ms)
    return env


@pytest.fixture(scope="session")
def test_sigs(session_dir):
    """The tests' own signature directory: Test.EICAR and Test.Spam.MiniCooperWave."""
    return mail.write_signatures(os.path.join(session_dir, "sigs"))


_counter = [0]


def _subdir(base, name):
    _counter[0] += 1
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
    d = os.path.join(base, f"{_counter[0]:03d}-{safe}")
    os.makedirs(d)
    os.chmod(d, 0o755)
    return d


@pytest.fixture
def workdir(session_dir, request):
    return _subdir(session_dir, request.node.name)


class DaemonStarter:
    """Starts `breakwater run` instances and, at teardown, stops each by PID and checks
    that it exited 0 on SIGTERM within the timeout."""

    def __init__(self, binary, workdir):
        self.binary, self.workdir, self.daemons = binary, workdir, []

    def __call__(self, *args, socket="inet", name="breakwater", start_timeout=60.0, env=None):
        d = BreakwaterDaemon(self.binary, self.workdir, [str(a) for a in args], socket_kind=socket,
                             name=f"{name}{len(self.daemons) or ''}", env=env)
        self.daemons.append(d)
        return d.start(timeout=start_timeout)

    def stop_all(self, show_logs=False):
        problems = []
        live = [d for d in self.daemons if d.proc is not None]
        for d in live:  # all drain at once; libmilter takes a few seconds to stop each
            d.terminate()
        for d in live:
            rc = d.stop()
            if show_logs:
                print(f"\n--- {d.log_path} (tail) ---\n{d.log_tail(60)}")
            if d.killed:
                problems.append(f"{d.name} (pid {d.pid}) did not stop within 20 s of SIGTERM: killed\n{d.log_tail()}")
            elif rc != 0:
                problems.append(f"{d.name} (pid {d.pid}) exited {rc} on SIGTERM, expected 0\n{d.log_tail()}")
        return problems


@contextlib.contextmanager
def _daemon_starter(binary, workdir, request=None):
    starter = DaemonStarter(binary, workdir)
    try:
        yield starter
    finally:
        problems = starter.stop_all(show_logs=request is not None and _failed(request))
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def breakwater(bw_binary, workdir, request):
    """breakwater(*flags, socket="inet"|"unix") -> a started BreakwaterDaemon (stopped at teardown)."""
    with _daemon_starter(bw_binary, workdir, request) as s:
        yield s


@pytest.fixture(scope="module")
def module_breakwater(bw_binary, session_dir, request):
    with _daemon_starter(bw_binary, _subdir(session_dir, request.module.__name__)) as s:
        yield s


@pytest.fixture(scope="session")
def sink():
    """One SMTP sink on 127.0.0.1 for the session; tests find their messages by X-Test-Id."""
    with SmtpSink() as s:
        yield s


class PostfixStarter:
    def __init__(self, workdir, sink_port):
        self.workdir, self.sink_port, self.instances = workdir, sink_port, []

    def __call__(self, milters=None, settings=None):
        pf = PostfixInstance(self.workdir, self.sink_port, milters=milters, settings=settings,
                             name=f"postfix{len(self.instances)}")
        self.instances.append(pf)
        return pf.start()

    def stop_all(self):
        problems = []
        for pf in self.instances:
            killed = pf.stop()
            if killed:
                problems.append(f"Postfix in {pf.base} left processes that had to be killed: {killed}")
        return problems


@contextlib.contextmanager
def _postfix_starter(workdir, sink_port):
    starter = PostfixStarter(workdir, sink_port)
    try:
        yield starter
    finally:
        problems = starter.stop_all()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def postfix(postfix_bin, workdir, sink):
    """postfix(milters=..., settings={...}) -> a started PostfixInstance relaying to `sink`."""
    with _postfix_starter(workdir, sink.port) as s:
        yield s


@pytest.fixture(scope="module")
def module_postfix(postfix_bin, session_dir, sink, request):
    with _postfix_starter(_subdir(session_dir, request.module.__name__ + "-postfix"), sink.port) as s:
        yield s
