"""The Debian package, installed on this machine and run the way its systemd unit runs it.

`make deb-test` builds out/breakwater_VERSION_ARCH.deb (`make deb`) and runs this module with
BREAKWATER_DEB_TEST=1; without that variable (as in `make test`, which does not build the package)
the module is skipped. It needs root: it installs, upgrades, removes and purges the package.

In order:
 1. lintian finds no error and no warning (what cannot be fixed is overridden, with a reason,
    in debian/breakwater.lintian-overrides);
 2. `dpkg -i` on a machine without the package (a leftover one is purged first): the system user,
    the conffile, the ops directory owned by the user, no Swift runtime in `ldd`, man pages that
    render without warnings, `systemd-analyze verify` on the installed unit;
 3. the installed unit's ExecStartPre and ExecStart run as systemd would without systemd: as
    User=/Group= with their supplementary groups (setpriv --init-groups), NoNewPrivileges, an empty
    capability bounding set, UMask=, a clean environment, cwd /, RuntimeDirectory=/StateDirectory=
    made as systemd makes them; the config is the conffile, edited to a free loopback port. Mail goes
    through a private Postfix: EICAR gets 550 naming the shipped signature, ham arrives with the
    scanned header; an ops signature written to /var/lib/breakwater/signatures fires only after
    SIGUSR2 (the unit's ExecReload), and the process survives it; SIGTERM ends it with status 0;
 4. the same over a unix socket in a setgid directory of group postfix inside Postfix's queue
    directory, as README.Debian tells admins to set up for a chrooted smtpd;
 4b. the unit under a real systemd: this machine's files (read-only, writes to a tmpfs overlay)
    booted by systemd-nspawn into breakwater.service alone, with a private network: all the
    sandboxing applies (checked in /proc: no capabilities, NoNewPrivs, seccomp); EICAR, ham, an ops
    signature after `systemctl reload`, `systemctl stop` with status 0, README.Debian's unix socket
    (the postfix user may connect, nobody may not), then the maintainer scripts with a live systemd:
    an upgrade restarts the service, `dpkg -r` stops it, `dpkg --purge` removes its state;
 5. upgrades over the installed package (same conffile; then a changed shipped conffile with
    --force-confold) keep the modified conffile and the ops signatures, and the upgraded program
    loads them;
 6. `dpkg -r` keeps the conffile and the ops signatures; `dpkg --purge` leaves no file or
    directory of the package, no conffile (nor .dpkg-dist), nothing owned by the user. The user
    itself stays, by design (README.Debian, debian/breakwater.postrm).
"""
import grp
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from harness import mail, procs
from harness.postfix import PostfixInstance
from harness.ports import free_port, release_port

pytestmark = pytest.mark.skipif(os.environ.get("BREAKWATER_DEB_TEST") != "1",
                                reason="package test: run `make deb-test` (builds the .deb, needs root)")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = "breakwater"
USER = "breakwater"
UNIT = "/lib/systemd/system/breakwater.service"
CONFFILE = "/etc/breakwater/breakwater.conf"
OPS_DIR = "/var/lib/breakwater/signatures"
SHIPPED_DIR = "/usr/share/breakwater/signatures"
RUN_DIR = "/run/breakwater"
# Where a trace of the package could be left; the checkout and /tmp (the tests' own files) are not.
SCAN_ROOTS = ["/etc", "/usr", "/var", "/run", "/srv"]


