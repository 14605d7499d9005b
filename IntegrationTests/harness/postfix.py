"""A private Postfix instance for one test: own config and queue directories under a
temporary directory, an smtpd on a free loopback port, no DNS, no chroot, relaying
everything to a sink on 127.0.0.1, optionally with milters.

    pf = PostfixInstance(base_dir, sink_port, milters="inet:127.0.0.1:PORT")
    pf.start(); ...; pf.stop()

Start: `postfix -c DIR check` (creates the queue directories), then `postfix -c DIR start`.
Stop: `postfix -c DIR stop`, wait for the master to go, then SIGKILL the master and every
child it had (by PID) if any is left.
"""
import os
import shutil
import subprocess
import time

from . import procs, smtp
from .ports import free_port, release_port

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"

# No chroot anywhere (column 5 = n), only the services a relay-to-sink instance needs,
# and postlogd so that maillog_file works without syslog.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - {smtpd_limit} smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def postfix_available():
    return os.path.exists(POSTFIX) and os.path.exists(POSTCONF)


class PostfixError(RuntimeError):
    pass


class PostfixInstance:
    def __init__(self, base_dir, sink_port, milters=None, settings=None, name="postfix",
                 smtpd_process_limit=None):
        self.base = os.path.join(base_dir, name)
        self.config_dir = os.path.join(self.base, "etc")
        self.queue_dir = os.path.join(self.base, "spool")
        self.data_dir = os.path.join(self.base, "data")
        self.log_dir = os.path.join(self.base, "log")
        self.maillog = os.path.join(self.log_dir, "maillog")
        self.sink_port = sink_port
        self.milters = milters
        self.settings = dict(settings or {})
        # smtpd's process limit in master.cf; None: default_process_limit (the benchmark raises it).
        self.smtpd_process_limit = smtpd_process_limit
        self.port = None
        self.master_pid = None
        self._started = False

    # --- configuration -------------------------------------------------------------
    def main_cf(self):
        s = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "mx.breakwater.test",
            "mydomain": "breakwater.test",
            "myorigin": "$myhostname",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "local_recipient_maps": "",
            "local_transport": "error:5.1.1 no local delivery in this test instance",
            "alias_maps": "",
            "alias_database": "",
            "relayhost": f"[127.0.0.1]:{self.sink_port}",
            "relay_domains": "",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtp_dns_support_level": "disabled",
            "smtpd_peername_lookup": "no",
            "smtp_host_lookup": "native",
            "smtpd_tls_security_level": "none",
            "smtp_tls_security_level": "none",
            "in_flow_delay": "0",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "anvil_rate_time_unit": "60s",
            "message_size_limit": str(64 * 1024 * 1024),
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "biff": "no",
            "notify_classes": "",
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.base,
            "milter_default_action": "tempfail",
            "milter_protocol": "6",
            "milter_connect_timeout": "10s",
            "milter_command_timeout": "30s",
            "milter_content_timeout": "300s",
        }
        if self.milters:
            s["smtpd_milters"] = self.milters
        s.update(self.settings)
        return "".join(f"{k} = {v}\n" for k, v in s.items())

    def write_config(self):
        for d in (self.config_dir, self.queue_dir, self.log_dir, self.data_dir):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.base, 0o755)
        os.chmod(self.queue_dir, 0o755)
        shutil.chown(self.data_dir, "postfix", "postfix")
        os.chmod(self.data_dir, 0o700)
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            f.write(self.main_cf())
        with open(os.path.join(self.config_dir, "master.cf"), "w") as f:
            limit = "-" if self.smtpd_process_limit is None else str(int(self.smtpd_process_limit))
            f.write(MASTER_CF.format(port=self.port, smtpd_limit=limit))

    # --- lifecycle ---------------------------------------------------------------
    def _postfix(self, *args, timeout=60):
        env = dict(os.environ)
        env.pop("MAIL_CONFIG", None)
        return subprocess.run([POSTFIX, "-c", self.config_dir, *args], capture_output=True,
                              text=True, timeout=timeout, env=env)

    def start(self):
        # The parent of the instance directory must be traversable by the postfix user.
        self.port = free_port()
        self.write_config()
        r = self._postfix("check")
        if r.returncode != 0:
            raise PostfixError(f"postfix check failed ({r.returncode}): {r.stdout}{r.stderr}")
        r = self._postfix("start")
        if r.returncode != 0:
            raise PostfixError(f"postfix start failed ({r.returncode}): {r.stdout}{r.stderr}\n{self.log_tail()}")
        self._started = True
        pid_file = os.path.join(self.queue_dir, "pid", "master.pid")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with open(pid_file) as f:
                    self.master_pid = int(f.read().strip())
            except (FileNotFoundError, ValueError):
                self.master_pid = None
            if self.master_pid and procs.tcp_listening(self.port) and procs.alive(self.master_pid):
                return self
            time.sleep(0.05)
        raise PostfixError(f"postfix did not come up on 127.0.0.1:{self.port}\n{self.log_tail()}")

    def stop(self):
        """Stops the instance and everything it started; returns the PIDs that had to be killed."""
        if not self._started:
            # A start that failed half-way may still have left a master behind.
            try:
                with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
                    self.master_pid = int(f.read().strip())
            except (OSError, ValueError):
                self.master_pid = None
            if not (self.master_pid and procs.alive(self.master_pid)):
                if self.port:
                    release_port(self.port)
                return []
        self._started = False
        pids = []
        if self.master_pid:
            pids = [self.master_pid] + procs.children(self.master_pid)
        try:
            self._postfix("stop", timeout=30)
        except subprocess.TimeoutExpired:
            pass  # the master and its children are killed by PID below
        killed = []
        if self.master_pid and not procs.wait_gone(self.master_pid, 15):
            procs.kill(self.master_pid)
            killed.append(self.master_pid)
        for pid in pids[1:]:
            if not procs.wait_gone(pid, 5):
                procs.kill(pid)
                killed.append(pid)
        for pid in killed:
            procs.wait_gone(pid, 5)
        release_port(self.port)
        return killed

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- use -----------------------------------------------------------------------
    def log(self):
        return procs.read_log(self.maillog)

    def log_tail(self, lines=40):
        return "\n".join(self.log().splitlines()[-lines:])

    def send(self, data, sender="sender@example.org", rcpts=("user@dest.example",), timeout=120,
             announce_size=False):
        """Sends one message over SMTP; returns the SmtpResult of the last stage reached.
        announce_size: MAIL FROM carries SIZE=<bytes> (Postfix passes it on to the milter)."""
        with self.session(timeout) as s:
            return self.transaction(s, data, sender, rcpts, announce_size)

    def session(self, timeout=120):
        """An open smtplib.SMTP session (EHLO done) for several transactions with transaction()."""
        return smtp.session(self.port, timeout)

    transaction = staticmethod(smtp.transaction)

    def queue_files(self, queue):
        """Queue file names in one of Postfix's queues (hold, deferred, active, incoming)."""
        out = []
        for root, _dirs, files in os.walk(os.path.join(self.queue_dir, queue)):
            out.extend(files)
        return out
