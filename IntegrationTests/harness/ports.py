"""Free loopback TCP ports that stay reserved for this process.

Postfix binds with SO_REUSEPORT, so a second instance on a taken port starts without
an error and the kernel splits the connections between the two. A port is therefore
handed out only when (a) this process holds an exclusive lock on a per-port lock file,
so that concurrent test sessions on the machine never pick the same one, and (b) a
plain bind() without SO_REUSEADDR/SO_REUSEPORT succeeds, so nothing listens there now
(also not a SO_REUSEPORT listener, which a plain bind collides with).
Ports come from below the kernel's ephemeral range so outgoing connections do not take them.
"""
import errno
import fcntl
import os
import random
import socket

LOCK_DIR = "/tmp/breakwater-test-ports"
_held = {}  # port -> open lock file, kept for the life of the process


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_is_free(port, host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(host="127.0.0.1"):
    """A port nobody listens on, reserved for this process (see module doc)."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    try:
        os.chmod(LOCK_DIR, 0o1777)
    except OSError:
        pass
    high = min(_ephemeral_low(), 65535) - 1
    low = max(10000, high - 20000)
    rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "little"))
    for _ in range(2000):
        port = rng.randint(low, high)
        if port in _held:
            continue
        path = os.path.join(LOCK_DIR, str(port))
        f = open(path, "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.close()
            if e.errno in (errno.EAGAIN, errno.EACCES):
                continue
            raise
        if port_is_free(port, host):
            _held[port] = f
            return port
        f.close()
    raise RuntimeError("no free loopback port found")


def release_port(port):
    f = _held.pop(port, None)
    if f is not None:
        f.close()