def run(cmd, check=True, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("stdin", subprocess.DEVNULL)
    r = subprocess.run(cmd, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def installed_version():
    r = run(["dpkg-query", "-W", "-f=${Status} ${Version}", PKG], check=False)
    if r.returncode != 0:
        return None
    status, _, version = r.stdout.rpartition(" ")
    return version if status.endswith("installed") and "config-files" not in status else None


def package_state():
    r = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", PKG], check=False)
    return r.stdout.strip() if r.returncode == 0 else "not-known"


def user_ids():
    try:
        pw = pwd.getpwnam(USER)
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        return None


# man-db's cache of formatted pages: its trigger may format the installed pages into it, and its own
# daily job expires them. It belongs to man-db, not to the package.
MAN_CACHE = "/var/cache/man/"


def traces():
    """Every path under SCAN_ROOTS that names the package or belongs to its user or group."""
    ids = user_ids()
    found = set()
    for root in SCAN_ROOTS:
        for d, dirs, files in os.walk(root):
            for name in dirs + files:
                p = os.path.join(d, name)
                if p.startswith(MAN_CACHE):
                    continue
                if "breakwater" in p:
                    found.add(p)
                    continue
                if ids:
                    try:
                        st = os.lstat(p)
                    except OSError:
                        continue
                    if st.st_uid == ids[0] or st.st_gid == ids[1]:
                        found.add(p)
    return found


def deb_path():
    if os.environ.get("BREAKWATER_DEB"):
        return os.environ["BREAKWATER_DEB"]
    version = run(["dpkg-parsechangelog", "-l", os.path.join(REPO, "debian/changelog"), "-S", "Version"]).stdout.strip()
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    return os.path.join(REPO, "out", f"{PKG}_{version}_{arch}.deb")


def parse_unit(path):
    """[Section] -> list of (key, value) in order (systemd allows a key more than once)."""
    sections, cur = {}, None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                cur = sections.setdefault(line.strip("[]"), [])
                continue
            k, _, v = line.partition("=")
            cur.append((k.strip(), v.strip()))
    return sections


def unit_value(unit, key, section="Service"):
    vals = [v for k, v in unit.get(section, []) if k == key]
    return vals[-1] if vals else None


def seconds(text):
    m = re.fullmatch(r"(\d+)(s|min)?", text)
    assert m, f"unexpected time span {text!r}"
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


def set_conf(text, key, value):
    """The conffile text with `key = value` set (one line, replacing an earlier test setting)."""
    lines = [l for l in text.splitlines() if not l.startswith(f"{key} = ")]
    return "\n".join(lines + [f"{key} = {value}"]) + "\n"


def write_conf(text):
    with open(CONFFILE, "w") as f:
        f.write(text)


class UnitProcess:
    """The installed unit's service, started as systemd would start it (see the module doc)."""

    def __init__(self, workdir, name):
        self.unit = parse_unit(UNIT)
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.proc = None

    def command(self, key):
        value = unit_value(self.unit, key)
        assert value, f"{UNIT} has no {key}="
        assert value[0] not in "@-:+!", f"{key}= has a prefix this emulation does not model: {value}"
        assert "%" not in value and "$" not in value, f"{key}= uses specifiers or variables: {value}"
        return shlex.split(value)

    def wrapper(self):
        """setpriv with the unit's identity and privilege settings."""
        u = self.unit
        assert unit_value(u, "User") == USER and unit_value(u, "Group") == USER
        assert unit_value(u, "NoNewPrivileges") == "yes"
        assert unit_value(u, "CapabilityBoundingSet") == "", "the unit should drop every capability"
        return ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", "--no-new-privs",
                "--bounding-set=-all", "--inh-caps=-all", "--"]

    def environment(self):
        pw = pwd.getpwnam(USER)
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "HOME": pw.pw_dir, "USER": USER, "LOGNAME": USER, "SHELL": pw.pw_shell,
               "RUNTIME_DIRECTORY": RUN_DIR, "STATE_DIRECTORY": "/var/lib/breakwater",
               "INVOCATION_ID": uuid.uuid4().hex}
        # Environment= lines (KEY=VALUE, space-separated, no quoting used in the unit).
        for k, v in self.unit.get("Service", []):
            if k == "Environment":
                assert '"' not in v and "$" not in v and "%" not in v, f"Environment= this emulation does not model: {v}"
                env.update(item.split("=", 1) for item in v.split())
        return env

    def umask(self):
        return int(unit_value(self.unit, "UMask") or "0022", 8)

    def make_directories(self):
        uid, gid = user_ids()
        for key, base in (("RuntimeDirectory", "/run"), ("StateDirectory", "/var/lib")):
            names = unit_value(self.unit, key)
            if not names:
                continue
            mode = int(unit_value(self.unit, key + "Mode") or "0755", 8)
            for name in names.split():  # e.g. StateDirectory=breakwater breakwater/spool
                path = os.path.join(base, name)
                os.makedirs(path, exist_ok=True)
                os.chown(path, uid, gid)
                os.chmod(path, mode)

    def start(self, ready, timeout=60):
        """Starts the service and waits until it is started as systemd sees it: for Type=notify, its
        READY=1 on $NOTIFY_SOCKET, after which `ready()` must hold at once; else until `ready()`."""
        self.make_directories()
        env = self.environment()
        notify = None
        if unit_value(self.unit, "Type") == "notify":
            notify_path = os.path.join(os.path.dirname(self.log_path), "notify.sock")
            if os.path.exists(notify_path):
                os.unlink(notify_path)
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            notify.bind(notify_path)
            os.chmod(notify_path, 0o777)
            notify.settimeout(0.05)
            env["NOTIFY_SOCKET"] = notify_path
        for pre in [v for k, v in self.unit["Service"] if k == "ExecStartPre"]:
            assert pre[0] not in "@-:+!" and "$" not in pre
            r = run(self.wrapper() + shlex.split(pre), check=False, env=env, cwd="/", umask=self.umask())
            assert r.returncode == 0, f"ExecStartPre={pre} exited {r.returncode}: {r.stdout}{r.stderr}"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.wrapper() + self.command("ExecStart"), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd="/",
                                     umask=self.umask(), start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, f"the service exited {self.proc.returncode} at start:\n{self.log()}"
                if notify is None:
                    if ready():
                        return self
                    time.sleep(0.05)
                    continue
                try:
                    message = notify.recv(4096).decode()
                except socket.timeout:
                    continue
                if "READY=1" in message.split("\n"):
                    assert ready(), f"READY=1 before the service listens:\n{self.log()}"
                    return self
        finally:
            if notify is not None:
                notify.close()
        self.stop()
        raise AssertionError(f"the service did not become ready within {timeout}s:\n{self.log()}")

    def reload(self):
        """ExecReload=, with $MAINPID as systemd substitutes it."""
        cmd = [self.proc.pid if a == "$MAINPID" else a for a in shlex.split(unit_value(self.unit, "ExecReload"))]
        run(self.wrapper() + [str(a) for a in cmd])

    def stop(self):
        """KillSignal= to the main process, then wait up to TimeoutStopSec=; returns the exit status."""
        if self.proc is None:
            return None
        sig = getattr(signal, unit_value(self.unit, "KillSignal") or "SIGTERM")
        timeout = seconds(unit_value(self.unit, "TimeoutStopSec") or "90s")
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"the service did not stop within TimeoutStopSec ({timeout}s):\n{self.log()}")
        self._log.close()
        # systemd removes the RuntimeDirectory= when the service stops.
        if unit_value(self.unit, "RuntimeDirectory"):
            shutil.rmtree(os.path.join("/run", unit_value(self.unit, "RuntimeDirectory")), ignore_errors=True)
        rc = self.proc.returncode
        return rc

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        return procs.read_log(self.log_path)

    def wait_log(self, pattern, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log())
            if m:
                return m
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r} within {timeout}s:\n{self.log()}")


