"""A private Sendmail for a test, in a small Debian root of its own.

Debian's `sendmail` packages conflict with `postfix`, which the other tests need on this machine, so
Sendmail runs in a Debian 12 root made with debootstrap (only Debian's archive is needed):

    root = ensure_root()           # builds the root once (about a minute), later runs reuse it
    sm = SendmailInstance(base_dir, root, sink_port, milter="inet:PORT@127.0.0.1")
    sm.start(); sm.send(...); sm.run("mailq", "-qQ"); sm.stop()

The root is cached in ROOT (BREAKWATER_SENDMAIL_ROOT overrides it) and never written to: each
instance, in a mount namespace of its own (`unshare -m`, so nothing is mounted on the host), mounts
it read-only as the lower layer of an overlay whose writes (its sendmail.cf, queues) go to a tmpfs
(an upper layer on the host's disk would fail where that disk is itself an overlay, as in a
container), and runs `sendmail -bD` chrooted there. The instance's files are staged in its
directory and copied into that tmpfs; files inside are read with sm.read("/path"). The network namespace is
the host's: Sendmail listens on a free loopback port, reaches Breakwater on the host over loopback
(or a unix socket bind-mounted into the root) and relays everything to the test's sink.

sendmail.cf is built with m4 from an .mc (MC below) whose milter line is the one the README gives:
INPUT_MAIL_FILTER(`breakwater', `S=..., F=T, T=S:30s;R:60s;E:5m'). Sendmail logs through syslog:
the instance binds the root's /dev/log to a datagram socket it reads (sm.log()).

Stop: SIGTERM to the daemon, then SIGKILL (by PID) to any process it left; the namespace, and
with it every mount, goes with its last process.
"""
import fcntl
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

from . import procs, smtp
from .ports import free_port, release_port

SUITE = "bookworm"
# sendmail-bin: the MTA and MSP; sendmail-cf: the m4 files that build sendmail.cf; sasl2-bin and
# libsasl2-modules: saslpasswd2 and the PLAIN mechanism for SMTP AUTH.
PACKAGES = ("sendmail-bin", "sendmail-cf", "m4", "sasl2-bin", "libsasl2-modules")
ROOT = os.environ.get("BREAKWATER_SENDMAIL_ROOT", f"/var/cache/breakwater-test/sendmail-{SUITE}")
STAMP = ".breakwater-test-root"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

AUTH_USER, AUTH_PASSWORD = "tester", "bw-test-secret"
HOSTNAME = "mx.breakwater.test"


def tools_available():
    """The host tools an instance needs (root, debootstrap for the first build, unshare, nsenter)."""
    missing = [t for t in ("unshare", "nsenter", "chroot", "mount") if not shutil.which(t)]
    if not os.path.exists(os.path.join(ROOT, STAMP)) and not shutil.which("debootstrap"):
        missing.append("debootstrap")
    return missing


def debian_mirror():
    """The Debian archive this machine's apt uses for SUITE (BREAKWATER_DEBIAN_MIRROR overrides it)."""
    if os.environ.get("BREAKWATER_DEBIAN_MIRROR"):
        return os.environ["BREAKWATER_DEBIAN_MIRROR"]
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        try:
            with open(path) as f:
                blocks = f.read().split("\n\n")
        except OSError:
            continue
        for block in blocks:
            fields = {}
            for line in block.splitlines():
                if line and not line.startswith(("#", " ", "\t")) and ":" in line:
                    k, _, v = line.partition(":")
                    fields[k.strip().lower()] = v.split()
            if ("deb" in fields.get("types", []) and SUITE in fields.get("suites", [])
                    and fields.get("enabled", ["yes"]) != ["no"] and fields.get("uris")):
                return fields["uris"][0]
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    return DEFAULT_MIRROR


def _stamp_text():
    return f"suite={SUITE} packages={','.join(PACKAGES)}\n"


