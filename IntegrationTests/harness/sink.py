"""A small threaded SMTP server on 127.0.0.1 that stores every message it accepts.

It is the tests' own final destination (Postfix relays to it), so that a test can check
that an accepted message arrived, once, with the headers the milter added.
"""
import email
import email.policy
import socket
import socketserver
import threading
import time

from .ports import free_port, release_port


class StoredMessage:
    def __init__(self, mail_from, rcpts, data):
        self.mail_from = mail_from
        self.rcpts = rcpts
        self.data = data  # bytes, CRLF line ends, dot-unstuffed
        self.message = email.message_from_bytes(data, policy=email.policy.compat32)

    def header(self, name):
        v = self.message.get(name)
        return None if v is None else str(v)

    def headers(self, name):
        return [str(v) for v in (self.message.get_all(name) or [])]


class _Handler(socketserver.StreamRequestHandler):
    timeout = 120

    def reply(self, line):
        self.wfile.write(line.encode("ascii") + b"\r\n")
        self.wfile.flush()

    def handle(self):
        try:
            self._session()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client went away (Postfix may close right after QUIT): nothing to store

    def _session(self):
        sink = self.server.sink
        self.reply("220 sink.test ESMTP test sink")
        mail_from, rcpts = None, []
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            line = raw.rstrip(b"\r\n").decode("latin-1")
            verb = line[:4].upper()
            if verb in ("EHLO",):
                self.reply("250-sink.test")
                self.reply("250-8BITMIME")
                self.reply("250-SIZE 0")
                self.reply("250 PIPELINING")
            elif verb == "HELO":
                self.reply("250 sink.test")
            elif verb == "MAIL":
                mail_from, rcpts = line[10:].split(" ")[0].strip(), []
                self.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                rcpts.append(line[8:].split(" ")[0].strip())
                self.reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if mail_from is None or not rcpts:
                    self.reply("503 5.5.1 need MAIL and RCPT")
                    continue
                self.reply("354 go ahead")
                chunks = []
                while True:
                    l = self.rfile.readline(1 << 20)
                    if not l:
                        return
                    if l in (b".\r\n", b".\n"):
                        break
                    if l.startswith(b"."):
                        l = l[1:]
                    chunks.append(l)
                sink._store(StoredMessage(mail_from, rcpts, b"".join(chunks)))
                mail_from, rcpts = None, []
                self.reply("250 2.0.0 Ok: stored")
            elif verb == "RSET":
                mail_from, rcpts = None, []
                self.reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("502 5.5.2 not implemented")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = False


class SmtpSink:
    """Start with start(), stop with stop(). `messages` holds every accepted message."""

    def __init__(self):
        self.port = None
        self.messages = []
        self._cond = threading.Condition()
        self._server = None
        self._thread = None

    def start(self):
        self.port = free_port()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.sink = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="smtp-sink", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(10)
            self._server = None
            release_port(self.port)

    def _store(self, msg):
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def find(self, header, value):
        """Messages whose `header` equals `value` (whitespace-trimmed)."""
        with self._cond:
            return [m for m in self.messages if (m.header(header) or "").strip() == value]

    def wait_for(self, header, value, timeout=30.0, count=1):
        """Waits until `count` messages with header == value arrived; returns them (maybe fewer on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.messages if (m.header(header) or "").strip() == value]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    return found
                self._cond.wait(left)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
