"""The processes a run starts, each stopped by PID: a private Postfix (the integration tests'
harness), smtp-sink, Breakwater, the floor milter, clamd + clamav-milter."""
import os
import re
import shutil
import signal
import subprocess

from . import common  # noqa: F401  (puts the harness on sys.path)
from harness import postfix as harness_postfix  # noqa: E402
from harness import procs  # noqa: E402
from harness.ports import free_port, release_port  # noqa: E402

from .common import wait_until
from .corpora import BENCH_ID, NOT_SCANNED, WARMUP_ID_PREFIX

class Proc:
    """A daemon started in the foreground; stopped with SIGTERM, then SIGKILL, by PID."""

    def __init__(self, name, argv, log_path, cwd=None, env=None):
        self.name, self.argv, self.log_path = name, argv, log_path
        self._log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                  cwd=cwd, env=env, start_new_session=True)

    @property
    def pid(self):
        return self.p.pid

    def running(self):
        return self.p.poll() is None

    def stop(self, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self._log.close()
        return self.p.returncode

    def log_tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except OSError:
            return ""


class Postfix(harness_postfix.PostfixInstance):
    """The integration tests' private Postfix (IntegrationTests/harness/postfix.py: no chroot, postlogd
    for maillog_file, no DNS; in_flow_delay = 0, smtpd_error_sleep_time = 0 and no client limits,
    without which a reject-heavy load measures Postfix's flow control), started and stopped by the
    harness, with the bench's own settings: process limits for 200 clients, no message rate limit, its
    own names. Lives in `base` (etc/, spool/, data/, log/maillog)."""

    def __init__(self, base, sink_port, milter=None, smtpd_limit=250):
        overrides = {
            "myhostname": "mx.bench.test", "mydomain": "bench.test",
            "local_transport": "error:5.1.1 no local delivery",
            "smtpd_client_message_rate_limit": "0",
            "default_process_limit": str(max(100, smtpd_limit + 50)),
        }
        super().__init__(os.path.dirname(base), sink_port, milters=milter, settings=overrides,
                         name=os.path.basename(base), smtpd_process_limit=smtpd_limit)

    @property
    def master(self):
        """The master's PID while it runs (the sampler counts its descendants)."""
        return self.master_pid

    def queue_empty(self):
        return not any(self.queue_files(q) for q in ("incoming", "active", "deferred", "maildrop", "hold"))

    def queue_counts(self):
        return {q: len(self.queue_files(q)) for q in ("incoming", "active", "deferred", "hold")}


class Sink:
    """Postfix's smtp-sink on loopback, dumping every delivered message to one file."""

    def __init__(self, base):
        self.base = base
        self.dump = os.path.join(base, "sink.dump")
        self.port = self.proc = None

    def start(self):
        os.makedirs(self.base, exist_ok=True)
        shutil.chown(self.base, "postfix", "postfix")
        self.port = free_port()
        self.proc = Proc("smtp-sink", ["smtp-sink", "-u", "postfix", "-D", self.dump,
                                       f"127.0.0.1:{self.port}", "1024"],
                         os.path.join(self.base, "sink.log"))
        wait_until(lambda: procs.tcp_listening(self.port) or not self.proc.running(), 10, "smtp-sink")
        if not self.proc.running():
            raise RuntimeError("smtp-sink exited: " + self.proc.log_tail())

    def delivered(self):
        """(X-Bench-Id of every delivered message in delivery order, the ids whose delivered copy says
        it was not fully scanned). Only the top header block of each message counts."""
        ids, not_scanned = [], set()
        try:
            with open(self.dump, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return ids, not_scanned
        # Each dump entry starts with smtp-sink's X-Client-Addr header.
        for entry in re.split(rb"(?m)^X-Client-Addr: ", data)[1:]:
            head = re.split(rb"\r?\n\r?\n", entry, maxsplit=1)[0]
            m = BENCH_ID.search(head)
            bid = m.group(1).decode() if m else None
            if bid and bid.startswith(WARMUP_ID_PREFIX):
                continue  # sent before the measured run (--warmup)
            ids.append(bid)
            if bid and NOT_SCANNED.search(head):
                not_scanned.add(bid)
        return ids, not_scanned

    def stop(self):
        if self.proc:
            self.proc.stop()
        if self.port:
            release_port(self.port)


def postfix_socket_dir(base):
    """A directory for a milter's unix socket that Postfix's smtpd (user postfix) can use: group
    postfix with the setgid bit, so the socket (made with umask 007) gets group postfix."""
    d = os.path.join(base, "sock")
    os.makedirs(d, exist_ok=True)
    shutil.chown(d, group="postfix")
    os.chmod(d, 0o2770)
    return d


class MilterProcess:
    """A milter daemon we start on a fresh socket (unix or loopback TCP); subclasses give its name and
    command line."""
    name = "milter"
    start_timeout = 30

    def __init__(self, binary, base, socket_kind="inet"):
        self.binary, self.base, self.socket_kind = binary, base, socket_kind
        self.port = self.proc = self.path = None

    @property
    def spec(self):
        return f"unix:{self.path}" if self.path else f"inet:{self.port}@127.0.0.1"

    @property
    def milter(self):
        return f"unix:{self.path}" if self.path else f"inet:127.0.0.1:{self.port}"

    def listening(self):
        return procs.unix_listening(self.path) if self.path else procs.tcp_listening(self.port)

    def argv(self):
        raise NotImplementedError

    def start(self):
        os.makedirs(self.base, exist_ok=True)
        if self.socket_kind == "unix":
            self.path = os.path.join(postfix_socket_dir(self.base), "milter.sock")
        else:
            self.port = free_port()
        self.proc = Proc(self.name, self.argv(), os.path.join(self.base, f"{self.name.replace('-', '_')}.log"))
        wait_until(lambda: self.listening() or not self.proc.running(), self.start_timeout, f"{self.name} to listen")
        if not self.proc.running():
            raise RuntimeError(f"{self.name} exited: " + self.proc.log_tail())

    def pids(self):
        return {self.name: [self.proc.pid]}

    def stop(self):
        rc = self.proc.stop() if self.proc else None
        if self.port:
            release_port(self.port)
        return rc


class Breakwater(MilterProcess):
    name = "breakwater"
    start_timeout = 60

    def __init__(self, binary, base, sigs, extra_args=(), socket_kind="inet", metrics=False):
        super().__init__(binary, base, socket_kind)
        self.sigs, self.extra = sigs, list(extra_args)
        self.metrics_port = free_port() if metrics else None

    def argv(self):
        spool = os.path.join(self.base, "spool")
        os.makedirs(spool, exist_ok=True)
        metrics = f"127.0.0.1:{self.metrics_port}" if self.metrics_port else ""
        return [self.binary, "run", "--socket", self.spec, "--signatures", self.sigs,
                "--workers", "2", "--metrics", metrics, "--control", os.path.join(self.base, "control.sock"),
                "--local-signatures", os.path.join(self.base, "no-local-signatures"),
                "--spool-directory", spool, *self.extra]

    def counters(self):
        """Counters of the metrics endpoint (one scrape: scans_total, rescans_total, ...), or {}."""
        if not self.metrics_port:
            return {}
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line.startswith("breakwater_") and "{" not in line.split(" ")[0]:
                name, _, value = line.partition(" ")
                try:
                    out[name[len("breakwater_"):]] = float(value)
                except ValueError:
                    pass
        return out

    def stop(self):
        rc = super().stop()
        if self.metrics_port:
            release_port(self.metrics_port)
        return rc


class FloorMilter(MilterProcess):
    """bench/floor_milter.c: libmilter with the verdicts known in advance and no work behind them
    (the floor of any libmilter filter); with `work_us`, the busy floor."""
    name = "floor-milter"

    def __init__(self, binary, base, verdicts, socket_kind="inet", work_us=None, slots=2):
        super().__init__(binary, base, socket_kind)
        self.verdicts = verdicts
        self.work = [str(work_us), str(slots)] if work_us else []

    def argv(self):
        return [self.binary, self.spec, self.verdicts, *self.work]


class ClamavMilter:
    """clamd + clamav-milter from Debian's packages, private configuration, same signatures."""

    def __init__(self, base, sigs, socket_kind="inet"):
        self.base, self.sigs, self.socket_kind = base, sigs, socket_kind
        self.port = self.clamd = self.milter_proc = self.path = None
        self.clamd_sock = os.path.join(base, "clamd.sock")

    def write_configs(self):
        db = os.path.join(self.base, "db")
        os.makedirs(db, exist_ok=True)
        for f in os.listdir(self.sigs):
            shutil.copyfile(os.path.join(self.sigs, f), os.path.join(db, f))
        tmp = os.path.join(self.base, "tmp")
        os.makedirs(tmp, exist_ok=True)
        # Debian's clamd.conf, with the scan limits set to Breakwater's defaults (EngineLimits and
        # max-message-size) and the connection queue of upstream's default (Debian's 15 would refuse
        # clamav-milter's connections at 200 SMTP clients).
        clamd = f"""\
LocalSocket {self.clamd_sock}
FixStaleSocket true
LocalSocketMode 666
Foreground true
LogFile {self.base}/clamd.log
LogTime true
PidFile {self.base}/clamd.pid
TemporaryDirectory {tmp}
DatabaseDirectory {db}
OfficialDatabaseOnly false
SelfCheck 3600
ScanMail true
ScanArchive true
ScanPE true
ScanELF true
ScanOLE2 true
ScanPDF true
ScanHTML true
ScanSWF true
ScanXMLDOCS true
ScanHWP3 true
ArchiveBlockEncrypted false
PhishingSignatures true
PhishingScanURLs true
HeuristicAlerts true
Bytecode true
ReadTimeout 180
CommandReadTimeout 30
SendBufTimeout 200
IdleTimeout 30
MaxThreads 12
MaxQueue 100
MaxConnectionQueueLength 200
StreamMaxLength 25M
MaxScanSize 400M
MaxFileSize 100M
MaxRecursion 17
MaxFiles 10000
MaxScanTime 120000
PCREMatchLimit 100000
PCRERecMatchLimit 2000
PCREMaxFileSize 25M
MaxEmbeddedPE 10M
MaxHTMLNormalize 10M
MaxHTMLNoTags 2M
MaxScriptNormalize 5M
MaxZipTypeRcg 1M
MaxPartitions 50
MaxIconsPE 100
ExtendedDetectionInfo true
"""
        with open(os.path.join(self.base, "clamd.conf"), "w") as f:
            f.write(clamd)
        if self.socket_kind == "unix":
            self.path = os.path.join(postfix_socket_dir(self.base), "clamav-milter.sock")
            sock = f"MilterSocket unix:{self.path}\nMilterSocketMode 660\nMilterSocketGroup postfix"
        else:
            self.port = free_port()
            sock = f"MilterSocket inet:{self.port}@127.0.0.1"
        milter = f"""\
{sock}
FixStaleSocket true
Foreground true
PidFile {self.base}/clamav-milter.pid
TemporaryDirectory {tmp}
ClamdSocket unix:{self.clamd_sock}
ReadTimeout 120
OnClean Accept
OnInfected Reject
OnFail Defer
RejectMsg Rejected: %v
AddHeader Replace
MaxFileSize 25M
SupportMultipleRecipients false
LogFile {self.base}/clamav-milter.log
LogTime true
LogInfected Basic
LogClean Off
"""
        with open(os.path.join(self.base, "clamav-milter.conf"), "w") as f:
            f.write(milter)

    def start(self):
        os.makedirs(self.base, exist_ok=True)
        self.write_configs()
        self.clamd = Proc("clamd", ["clamd", "--foreground", "-c", os.path.join(self.base, "clamd.conf")],
                          os.path.join(self.base, "clamd.out"))
        wait_until(lambda: procs.unix_listening(self.clamd_sock) or not self.clamd.running(), 120, "clamd")
        if not self.clamd.running():
            raise RuntimeError("clamd exited: " + self.clamd.log_tail())
        self.milter_proc = Proc("clamav-milter", ["clamav-milter", "-c", os.path.join(self.base, "clamav-milter.conf")],
                                os.path.join(self.base, "clamav-milter.out"))
        wait_until(lambda: (procs.unix_listening(self.path) if self.path else procs.tcp_listening(self.port))
                   or not self.milter_proc.running(), 60, "clamav-milter")
        if not self.milter_proc.running():
            raise RuntimeError("clamav-milter exited: " + self.milter_proc.log_tail())

    @property
    def milter(self):
        return f"unix:{self.path}" if self.path else f"inet:127.0.0.1:{self.port}"

    def pids(self):
        return {"clamd": [self.clamd.pid], "clamav-milter": [self.milter_proc.pid]}

    def stop(self):
        if self.milter_proc:
            self.milter_proc.stop()
        if self.clamd:
            self.clamd.stop()
        if self.port:
            release_port(self.port)