def ensure_root(root=ROOT, report=None):
    """The Debian root, built with debootstrap if it is missing or was built for another package
    list. Returns (root, seconds the build took, or None when the cached root was used). A lock
    file keeps two test sessions from building it at once."""
    os.makedirs(os.path.dirname(root), exist_ok=True)
    with open(root + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(os.path.join(root, STAMP)) as f:
                if f.read() == _stamp_text():
                    return root, None
        except OSError:
            pass
        t0 = time.monotonic()
        tmp = root + ".new"
        shutil.rmtree(tmp, ignore_errors=True)
        mirror = debian_mirror()
        if report:
            report(f"building the Sendmail test root {root} with debootstrap from {mirror} (once)")
        # In a mount namespace of its own: what debootstrap mounts in the new root (proc, sys, and
        # in some environments the host's /dev) goes away with it, even when it is interrupted, so
        # removing a half-built root never reaches through a mount into the host.
        cmd = ["unshare", "--mount", "--propagation", "private", "debootstrap", "--variant=minbase",
               f"--include={','.join(PACKAGES)}", SUITE, tmp, mirror]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           env={"PATH": PATH, "LANG": "C.UTF-8"})
        if r.returncode != 0:
            log = ""
            try:
                with open(os.path.join(tmp, "debootstrap", "debootstrap.log"), errors="replace") as f:
                    log = f.read()[-4000:]
            except OSError:
                pass
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-3000:]}{r.stderr[-3000:]}{log}")
        # The downloaded packages are not needed any more (about 60 MB).
        for deb in glob.glob(os.path.join(tmp, "var/cache/apt/archives/*.deb")):
            os.unlink(deb)
        with open(os.path.join(tmp, STAMP), "w") as f:
            f.write(_stamp_text())
        shutil.rmtree(root, ignore_errors=True)
        os.rename(tmp, root)
        return root, time.monotonic() - t0


# The MTA's configuration: Debian's own (OSTYPE debian, DOMAIN debian-mta) with what a test instance
# needs on top: a loopback port, no DNS, every message relayed to the sink, AUTH PLAIN against a
# sasldb, no load-average throttling (the test machines are shared), and the milter line.
MC = """\
divert(-1)dnl
divert(0)dnl
define(`_USE_ETC_MAIL_')dnl
include(`/usr/share/sendmail/cf/m4/cf.m4')dnl
VERSIONID(`Breakwater integration test')dnl
OSTYPE(`debian')dnl
DOMAIN(`debian-mta')dnl
undefine(`confHOST_STATUS_DIRECTORY')dnl
define(`confDOMAIN_NAME', `{hostname}')dnl
define(`confDONT_PROBE_INTERFACES', `true')dnl
define(`confTO_IDENT', `0')dnl
define(`confQUEUE_LA', `1000')dnl
define(`confREFUSE_LA', `1000')dnl
define(`confDELAY_LA', `0')dnl
define(`confPRIVACY_FLAGS', `authwarnings')dnl
define(`confAUTH_MECHANISMS', `PLAIN LOGIN')dnl
TRUST_AUTH_MECH(`PLAIN LOGIN')dnl
define(`SMART_HOST', `relay:[127.0.0.1]')dnl
define(`RELAY_MAILER_ARGS', `TCP $h {sink_port}')dnl
FEATURE(`nocanonify')dnl
FEATURE(`accept_unresolvable_domains')dnl
FEATURE(`no_default_msa')dnl
DAEMON_OPTIONS(`Family=inet, Name=MTA-v4, Port={port}, Addr=127.0.0.1')dnl
{milter}dnl
MAILER(`local')dnl
MAILER(`smtp')dnl
"""

# The MSP (mail submitted with the sendmail command inside the root): Debian's, handing everything
# to this instance's MTA port. On a 4xx it keeps the message in its queue (/var/spool/mqueue-client)
# until a queue run (`sendmail -Ac -q`, Debian's MSP cron job) delivers it. As for the MTA, no
# load-average throttling: on a busy shared machine it would queue every message at once.
SUBMIT_MC = """\
divert(-1)dnl
divert(0)dnl
define(`_USE_ETC_MAIL_')dnl
include(`/usr/share/sendmail/cf/m4/cf.m4')dnl
VERSIONID(`Breakwater integration test MSP')dnl
OSTYPE(`debian')dnl
DOMAIN(`debian-msp')dnl
define(`confDOMAIN_NAME', `{hostname}')dnl
define(`confDONT_PROBE_INTERFACES', `true')dnl
define(`confTO_IDENT', `0')dnl
define(`confQUEUE_LA', `1000')dnl
define(`confREFUSE_LA', `1000')dnl
define(`confDELAY_LA', `0')dnl
define(`RELAY_MAILER_ARGS', `TCP $h {port}')dnl
FEATURE(`msp', `[127.0.0.1]')dnl
"""


def milter_line(spec, flags="T", timeouts="S:30s;R:60s;E:5m"):
    """The .mc line for Breakwater, as the README gives it (spec in Sendmail's S= syntax)."""
    return f"INPUT_MAIL_FILTER(`breakwater', `S={spec}, F={flags}, T={timeouts}')"


