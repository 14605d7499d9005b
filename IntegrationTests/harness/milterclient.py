"""A small client for the milter wire protocol (version 6): the MTA's side of a session.

It drives a milter directly, without an MTA, for the overload test and the benchmark.
Framing: every packet is a 4-byte big-endian length (command byte included), one command
byte, then the data. The client offers every protocol step and action, honours the steps
the milter asks to skip (SMFIP_NO*) and the ones it will not answer (SMFIP_NR_*), strips
the leading space of header values unless the milter asked for SMFIP_HDR_LEADSPC, and
collects the end-of-message modifications (added headers, quarantine, ...) and progress.
Packets that need no reply are written together with the next one that does (one write per
round trip), so the client stays cheap; an MTA may write each command on its own instead.

    with MilterConnection.open("inet:8897@127.0.0.1") as m:
        m.negotiate()
        reply = m.send_message(raw_bytes, sender="<a@b>", rcpts=["<c@d>"])
        reply.action, reply.smtp_code, reply.added_headers
"""
import socket
import struct
import threading
import time

# Commands, MTA -> milter
SMFIC_ABORT = b"A"
SMFIC_BODY = b"B"
SMFIC_CONNECT = b"C"
SMFIC_MACRO = b"D"
SMFIC_BODYEOB = b"E"
SMFIC_HELO = b"H"
SMFIC_QUIT_NC = b"K"
SMFIC_HEADER = b"L"
SMFIC_MAIL = b"M"
SMFIC_EOH = b"N"
SMFIC_OPTNEG = b"O"
SMFIC_QUIT = b"Q"
SMFIC_RCPT = b"R"
SMFIC_DATA = b"T"
SMFIC_UNKNOWN = b"U"

# Replies, milter -> MTA
SMFIR_ADDRCPT = b"+"
SMFIR_DELRCPT = b"-"
SMFIR_ADDRCPT_PAR = b"2"
SMFIR_SHUTDOWN = b"4"
SMFIR_ACCEPT = b"a"
SMFIR_REPLBODY = b"b"
SMFIR_CONTINUE = b"c"
SMFIR_DISCARD = b"d"
SMFIR_CHGFROM = b"e"
SMFIR_CONN_FAIL = b"f"
SMFIR_ADDHEADER = b"h"
SMFIR_INSHEADER = b"i"
SMFIR_SETSYMLIST = b"l"
SMFIR_CHGHEADER = b"m"
SMFIR_PROGRESS = b"p"
SMFIR_QUARANTINE = b"q"
SMFIR_REJECT = b"r"
SMFIR_SKIP = b"s"
SMFIR_TEMPFAIL = b"t"
SMFIR_REPLYCODE = b"y"

FINAL = {SMFIR_ACCEPT, SMFIR_CONTINUE, SMFIR_DISCARD, SMFIR_REJECT, SMFIR_TEMPFAIL,
         SMFIR_REPLYCODE, SMFIR_SKIP, SMFIR_SHUTDOWN, SMFIR_CONN_FAIL}
MODIFICATIONS = {SMFIR_ADDRCPT, SMFIR_DELRCPT, SMFIR_ADDRCPT_PAR, SMFIR_REPLBODY, SMFIR_CHGFROM,
                 SMFIR_ADDHEADER, SMFIR_INSHEADER, SMFIR_CHGHEADER, SMFIR_QUARANTINE}

# Protocol steps (SMFIP_*)
SMFIP_NOCONNECT = 0x1
SMFIP_NOHELO = 0x2
SMFIP_NOMAIL = 0x4
SMFIP_NORCPT = 0x8
SMFIP_NOBODY = 0x10
SMFIP_NOHDRS = 0x20
SMFIP_NOEOH = 0x40
SMFIP_NR_HDR = 0x80
SMFIP_NOUNKNOWN = 0x100
SMFIP_NODATA = 0x200
SMFIP_SKIP = 0x400
SMFIP_RCPT_REJ = 0x800
SMFIP_NR_CONN = 0x1000
SMFIP_NR_HELO = 0x2000
SMFIP_NR_MAIL = 0x4000
SMFIP_NR_RCPT = 0x8000
SMFIP_NR_DATA = 0x10000
SMFIP_NR_UNKN = 0x20000
SMFIP_NR_EOH = 0x40000
SMFIP_NR_BODY = 0x80000
SMFIP_HDR_LEADSPC = 0x100000
MTA_PROTOCOL = 0x1FFFFF  # every step and no-reply flag version 6 knows