def repack(deb, workdir, version, conf_extra=None):
    """The package with another version (and optionally a changed shipped conffile): an upgrade."""
    root = os.path.join(workdir, f"repack-{version}")
    shutil.rmtree(root, ignore_errors=True)
    run(["dpkg-deb", "-R", deb, root])
    control = os.path.join(root, "DEBIAN", "control")
    with open(control) as f:
        text = f.read()
    with open(control, "w") as f:
        f.write(re.sub(r"^Version: .*$", f"Version: {version}", text, flags=re.M))
    if conf_extra:
        path = os.path.join(root, CONFFILE.lstrip("/"))
        with open(path, "a") as f:
            f.write(conf_extra)
        with open(os.path.join(root, "DEBIAN", "md5sums")) as f:
            sums = f.read()
        # conffiles are not in md5sums; nothing to update there.
        assert CONFFILE.lstrip("/") not in sums
    out = os.path.join(workdir, f"{PKG}_{version}.deb")
    run(["dpkg-deb", "--root-owner-group", "-b", root, out])
    return out


def ops_signature(token, name):
    return f"{name}:0:*:{token.encode().hex()}\n"


def token_message(tid, token):
    return (f"From: <ops@example.org>\r\nTo: <user@dest.example>\r\nSubject: ops test\r\n"
            f"Message-ID: <{tid}@example.org>\r\nX-Test-Id: {tid}\r\n\r\n"
            f"This message carries the campaign marker {token} in its body.\r\n").encode()


@pytest.fixture(scope="module")
def deb():
    if os.geteuid() != 0:
        pytest.fail("the package test installs packages: run it as root", pytrace=False)
    path = deb_path()
    assert os.path.exists(path), f"{path} not found: build it with `make deb` (or set BREAKWATER_DEB)"
    return path


@pytest.fixture(scope="module")
def system(deb):
    """A machine without the package at the start (a leftover is purged, and the user deleted when it
    owns nothing, so that the install creates it), purged again at the end."""
    if package_state() not in ("not-known", "un"):
        run(["dpkg", "--purge", PKG])
    ids = user_ids()
    if ids:
        leftovers = [p for p in traces() if "breakwater" not in p]
        if not leftovers:
            run(["userdel", USER])
            try:
                grp.getgrnam(USER)
                run(["groupdel", USER])
            except KeyError:
                pass
    before = traces()
    state = {"before": before, "token": "bwdeb" + uuid.uuid4().hex[:12]}
    yield state
    if package_state() not in ("not-known", "un"):
        run(["dpkg", "--purge", PKG], check=False)


