"""Process helpers: /proc status fields, listening sockets, stopping by PID."""
import os
import re
import signal
import time


def status(pid):
    """/proc/PID/status as a dict of str -> str; sizes keep their 'kB' suffix."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def status_kb(pid, field):
    """An integer field of /proc/PID/status (VmRSS, VmHWM in kB; Threads as a count)."""
    return int(status(pid)[field].split()[0])


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def tree(pid):
    """`pid` and every process under it (Breakwater's engine host and scan workers)."""
    return [pid] + descendants(pid)


def cpu_seconds(pids):
    """CPU seconds (user + system) of `pids` and of their children that ended and were waited for."""
    user, system, _ = cpu_split(pids)
    return user + system


def cpu_split(pids):
    """(user seconds, system seconds, minor page faults) of `pids` so far, each summed over them and
    over the children they waited for (so pass a whole tree, procs.tree: a process that ends between two
    readings is counted in its parent's). System time is where first touches of fresh memory show."""
    user = system = faults = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                x = f.read().rsplit(")", 1)[1].split()
            faults += int(x[7]) + int(x[8])
            user += int(x[11]) + int(x[13])
            system += int(x[12]) + int(x[14])
        except (OSError, IndexError, ValueError):
            pass
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick, faults


def pss_kb(pid):
    """Proportional set size of `pid`, kB (a page shared by n processes counts 1/n); 0 when gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            m = re.search(r"^Pss:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1)) if m else 0
    except OSError:
        return 0


def descendants(pid):
    """PIDs under `pid`, at any depth."""
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def children(pid):
    """PIDs whose parent is `pid`."""
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            kids.append(int(d))
    return kids


def kill(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def tcp_listening(port, host="127.0.0.1"):
    """True when a socket is in LISTEN state on host:port (read from /proc/net, no connection made)."""
    want_port = f"{port:04X}"
    a, b, c, d = (int(x) for x in host.split("."))
    want_addr = f"{d:02X}{c:02X}{b:02X}{a:02X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    addr, p = parts[1].split(":")
                    if parts[3] == "0A" and p == want_port and (addr in (want_addr, "00000000") or table.endswith("6")):
                        return True
        except FileNotFoundError:
            continue
    return False


def unix_listening(path):
    """True when a unix stream socket bound to `path` is listening (from /proc/net/unix)."""
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            parts = line.split()
            # Num RefCount Protocol Flags Type St Inode [Path]; Flags __SO_ACCEPTCON = 00010000
            if len(parts) >= 8 and parts[7] == path and int(parts[3], 16) & 0x10000:
                return True
    return False


def read_log(path):
    """The text of a log file so far ("" before it exists); undecodable bytes replaced."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""