SMFIF_ALL = 0x1FF  # ADDHDRS CHGBODY ADDRCPT DELRCPT CHGHDRS QUARANTINE CHGFROM ADDRCPT_PAR SETSYMLIST

CHUNK = 65535  # largest body chunk without MDS negotiation (MILTER_CHUNK_SIZE)

_STEP = {  # command -> (skip flag, no-reply flag)
    SMFIC_CONNECT: (SMFIP_NOCONNECT, SMFIP_NR_CONN),
    SMFIC_HELO: (SMFIP_NOHELO, SMFIP_NR_HELO),
    SMFIC_MAIL: (SMFIP_NOMAIL, SMFIP_NR_MAIL),
    SMFIC_RCPT: (SMFIP_NORCPT, SMFIP_NR_RCPT),
    SMFIC_DATA: (SMFIP_NODATA, SMFIP_NR_DATA),
    SMFIC_HEADER: (SMFIP_NOHDRS, SMFIP_NR_HDR),
    SMFIC_EOH: (SMFIP_NOEOH, SMFIP_NR_EOH),
    SMFIC_BODY: (SMFIP_NOBODY, SMFIP_NR_BODY),
    SMFIC_UNKNOWN: (SMFIP_NOUNKNOWN, SMFIP_NR_UNKN),
}


class MilterError(Exception):
    pass


def _cstrings(*items):
    return b"".join((s.encode() if isinstance(s, str) else s) + b"\0" for s in items)


def _split_cstrings(data):
    parts = data.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return [p.decode("utf-8", "replace") for p in parts]


class Reply:
    """The milter's answer to one step. `action` is the final reply command byte;
    for SMFIR_REPLYCODE, smtp_code/enhanced/text hold the parsed reply."""

    def __init__(self, stage, action, data=b"", modifications=None, progress=0):
        self.stage = stage
        self.action = action
        self.data = data
        self.modifications = modifications or []
        self.progress = progress
        self.smtp_code = self.enhanced = self.text = None
        if action == SMFIR_REPLYCODE:
            line = data.rstrip(b"\0").decode("utf-8", "replace")
            parts = line.split(" ", 2)
            self.smtp_code = parts[0]
            if len(parts) > 1 and parts[1][:1].isdigit() and parts[1].count(".") == 2:
                self.enhanced = parts[1]
                self.text = parts[2] if len(parts) > 2 else ""
            else:
                self.text = " ".join(parts[1:])

    @property
    def kind(self):
        """accept | continue | reject | tempfail | discard | skip | ... (reply codes mapped by first digit)."""
        if self.action == SMFIR_REPLYCODE:
            return {"4": "tempfail", "5": "reject"}.get(self.smtp_code[:1], "replycode")
        return {SMFIR_ACCEPT: "accept", SMFIR_CONTINUE: "continue", SMFIR_DISCARD: "discard",
                SMFIR_REJECT: "reject", SMFIR_TEMPFAIL: "tempfail", SMFIR_SKIP: "skip",
                SMFIR_SHUTDOWN: "shutdown", SMFIR_CONN_FAIL: "connfail"}.get(self.action, repr(self.action))

    @property
    def ends_transaction(self):
        return self.action in (SMFIR_ACCEPT, SMFIR_DISCARD, SMFIR_REJECT, SMFIR_TEMPFAIL,
                               SMFIR_REPLYCODE, SMFIR_SHUTDOWN, SMFIR_CONN_FAIL)

    @property
    def added_headers(self):
        """(name, value) of SMFIR_ADDHEADER and SMFIR_INSHEADER modifications."""
        out = []
        for cmd, data in self.modifications:
            if cmd == SMFIR_ADDHEADER:
                n, v = (_split_cstrings(data) + ["", ""])[:2]
                out.append((n, v))
            elif cmd == SMFIR_INSHEADER:
                n, v = (_split_cstrings(data[4:]) + ["", ""])[:2]
                out.append((n, v))
        return out

    @property
    def quarantine_reason(self):
        for cmd, data in self.modifications:
            if cmd == SMFIR_QUARANTINE:
                return data.rstrip(b"\0").decode("utf-8", "replace")
        return None

    def __repr__(self):
        extra = f" {self.smtp_code} {self.enhanced} {self.text!r}" if self.action == SMFIR_REPLYCODE else ""
        mods = f" mods={[(c.decode(), d[:60]) for c, d in self.modifications]}" if self.modifications else ""
        return f"<Reply {self.stage}: {self.kind}{extra}{mods}>"