def test_lintian_clean(deb):
    changes = deb[: -len(".deb")] + ".changes"
    target = changes if os.path.exists(changes) else deb
    r = run(["lintian", "--pedantic", "--display-info", "--display-experimental", "--show-overrides", "--color=never",
             target], check=False)
    print(r.stdout)
    bad = [l for l in r.stdout.splitlines() if l[:2] in ("E:", "W:")]
    assert not bad, "lintian errors or warnings:\n" + "\n".join(bad)
    assert r.returncode == 0, r.stdout + r.stderr


def test_install(deb, system):
    r = run(["dpkg", "-i", deb])
    print(r.stdout, r.stderr)
    assert installed_version()
    # The system user: no login, home in the state directory.
    pw = pwd.getpwnam(USER)
    assert pw.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin") and pw.pw_uid < 1000
    assert grp.getgrgid(pw.pw_gid).gr_name == USER
    # The conffile, registered as one, with every line a comment or blank (all defaults).
    conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", PKG]).stdout
    assert CONFFILE in conffiles
    with open(CONFFILE) as f:
        assert all(not l.strip() or l.lstrip().startswith("#") for l in f)
    # The ops directory belongs to the user; the shipped set to root.
    for d in ("/var/lib/breakwater", OPS_DIR):
        st = os.stat(d)
        assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid), d
    shipped = os.listdir(SHIPPED_DIR)
    assert shipped and all(os.stat(os.path.join(SHIPPED_DIR, f)).st_uid == 0 for f in shipped)
    assert not [f for f in shipped if not re.search(r"\.(ndb|ldb|hdb|hsb|cdb|hdu|hsu|mdb|msb|fp|sfp|ign2|wdb|pdb|ftm|cbc|idb|yara?)$", f)]
    # No Swift runtime library: it is linked in statically.
    ldd = run(["ldd", "/usr/sbin/breakwater"]).stdout
    print(ldd)
    assert "libswift" not in ldd and "libFoundation" not in ldd and "libdispatch" not in ldd
    assert "not found" not in ldd
    # libclamav's calls to mmap64 bind to the program's wrapper (prefault-size), which the dynamic
    # linker can only do when the installed program exports it.
    dynsyms = run(["nm", "-D", "--defined-only", "/usr/sbin/breakwater"]).stdout
    assert re.search(r" T mmap64$", dynsyms, re.M), "the installed program does not export mmap64"
    # The program runs and its version is the package's upstream version.
    version = run(["/usr/sbin/breakwater", "--version"]).stdout.strip()
    assert installed_version().startswith(version)
    assert "run" in run(["/usr/sbin/breakwater", "--help"]).stdout
    # The man pages are installed and render without groff warnings.
    for page in ("/usr/share/man/man8/breakwater.8.gz", "/usr/share/man/man5/breakwater.conf.5.gz"):
        r = subprocess.run(f"zcat {page} | groff -man -Tutf8 -K utf8 -ww -z", shell=True,
                           capture_output=True, text=True, env={**os.environ, "LC_ALL": "C.UTF-8"})
        assert r.returncode == 0 and not r.stderr.strip(), f"{page}: {r.stderr}"
    # The unit passes systemd's own checks.
    if shutil.which("systemd-analyze"):
        r = run(["systemd-analyze", "verify", UNIT], check=False, cwd="/")
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    # The shipped configuration is valid as it is (the unit's ExecStartPre).
    r = run(["/usr/sbin/breakwater", "check-config", "--config", CONFFILE])
    assert "configuration OK" in r.stdout


def test_scan_as_service_user(system, workdir):
    """The installed `breakwater scan` finds EICAR with the shipped set, as the service user."""
    msg = os.path.join(workdir, "eicar.eml")
    with open(msg, "wb") as f:
        f.write(mail.eicar_attachment("scan"))
    os.chmod(msg, 0o644)
    r = run(["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", "--",
             "/usr/sbin/breakwater", "scan", msg], check=False, cwd="/")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Breakwater.Test.EICAR" in r.stdout


