"""Starts `breakwater run` for a test and stops it by PID.

    bw = BreakwaterDaemon(binary, workdir, ["--signatures", sigdir, "--workers", "2"])
    bw.start()            # free loopback port (or unix socket), waits until it listens
    bw.milter_spec        # "inet:PORT@127.0.0.1" (libmilter syntax, for the milter client and miltertest)
    bw.postfix_milter     # "inet:127.0.0.1:PORT" (Postfix syntax, for smtpd_milters)
    rc = bw.stop()        # SIGTERM, SIGKILL after a timeout; returns the exit status

stdout and stderr go to a log file (bw.log_path); bw.log() reads it.
"""
import os
import stat
import shutil
import signal
import subprocess
import time

from . import procs
from .ports import free_port, release_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def breakwater_binary():
    path = os.environ.get("BREAKWATER_BIN", ".build/debug/breakwater")
    if not os.path.isabs(path):
        path = os.path.join(REPO, path)
    return path


class BreakwaterError(RuntimeError):
    pass


class BreakwaterDaemon:
    def __init__(self, binary, workdir, args=(), socket_kind="inet", name="breakwater", env=None):
        self.binary = binary
        self.workdir = workdir
        self.args = list(args)
        self.socket_kind = socket_kind
        self.name = name
        self.env = env
        self.port = None
        self.socket_path = None
        self.proc = None
        self.run_dir = os.path.join(workdir, name)
        self.spool_dir = os.path.join(self.run_dir, "spool")
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.returncode = None
        self.killed = False

    @property
    def milter_spec(self):
        if self.socket_kind == "unix":
            return f"unix:{self.socket_path}"
        return f"inet:{self.port}@127.0.0.1"

    @property
    def postfix_milter(self):
        if self.socket_kind == "unix":
            return f"unix:{self.socket_path}"
        return f"inet:127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def hermetic_defaults(self):
        """Flags that keep several daemons on one machine apart and off the system's paths,
        unless the test set them itself: the control socket and spool in the test's directory,
        no metrics listener, no ops signature directory, and wave-action tag (see below)."""
        given = {a.split("=", 1)[0] for a in self.args if a.startswith("--")}
        out = []
        for flag, value in (("--control", os.path.join(self.run_dir, "control.sock")),
                            ("--metrics", ""),
                            # The tests that watch wave detection read its X-Breakwater-Wave header;
                            # the product's default is tempfail (test_incident.py, docs/incident.md).
                            ("--wave-action", "tag"),
                            ("--local-signatures", os.path.join(self.run_dir, "no-local-signatures")),
                            ("--spool-directory", self.spool_dir)):
            if flag not in given:
                out += [flag, value]
        return out

    def command(self):
        return [self.binary, "run", "--socket", self.milter_spec, *self.hermetic_defaults(), *self.args]

    def control_path(self):
        """The control socket the daemon was told to open ("" or None: none)."""
        cmd = self.command()
        i = len(cmd) - 1 - cmd[::-1].index("--control") if "--control" in cmd else None
        return cmd[i + 1] if i is not None and i + 1 < len(cmd) else None

    def listening(self):
        # The milter socket listens before the control socket is opened: a test that talks to the
        # control socket right after start() needs both.
        control = self.control_path()
        # (A socket file, not /proc/net/unix: a path too long for sun_path is bound by another name.)
        if control:
            try:
                if not stat.S_ISSOCK(os.stat(os.path.join(self.workdir, control)).st_mode):
                    return False
            except OSError:
                return False
        if self.socket_kind == "unix":
            return procs.unix_listening(self.socket_path)
        return procs.tcp_listening(self.port)

    def start(self, timeout=60.0):
        os.makedirs(self.run_dir, exist_ok=True)
        os.makedirs(self.spool_dir, exist_ok=True)
        if self.socket_kind == "unix":
            # As on a real system (/var/spool/postfix/breakwater): a directory of group postfix with
            # the setgid bit, so that the socket (created with umask 007) is usable by Postfix's smtpd.
            sock_dir = os.path.join(self.run_dir, "sock")
            os.makedirs(sock_dir, exist_ok=True)
            try:
                shutil.chown(sock_dir, group="postfix")
            except (LookupError, PermissionError):
                pass
            os.chmod(sock_dir, 0o2750)
            self.socket_path = os.path.join(sock_dir, "milter.sock")
        else:
            self.port = free_port()
        env = dict(os.environ if self.env is None else self.env)
        # One log file per daemon; the daemon logs to stderr.
        self._log = open(self.log_path, "ab")
        log_start = self._log.tell()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.workdir, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                self._cleanup()
                raise BreakwaterError(f"breakwater exited with {self.returncode} before listening: "
                                      f"{' '.join(self.command())}\n{self.log_tail()}")
            # libmilter listens before the daemon starts its services (control socket, metrics):
            # ready once it has logged "listening on", which comes after them.
            if self.listening() and ("--log-level" in self.args or self._logged_since(log_start, "] listening on ")):
                return self
            time.sleep(0.02)
        self.stop()
        raise BreakwaterError(f"breakwater did not listen on {self.milter_spec} within {timeout}s\n{self.log_tail()}")

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def terminate(self):
        """Sends SIGTERM (stop() then waits); lets several daemons drain at once."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout=20.0):
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit status (negative = signal)."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            if not getattr(self, "_terminated", False):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                self.proc.wait(10)
        self.returncode = self.proc.returncode
        self._cleanup()
        return self.returncode

    def _cleanup(self):
        self.proc = self.proc  # keep for pid inspection
        try:
            self._log.close()
        except Exception:
            pass
        if self.port:
            release_port(self.port)

    def log(self):
        return procs.read_log(self.log_path)

    def _logged_since(self, offset, text):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return text.encode() in f.read()
        except FileNotFoundError:
            return False

    def wait_log(self, text, timeout=10.0):
        """Waits until `text` appears in the log; returns the first line containing it, or None."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log().splitlines():
                if text in line:
                    return line
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def log_tail(self, lines=40):
        return "\n".join(self.log().splitlines()[-lines:])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