# Runs in the new mount namespace: overlay, /proc, /dev/log, bind mounts, the .cf files, the daemon.
START = r"""
set -eu
root=$1 staged=$2 rw=$3 merged=$4 logsock=$5
shift 5
mount -t tmpfs -o mode=0755 breakwater-test "$rw"
mkdir "$rw/upper" "$rw/work"
cp -a "$staged/." "$rw/upper/"
mount -t overlay overlay -o "lowerdir=$root,upperdir=$rw/upper,workdir=$rw/work" "$merged"
mount -t proc proc "$merged/proc"
mount --bind "$logsock" "$merged/dev/log"
while [ $# -gt 1 ]; do
  mount --bind "$1" "$merged$2"
  shift 2
done
chroot "$merged" /bin/sh -euc '
  cd /etc/mail
  m4 breakwater-test.mc > sendmail.cf
  m4 breakwater-submit.mc > submit.cf
  mkdir -p /run/sendmail/mta /run/sendmail/msp
  chown smmsp:smmsp /run/sendmail/msp
  printf "%s" "$1" | saslpasswd2 -p -c -u "$2" "$3"
  chmod 600 /etc/sasldb2
  newaliases
' sh "$AUTH_PASSWORD" "$HOSTNAME" "$AUTH_USER"
exec chroot "$merged" /usr/sbin/sendmail -bD -C/etc/mail/sendmail.cf
"""