class BootedContainer:
    """The installed system booted under a real systemd, without touching it: the host's root file
    system is the read-only lower layer of an overlay whose writes go to a tmpfs, and
    systemd-nspawn boots it with a private network (loopback only) into breakwater.service and its
    dependencies alone. Everything it started ends with it; the mounts are undone by the caller."""

    def __init__(self, workdir):
        self.base = tempfile.mkdtemp(prefix="bwns-", dir="/run")
        self.root = os.path.join(self.base, "root")
        self.name = "bwdeb" + uuid.uuid4().hex[:6]
        self.console = os.path.join(workdir, "container-console.log")
        self.nspawn_state_existed = os.path.exists("/run/systemd/nspawn")
        self.mounts = []
        self.proc = None
        self.leader = None

    def start(self, timeout=90):
        run(["mount", "-t", "tmpfs", "tmpfs", self.base])
        self.mounts.append(self.base)
        for d in ("up", "work", "root"):
            os.mkdir(os.path.join(self.base, d))
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir=/,upperdir={self.base}/up,workdir={self.base}/work", self.root])
        self.mounts.append(self.root)
        # nspawn populates /dev itself; the lower layer's mount-point stubs would be in its way.
        for entry in os.listdir(os.path.join(self.root, "dev")):
            run(["rm", "-rf", os.path.join(self.root, "dev", entry)])
        # A Docker-style policy-rc.d (exit 101) would keep the maintainer scripts from starting and
        # stopping services; a real Debian system has none.
        if os.path.exists(os.path.join(self.root, "usr/sbin/policy-rc.d")):
            os.unlink(os.path.join(self.root, "usr/sbin/policy-rc.d"))
        self._log = open(self.console, "ab")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--quiet", "-D", self.root, "--private-network", "--boot", f"--machine={self.name}",
             "--register=no", "--keep-unit", "--", "--unit=breakwater.service"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"systemd-nspawn exited {self.proc.returncode}:\n{self.console_log()}"
            if self.leader is None:
                kids = procs.children(self.proc.pid)
                self.leader = kids[0] if kids else None
            elif self.systemctl("is-active", "breakwater", check=False).stdout.strip() in ("active", "failed"):
                return self
            time.sleep(0.2)
        raise AssertionError(f"the container did not start breakwater.service in {timeout}s:\n{self.console_log()}")

    def enter(self, *cmd, namespaces=("-a",), check=True):
        return run(["nsenter", "-t", str(self.leader), *namespaces, *cmd], check=check)

    def systemctl(self, *args, check=True):
        return self.enter("systemctl", "--no-pager", *args, check=check)

    def show(self, *props):
        out = self.systemctl("show", "breakwater", *[f"-p{p}" for p in props]).stdout
        return dict(l.split("=", 1) for l in out.splitlines() if "=" in l)

    def journal(self):
        return self.enter("journalctl", "--no-pager", "-o", "cat", "-u", "breakwater", check=False).stdout

    def wait_listening(self, port=8897, timeout=30):
        """Waits until something accepts connections on 127.0.0.1:port in the container."""
        script = ("import socket, sys, time\nend = time.time() + float(sys.argv[2])\n"
                  "while True:\n"
                  "    try:\n        socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1).close(); break\n"
                  "    except OSError:\n"
                  "        if time.time() > end: sys.exit(1)\n        time.sleep(0.05)\n")
        r = subprocess.run(["nsenter", "-t", str(self.leader), "-n", sys.executable, "-c", script, str(port),
                            str(timeout)], capture_output=True, timeout=timeout + 10)
        assert r.returncode == 0, f"nothing listens on 127.0.0.1:{port} in the container:\n{self.journal()}"

    def milter(self, spec, message, user="root"):
        """One message through the milter, from a client inside the container (as `user`)."""
        probe = "/srv/bwdeb-probe"
        if not os.path.exists(os.path.join(self.root, probe.lstrip("/"))):
            dest = os.path.join(self.root, probe.lstrip("/"))
            shutil.copytree(os.path.join(os.path.dirname(os.path.abspath(__file__)), "harness"),
                            os.path.join(dest, "harness"), ignore=shutil.ignore_patterns("__pycache__"))
            with open(os.path.join(dest, "probe.py"), "w") as f:
                f.write("import sys\nsys.path.insert(0, sys.argv[1])\n"
                        "from harness.milterclient import MilterConnection\n"
                        "m = MilterConnection.open(sys.argv[2]); m.negotiate()\n"
                        "r = m.send_message(sys.stdin.buffer.read(), sender='<a@example.org>', rcpts=['<b@dest.example>'])\n"
                        "print(r.smtp_code or '', r.kind, r.text, r.added_headers)\n")
            run(["chmod", "-R", "a+rX", dest])
        r = subprocess.run(["nsenter", "-t", str(self.leader), "-a", "setpriv", f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}",
                            "--init-groups", "/usr/bin/python3", "-B", f"{probe}/probe.py", probe, spec],
                           input=message, capture_output=True, timeout=60)
        if r.returncode != 0:
            return "ERROR " + r.stderr.decode(errors="replace")
        return r.stdout.decode()

    def console_log(self):
        with open(self.console, errors="replace") as f:
            return f.read()[-4000:]

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            if self.leader:
                self.systemctl("poweroff", check=False)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                procs.kill(self.proc.pid)
                self.proc.wait(10)
        if self.proc is not None:
            self._log.close()
        for m in reversed(self.mounts):
            run(["umount", m], check=False)
        shutil.rmtree(self.base, ignore_errors=True)
        if not self.nspawn_state_existed:
            shutil.rmtree("/run/systemd/nspawn", ignore_errors=True)