def parse_socket_spec(spec):
    """libmilter socket syntax -> (family, address): unix:/path, local:/path, inet:PORT@HOST, inet6:PORT@HOST."""
    kind, _, rest = spec.partition(":")
    if kind in ("unix", "local"):
        return socket.AF_UNIX, rest
    if kind in ("inet", "inet6"):
        port, _, host = rest.partition("@")
        fam = socket.AF_INET6 if kind == "inet6" else socket.AF_INET
        return fam, (host or ("::1" if kind == "inet6" else "127.0.0.1"), int(port))
    if spec.startswith("/"):
        return socket.AF_UNIX, spec
    raise ValueError(f"unsupported milter socket spec {spec!r}")


class MilterConnection:
    def __init__(self, sock, timeout=60.0):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.version = None
        self.actions = 0
        self.protocol = 0  # the flags the milter asked for
        self.symlists = {}
        self._out = []  # packets not sent yet: written in one go when a reply is awaited
        self._out_bytes = 0

    @classmethod
    def open(cls, spec, timeout=60.0, connect_timeout=10.0):
        fam, addr = parse_socket_spec(spec)
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(connect_timeout)
        try:
            s.connect(addr)
        except BaseException:
            s.close()
            raise
        return cls(s, timeout)

    def close(self):
        try:
            self.flush()
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- framing -------------------------------------------------------------------
    def send_packet(self, cmd, data=b""):
        """Queues a packet; packets that need no reply go out together with the next one that does
        (fewer system calls: the client must not be the bottleneck of a benchmark)."""
        self._out.append(struct.pack(">I", len(data) + 1) + cmd)
        self._out.append(data)
        self._out_bytes += len(data) + 5
        if self._out_bytes >= 256 * 1024:
            self.flush()

    def flush(self):
        if self._out:
            out, self._out, self._out_bytes = self._out, [], 0
            self.sock.sendall(b"".join(out))

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise MilterError(f"milter closed the connection ({len(buf)} of {n} bytes read)")
            buf += chunk
        return bytes(buf)

    def read_packet(self):
        self.flush()
        (length,) = struct.unpack(">I", self._recv_exact(4))
        if length < 1 or length > 16 * 1024 * 1024:
            raise MilterError(f"bad packet length {length}")
        body = self._recv_exact(length)
        return body[:1], body[1:]

    def read_reply(self, stage):
        """Reads until a final reply; modifications and progress packets are collected on the way."""
        mods, progress = [], 0
        while True:
            cmd, data = self.read_packet()
            if cmd == SMFIR_PROGRESS:
                progress += 1
                continue
            if cmd in MODIFICATIONS:
                if stage != "eom":
                    raise MilterError(f"modification {cmd!r} outside end-of-message (at {stage})")
                mods.append((cmd, data))
                continue
            if cmd in FINAL:
                return Reply(stage, cmd, data, mods, progress)
            raise MilterError(f"unexpected reply {cmd!r} at {stage}")

    # --- protocol steps ------------------------------------------------------------
    def negotiate(self, version=6, actions=SMFIF_ALL, protocol=MTA_PROTOCOL):
        self.send_packet(SMFIC_OPTNEG, struct.pack(">III", version, actions, protocol))
        cmd, data = self.read_packet()
        if cmd != SMFIC_OPTNEG or len(data) < 12:
            raise MilterError(f"bad option negotiation reply {cmd!r} {data!r}")
        self.version, self.actions, self.protocol = struct.unpack(">III", data[:12])
        rest = data[12:]
        while len(rest) >= 4:  # optional per-stage macro lists
            (where,) = struct.unpack(">I", rest[:4])
            names, _, rest = rest[4:].partition(b"\0")
            self.symlists[where] = names.decode()
        if self.protocol & ~protocol:
            raise MilterError(f"milter asked for protocol flags we did not offer: {self.protocol:#x}")
        return self

    def skips(self, cmd):
        return bool(self.protocol & _STEP[cmd][0])

    def no_reply(self, cmd):
        return bool(self.protocol & _STEP[cmd][1])

    def macros(self, cmd, values):
        if values:
            flat = []
            for k, v in values.items():
                flat += [k, v]
            self.send_packet(SMFIC_MACRO, cmd + _cstrings(*flat))

    def _step(self, cmd, data, stage):
        if self.skips(cmd):
            return None
        self.send_packet(cmd, data)
        if self.no_reply(cmd):
            return None
        return self.read_reply(stage)

    def connect(self, hostname="client.example", address="127.0.0.1", port=40000, macros=None):
        self.macros(SMFIC_CONNECT, macros)
        if address is None:
            data = _cstrings(hostname) + b"U"
        else:
            fam = b"6" if ":" in address else b"4"
            data = _cstrings(hostname) + fam + struct.pack(">H", port) + _cstrings(address)
        return self._step(SMFIC_CONNECT, data, "connect")

    def helo(self, name="client.example", macros=None):
        self.macros(SMFIC_HELO, macros)
        return self._step(SMFIC_HELO, _cstrings(name), "helo")

    def mail(self, sender, *esmtp_args, macros=None):
        self.macros(SMFIC_MAIL, macros)
        return self._step(SMFIC_MAIL, _cstrings(sender, *esmtp_args), "mail")

    def rcpt(self, rcpt, *esmtp_args, macros=None):
        self.macros(SMFIC_RCPT, macros)
        return self._step(SMFIC_RCPT, _cstrings(rcpt, *esmtp_args), "rcpt")

    def data(self, macros=None):
        self.macros(SMFIC_DATA, macros)
        return self._step(SMFIC_DATA, b"", "data")

    def header(self, name, value):
        """`value` as it follows the colon, leading space included; stripped unless HDR_LEADSPC."""
        if not (self.protocol & SMFIP_HDR_LEADSPC) and value.startswith((" ", "\t")):
            value = value[1:]
        return self._step(SMFIC_HEADER, _cstrings(name, value), "header")

    def eoh(self, macros=None):
        self.macros(SMFIC_EOH, macros)
        return self._step(SMFIC_EOH, b"", "eoh")

    def body(self, data):
        """Sends one body chunk (at most CHUNK bytes)."""
        assert len(data) <= CHUNK
        return self._step(SMFIC_BODY, bytes(data), "body")

    def eom(self, macros=None):
        self.macros(SMFIC_BODYEOB, macros)
        self.send_packet(SMFIC_BODYEOB)
        return self.read_reply("eom")

    def abort(self):
        self.send_packet(SMFIC_ABORT)

    def quit(self):
        try:
            self.send_packet(SMFIC_QUIT)
        except OSError:
            pass
        self.close()

    # --- a whole transaction -------------------------------------------------------
    def send_content(self, raw):
        """Sends the headers, EOH and the body of `raw` in CHUNK pieces, but no EOM: the session then
        holds the message. Returns the first reply that is not `continue`, and stops there (None when
        every step continued)."""
        headers, body = split_message(raw)
        steps = [lambda n=n, v=v: self.header(n, v) for n, v in headers] + [self.eoh]
        steps += [lambda i=i: self.body(body[i:i + CHUNK]) for i in range(0, len(body), CHUNK)]
        for step in steps:
            r = step()
            if r is not None and r.kind != "continue":
                return r
        return None

    def send_message(self, raw, sender="<sender@example.org>", rcpts=("<user@dest.example>",),
                     mail_macros=None, rcpt_macros=None, before_eom=None):
        """Sends MAIL, RCPT, DATA, headers, EOH, body and EOM for one RFC 5322 message.

        Returns the first reply that ends the transaction (or the EOM reply). When the
        transaction ends before EOM, sends SMFIC_ABORT so the session can carry on.
        `before_eom`, if given, is called right before EOM (e.g. a barrier).
        """
        headers, body = split_message(raw)

        def done(reply):
            return reply is not None and reply.ends_transaction

        def finish(reply):
            if reply.action != SMFIR_ACCEPT:  # accept ends the message too, nothing to abort
                self.abort()
            return reply

        r = self.mail(sender, macros=mail_macros)
        if done(r):
            return finish(r)
        for i, rcpt in enumerate(rcpts):
            r = self.rcpt(rcpt, macros=rcpt_macros if i == 0 else None)
            if done(r):
                return finish(r)
        r = self.data()
        if done(r):
            return finish(r)
        for name, value in headers:
            r = self.header(name, value)
            if done(r):
                return finish(r)
        r = self.eoh()
        if done(r):
            return finish(r)
        for i in range(0, len(body), CHUNK):
            r = self.body(body[i:i + CHUNK])
            if r is not None and r.action == SMFIR_SKIP:
                break
            if done(r):
                return finish(r)
        if before_eom is not None:
            before_eom()
        return self.eom()