class SyslogCollector(threading.Thread):
    """Reads syslog datagrams from a unix socket (the root's /dev/log) into a list of lines."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.lines = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.settimeout(0.2)
        self.stopping = False

    def run(self):
        while not self.stopping:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            # "<PRI>Mmm dd hh:mm:ss tag[pid]: text": the priority goes, the rest is kept.
            line = re.sub(r"^<\d+>", "", data.decode(errors="replace")).rstrip("\n")
            with self.lock:
                self.lines.append(line)

    def text(self):
        with self.lock:
            return "\n".join(self.lines)

    def close(self):
        self.stopping = True
        self.join(2)
        self.sock.close()


class SendmailError(RuntimeError):
    pass


class SendmailInstance:
    def __init__(self, base_dir, root, sink_port, milter=None, milter_flags="T", milter_timeouts="S:30s;R:60s;E:5m",
                 binds=(), name="sendmail"):
        """milter: Breakwater's socket in Sendmail's S= syntax (inet:PORT@127.0.0.1, or local:PATH
        with PATH inside the root, see binds); None: no milter. binds: (host directory, directory in
        the root) pairs mounted into the root, e.g. Breakwater's unix socket directory."""
        self.base = os.path.join(base_dir, name)
        self.root = root
        self.staged = os.path.join(self.base, "staged")
        self.rw = os.path.join(self.base, "rw")
        self.merged = os.path.join(self.base, "merged")
        self.log_socket = os.path.join(self.base, "log.sock")
        self.console = os.path.join(self.base, "console.log")
        self.sink_port = sink_port
        self.milter = milter
        self.milter_flags = milter_flags
        self.milter_timeouts = milter_timeouts
        self.binds = list(binds)
        self.port = None
        self.proc = None
        self.syslog = None

    # --- configuration -------------------------------------------------------------
    def mc(self):
        milter = milter_line(self.milter, self.milter_flags, self.milter_timeouts) if self.milter else "dnl no milter"
        return MC.format(hostname=HOSTNAME, sink_port=self.sink_port, port=self.port, milter=milter)

    def _write(self, inside, text, mode=0o644):
        path = os.path.join(self.staged, inside.lstrip("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)

    def write_config(self):
        for d in (self.staged, self.rw, self.merged):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.base, 0o755)
        self._write("/etc/mail/breakwater-test.mc", self.mc())
        self._write("/etc/mail/breakwater-submit.mc", SUBMIT_MC.format(hostname=HOSTNAME, port=self.port))
        # No DNS anywhere: names come from /etc/hosts only.
        self._write("/etc/mail/service.switch", "passwd\tfiles\nhosts\tfiles\naliases\tfiles\n")
        self._write("/etc/hosts", f"127.0.0.1\tlocalhost {HOSTNAME}\n")
        self._write("/etc/resolv.conf", "")
        self._write("/etc/mail/local-host-names", f"{HOSTNAME}\n")
        # SMTP AUTH: Cyrus SASL's PLAIN and LOGIN against /etc/sasldb2 (made at start).
        self._write("/etc/sasl2/Sendmail.conf",
                    "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n")
        self._write("/dev/log", "")
        for _host, inside in self.binds:
            os.makedirs(os.path.join(self.staged, inside.lstrip("/")), exist_ok=True)

    # --- lifecycle ---------------------------------------------------------------
    def start(self, timeout=60):
        self.port = free_port()
        self.write_config()
        self.syslog = SyslogCollector(self.log_socket)
        self.syslog.start()
        args = [self.root, self.staged, self.rw, self.merged, self.log_socket]
        for host, inside in self.binds:
            args += [host, inside]
        env = {"PATH": PATH, "LANG": "C", "AUTH_USER": AUTH_USER, "AUTH_PASSWORD": AUTH_PASSWORD,
               "HOSTNAME": HOSTNAME}
        self._console = open(self.console, "ab")
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", START, "sh", *args],
                                     stdin=subprocess.DEVNULL, stdout=self._console, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise SendmailError(f"sendmail exited {self.proc.returncode} before listening:\n{self.diagnostics()}")
            if procs.tcp_listening(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise SendmailError(
            f"sendmail did not listen on 127.0.0.1:{self.port} within {timeout}s:\n{self.diagnostics()}")

    def _descendants(self):
        out, todo = [], [self.proc.pid]
        while todo:
            kids = procs.children(todo.pop())
            out += kids
            todo += kids
        return out

    def stop(self):
        """Stops the daemon and whatever it started; returns the PIDs that had to be killed."""
        killed = []
        if self.proc is not None:
            kids = self._descendants()
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
                    killed.append(self.proc.pid)
            for pid in kids:
                if not procs.wait_gone(pid, 5):
                    procs.kill(pid)
                    killed.append(pid)
            self._console.close()
        if self.syslog is not None:
            self.syslog.close()
            self.syslog = None
        if self.port:
            release_port(self.port)
        return killed

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- use -----------------------------------------------------------------------
    def run(self, *cmd, input=None, timeout=60, check=True):
        """Runs a command inside the root (the daemon's mount namespace and root directory)."""
        # Text in and out (undecodable bytes replaced: queue files hold some), or bytes in and out.
        text = {"errors": "replace"} if input is None or isinstance(input, str) else {}
        r = subprocess.run(["nsenter", "-t", str(self.proc.pid), "--mount", "--root", "--wd=/", *cmd],
                           input=input, capture_output=True, timeout=timeout, env={"PATH": PATH, "LANG": "C"},
                           **text)
        if check and r.returncode != 0:
            raise SendmailError(f"{' '.join(cmd)} exited {r.returncode} in the root:\n{r.stdout}{r.stderr}")
        return r

    def read(self, inside):
        """A file inside the root (its text), or None when it does not exist."""
        r = self.run("cat", "--", inside, check=False)
        return r.stdout if r.returncode == 0 else None

    def log(self):
        return self.syslog.text() if self.syslog else ""

    def console_log(self):
        try:
            with open(self.console, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def diagnostics(self, lines=40):
        return (f"--- console ---\n{self.console_log()[-3000:]}\n--- syslog (tail) ---\n"
                + "\n".join(self.log().splitlines()[-lines:]))

    def wait_log(self, pattern, timeout=15.0):
        """The first syslog line matching the regular expression `pattern` (waits for it), or None."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log().splitlines():
                if re.search(pattern, line):
                    return line
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def session(self, timeout=120):
        return smtp.session(self.port, timeout)

    def send(self, data, sender="sender@example.org", rcpts=("user@dest.example",), timeout=120, login=None):
        """Sends one message over SMTP (after AUTH when login=(user, password)); returns the
        SmtpResult of the last stage reached."""
        with self.session(timeout) as s:
            if login:
                s.login(*login)
            return self.transaction(s, data, sender, rcpts)

    transaction = staticmethod(smtp.transaction)

    def submit(self, data, rcpts=("user@dest.example",), sender="sender@example.org"):
        """Submits a message with the sendmail command inside the root (the MSP, submit.cf), which
        hands it to this instance's MTA at once (-odi) and queues it on a 4xx."""
        return self.run("/usr/sbin/sendmail", "-odi", "-oi", f"-f{sender}", "--", *rcpts, input=data, check=False)

    def queue_files(self, queue="/var/spool/mqueue"):
        """The names of the files in one of the root's queue directories."""
        return sorted(self.run("ls", "-A", "--", queue).stdout.split())