def test_unit_under_systemd(deb, system, workdir):
    """The installed unit under a real systemd (PID 1 of a container booted from this machine's
    files): it starts with all its sandboxing, scans, reloads (ExecReload) and stops with status 0."""
    if not shutil.which("systemd-nspawn"):
        pytest.fail("systemd-nspawn not found: scripts/setup.sh --deb installs systemd-container", pytrace=False)
    spool_dir_existed = os.path.exists("/var/spool/postfix/breakwater")
    box = BootedContainer(workdir)
    try:
        box.start()
        props = box.show("ActiveState", "ExecMainPID", "User")
        assert props["ActiveState"] == "active", box.journal() + box.console_log()
        # Type=notify: active means listening.
        box.wait_listening(timeout=2)
        # The spool is the state directory's spool/ on disk, not the private /tmp (a tmpfs on current
        # Debian, whose pages count against MemoryMax=).
        assert "to /var/lib/breakwater/spool (spool budget" in box.journal(), box.journal()
        tid = mail.test_id()
        assert box.milter("inet:8897@127.0.0.1", mail.eicar_attachment(tid)).startswith("550 "), box.journal()
        out = box.milter("inet:8897@127.0.0.1", mail.ham(mail.test_id()))
        assert "X-Virus-Scanned" in out, out + box.journal()

        # An ops signature written where the service reads it, then `systemctl reload`.
        token = "bwns" + uuid.uuid4().hex[:12]
        path = os.path.join(box.root, OPS_DIR.lstrip("/"), "container.ndb")
        with open(path, "w") as f:
            f.write(ops_signature(token, "Breakwater.Local.Spam.Container"))
        uid, gid = user_ids()
        os.chown(path, uid, gid)
        out = box.milter("inet:8897@127.0.0.1", token_message(mail.test_id(), token))
        assert out.startswith(" continue"), out
        box.systemctl("reload", "breakwater")
        deadline = time.monotonic() + 30
        while "engine generation 2 loaded" not in box.journal() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert box.show("ExecMainPID")["ExecMainPID"] == props["ExecMainPID"], "the reload restarted the process"
        out = box.milter("inet:8897@127.0.0.1", token_message(mail.test_id(), token))
        assert out.startswith("550 ") and "Container" in out, out + box.journal()

        # The sandbox as systemd applied it.
        status = box.enter("cat", f"/proc/{box.enter('systemctl', 'show', '-pMainPID', '--value', 'breakwater').stdout.strip()}/status").stdout
        assert re.search(r"^CapEff:\s+0+$", status, re.M) and re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
        assert re.search(r"^Seccomp:\s+2$", status, re.M), status
        print(box.enter("systemd-analyze", "security", "--no-pager", "breakwater", check=False).stdout[-300:])

        # A burst of crashes never leaves the unit failed (StartLimitIntervalSec=0; the default of 5
        # starts in 10 s would): 7 SIGSEGVs, each as soon as the service is active again. The crash
        # ends the process at once (SWIFT_BACKTRACE=enable=no: no backtrace in the journal).
        burst = time.monotonic()
        for _ in range(7):
            pid = box.show("MainPID")["MainPID"]
            box.enter("kill", "-SEGV", pid)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                p = box.show("ActiveState", "MainPID")
                if p["ActiveState"] == "active" and p["MainPID"] not in ("0", pid):
                    break
                time.sleep(0.05)
        props = box.show("ActiveState", "NRestarts")
        assert props["ActiveState"] == "active" and int(props["NRestarts"]) >= 7, f"{props}\n{box.journal()}"
        print(f"7 crashes, each restarted when active again: {time.monotonic() - burst:.1f} s")
        assert "Backtracing" not in box.journal(), box.journal()
        assert box.milter("inet:8897@127.0.0.1", mail.eicar_attachment(mail.test_id())).startswith("550 ")

        box.systemctl("stop", "breakwater")
        props = box.show("ActiveState", "Result", "ExecMainStatus")
        assert props == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, \
            f"{props}\n{box.journal()}"

        # README.Debian's unix socket inside Postfix's queue directory, under the unit's sandbox:
        # usable by the postfix user, by nobody else.
        sock = "/var/spool/postfix/breakwater/milter.sock"
        box.enter("install", "-d", "-o", USER, "-g", "postfix", "-m", "2750", os.path.dirname(sock))
        with open(os.path.join(box.root, CONFFILE.lstrip("/")), "a") as f:
            f.write(f"socket = unix:{sock}\n")
        box.systemctl("start", "breakwater")
        deadline = time.monotonic() + 30
        while box.enter("test", "-S", sock, check=False).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        out = box.milter(f"unix:{sock}", mail.eicar_attachment(mail.test_id()), user="postfix")
        assert out.startswith("550 "), out + box.journal()
        out = box.milter(f"unix:{sock}", mail.ham(mail.test_id()), user="nobody")
        assert "PermissionError" in out, out

        # A configuration error stops the service with the file and line in the journal, and
        # systemd does not restart it in a loop (RestartPreventExitStatus=2).
        conf_path = os.path.join(box.root, CONFFILE.lstrip("/"))
        with open(conf_path) as f:
            good = f.read()
        with open(conf_path, "a") as f:
            f.write("max-wiat = 5s\n")
        box.systemctl("restart", "breakwater", check=False)
        time.sleep(3 * seconds(unit_value(parse_unit(UNIT), "RestartSec")))
        props = box.show("ActiveState", "NRestarts")
        assert props == {"ActiveState": "failed", "NRestarts": "0"}, f"{props}\n{box.journal()}"
        assert re.search(r"breakwater\.conf:\d+: unknown key 'max-wiat'", box.journal()), box.journal()
        with open(conf_path, "w") as f:
            f.write(good)
        box.systemctl("reset-failed", "breakwater")
        box.systemctl("start", "breakwater")

        # The maintainer scripts with a live systemd: an upgrade restarts the running service, a
        # removal stops it (status 0) and a purge takes its state away.
        shutil.copy(deb, os.path.join(box.root, "srv", "breakwater.deb"))
        pid = box.show("MainPID")["MainPID"]
        box.enter("dpkg", "-i", "/srv/breakwater.deb")
        props = box.show("ActiveState", "MainPID")
        assert props["ActiveState"] == "active" and props["MainPID"] not in ("0", pid), f"{props}\n{box.journal()}"
        box.enter("dpkg", "-r", "breakwater")
        props = box.show("ActiveState", "Result", "ExecMainStatus", "LoadState")
        assert props["ActiveState"] == "inactive" and props["Result"] == "success" \
            and props["ExecMainStatus"] == "0", f"{props}\n{box.journal()}"
        assert props["LoadState"] == "not-found", props
        box.enter("dpkg", "--purge", "breakwater")
        assert box.enter("test", "-e", "/var/lib/breakwater", check=False).returncode != 0
        assert box.enter("test", "-e", "/etc/breakwater", check=False).returncode != 0
    finally:
        box.stop()
    assert not os.path.exists(os.path.join(OPS_DIR, "container.ndb")), "the container wrote through to the host"
    assert os.path.exists("/var/spool/postfix/breakwater") == spool_dir_existed, "the container wrote through to the host"


