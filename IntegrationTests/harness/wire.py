"""Raw exchanges with a server: send bytes, read everything it answers until it closes."""
import socket


def exchange(address, data, timeout=15, shut=False):
    """Connects to `address` (a unix socket path, or a (host, port) pair), sends `data`, reads to EOF.

    Returns (bytes received, the error the exchange ended with or None). A server may answer and close
    before it has taken everything: that is reported as the error, not raised. `shut` half-closes the
    sending side after `data`.
    """
    if isinstance(address, str):
        fam = socket.AF_UNIX
    else:
        fam = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(address)
        err = None
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err = e
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except ConnectionResetError as e:
            err = err or e
        return out, err