def split_message(raw):
    """(headers as [(name, value-after-colon)], body bytes) of a CRLF or LF message; folded lines kept."""
    if isinstance(raw, str):
        raw = raw.encode()
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, body = raw, b""
    headers = []
    for line in head.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and headers:
            n, v = headers[-1]
            headers[-1] = (n, v + "\r\n" + line.decode("utf-8", "replace"))
            continue
        name, _, value = line.partition(b":")
        headers.append((name.decode("utf-8", "replace"), value.decode("utf-8", "replace")))
    return headers, body


def run_session(spec, raw, sender="<sender@example.org>", rcpts=("<user@dest.example>",),
                connect_macros=None, mail_macros=None, rcpt_macros=None, timeout=60.0,
                before_eom=None):
    """One connection, one message: connect, negotiate, send, quit. Returns the Reply."""
    with MilterConnection.open(spec, timeout=timeout) as m:
        m.negotiate()
        r = m.connect(macros=connect_macros or {"j": "mx.breakwater.test", "{daemon_name}": "test"})
        if r is not None and r.ends_transaction:
            return r
        r = m.helo()
        if r is not None and r.ends_transaction:
            return r
        reply = m.send_message(raw, sender, rcpts, mail_macros=mail_macros,
                               rcpt_macros=rcpt_macros or {"i": "TESTQID"}, before_eom=before_eom)
        m.quit()
        return reply


def start_session(spec, raw, timeout=60.0, **kwargs):
    """run_session in a thread of its own. Returns (thread, out): `out` gets "eom" (monotonic time
    end-of-message was sent), then "reply" and "answered" (when it came), or "error"."""
    out = {}

    def body():
        try:
            out["reply"] = run_session(spec, raw, timeout=timeout,
                                       before_eom=lambda: out.setdefault("eom", time.monotonic()), **kwargs)
            out["answered"] = time.monotonic()
        except Exception as e:  # the caller asserts on it
            out["error"] = repr(e)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, out