def send_eicar_and_ham(pf, sink):
    tid = mail.test_id()
    r = pf.send(mail.eicar_attachment(tid))
    assert r.code == 550 and "Breakwater.Test.EICAR" in r.text, r
    tid = mail.test_id()
    r = pf.send(mail.ham(tid))
    assert r.code == 250, r
    got = sink.wait_for("X-Test-Id", tid, timeout=30)
    assert len(got) == 1 and got[0].header("X-Virus-Scanned"), got


def test_service_over_tcp(system, postfix, sink, workdir):
    port, metrics_port = free_port(), free_port()
    try:
        with open(CONFFILE) as f:
            conf = f.read()
        conf = set_conf(conf, "socket", f"inet:{port}@127.0.0.1")
        conf = set_conf(conf, "metrics", f"127.0.0.1:{metrics_port}")
        write_conf(conf)
        svc = UnitProcess(workdir, "tcp").start(lambda: procs.tcp_listening(port))
        try:
            pf = postfix(milters=f"inet:127.0.0.1:{port}")
            send_eicar_and_ham(pf, sink)

            # An ops signature: not loaded until a reload.
            token = system["token"]
            path = os.path.join(OPS_DIR, "deb-test.ndb")
            with open(path, "w") as f:
                f.write(ops_signature(token, "Breakwater.Local.Spam.DebTest"))
            uid, gid = user_ids()
            os.chown(path, uid, gid)
            tid = mail.test_id()
            r = pf.send(token_message(tid, token))
            assert r.code == 250, f"the ops signature fired before any reload: {r}"

            svc.reload()
            svc.wait_log(r"engine generation 2 loaded")
            assert svc.alive, svc.log()
            r = pf.send(token_message(mail.test_id(), token))
            assert r.code == 550 and "Breakwater.Local.Spam.DebTest" in r.text, r
            send_eicar_and_ham(pf, sink)
        finally:
            rc = svc.stop()
        assert rc == 0, f"exit status {rc} after SIGTERM:\n{svc.log()}"
        assert not os.path.exists(RUN_DIR)
    finally:
        release_port(port)
        release_port(metrics_port)


def test_service_over_unix_socket_in_postfix_queue(system, postfix_bin, sink, workdir):
    """README.Debian's recipe: a setgid directory of group postfix in the queue directory, a
    relative unix: path in smtpd_milters; the socket comes out usable by Postfix's smtpd."""
    # A short base directory: a unix socket path has at most 107 bytes.
    base = tempfile.mkdtemp(prefix="bwdeb-")
    os.chmod(base, 0o755)
    pf = PostfixInstance(base, sink.port, milters="unix:breakwater/milter.sock", name="pf")
    svc = None
    try:
        pf.start()
        sock_dir = os.path.join(pf.queue_dir, "breakwater")
        sock = os.path.join(sock_dir, "milter.sock")
        run(["install", "-d", "-o", USER, "-g", "postfix", "-m", "2750", sock_dir])
        with open(CONFFILE) as f:
            conf = f.read()
        write_conf(set_conf(set_conf(conf, "socket", f"unix:{sock}"), "metrics", ""))
        svc = UnitProcess(workdir, "unix").start(lambda: procs.unix_listening(sock))
        st = os.stat(sock)
        assert (st.st_mode & 0o777) == 0o770, oct(st.st_mode)
        assert grp.getgrgid(st.st_gid).gr_name == "postfix"
        send_eicar_and_ham(pf, sink)
        # The ops signature of the previous test is loaded at start.
        r = pf.send(token_message(mail.test_id(), system["token"]))
        assert r.code == 550, r
    finally:
        rc = svc.stop() if svc else 0
        killed = pf.stop()
        shutil.rmtree(base, ignore_errors=True)
    assert rc == 0, svc.log()
    assert not killed, f"Postfix processes had to be killed: {killed}"


def test_upgrade_keeps_conffile_and_ops_signatures(deb, system, postfix, sink, workdir):
    with open(CONFFILE) as f:
        modified = f.read()
    assert "\nsocket = " in modified, "the earlier tests should have modified the conffile"
    ops = os.path.join(OPS_DIR, "deb-test.ndb")
    with open(ops) as f:
        ops_text = f.read()
    base = installed_version()

    # An upgrade whose shipped conffile is unchanged: dpkg keeps the modified one without asking.
    r = run(["dpkg", "-i", repack(deb, workdir, base + "+upgrade1")])
    assert installed_version() == base + "+upgrade1"
    assert "Configuration file" not in r.stdout, r.stdout
    with open(CONFFILE) as f:
        assert f.read() == modified
    with open(ops) as f:
        assert f.read() == ops_text
    uid, gid = user_ids()
    assert (os.stat(ops).st_uid, os.stat(OPS_DIR).st_uid) == (uid, uid)

    # An upgrade that changes the shipped conffile: with --force-confold the admin's version stays and
    # the new one lands beside it.
    run(["dpkg", "-i", "--force-confold", repack(deb, workdir, base + "+upgrade2", conf_extra="# changed upstream\n")])
    with open(CONFFILE) as f:
        assert f.read() == modified
    assert os.path.exists(CONFFILE + ".dpkg-dist")

    # The upgraded program still loads the ops signature.
    port = free_port()
    try:
        write_conf(set_conf(set_conf(modified, "socket", f"inet:{port}@127.0.0.1"), "metrics", ""))
        svc = UnitProcess(workdir, "upgraded").start(lambda: procs.tcp_listening(port))
        try:
            pf = postfix(milters=f"inet:127.0.0.1:{port}")
            r = pf.send(token_message(mail.test_id(), system["token"]))
            assert r.code == 550 and "DebTest" in r.text, r
        finally:
            rc = svc.stop()
        assert rc == 0, svc.log()
    finally:
        release_port(port)


def test_remove_keeps_conffile_and_state(system):
    with open(CONFFILE) as f:
        conf = f.read()
    run(["dpkg", "-r", PKG])
    assert package_state().startswith("rc"), package_state()
    assert not os.path.exists("/usr/sbin/breakwater") and not os.path.exists(UNIT)
    with open(CONFFILE) as f:
        assert f.read() == conf
    assert os.path.exists(os.path.join(OPS_DIR, "deb-test.ndb"))


def test_purge_leaves_nothing(system):
    run(["dpkg", "--purge", PKG])
    assert package_state() in ("not-known", "un"), package_state()
    for path in ("/etc/breakwater", "/var/lib/breakwater", RUN_DIR, SHIPPED_DIR, "/usr/share/doc/breakwater"):
        assert not os.path.exists(path), f"{path} left after purge"
    left = sorted(traces() - system["before"])
    assert not left, "left after purge:\n" + "\n".join(left)
    # The user stays (debian/breakwater.postrm says why) and owns nothing any more.
    assert user_ids() is not None
