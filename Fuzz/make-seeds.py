#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora (Fuzz/corpus/<target>/) from the repository's own inputs:
sample and ham messages, the shipped config, signature patterns as `signatures add` takes them,
control requests and HTTP requests. Run from the repository root; the output is committed, so
rerun only to change the seeds. Each seed is small (libFuzzer mutates from there). The regress-*
files beside them are fuzzer findings, added by hand (each has a unit test): this script leaves them."""
import email, email.policy, glob, os, re, struct

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


messages = sorted(glob.glob("Signatures/samples/*/*.eml"))[::3] + sorted(glob.glob("Signatures/ham/*.eml"))[::3]


def split_message(raw):
    """(headers [(name, value)], body) as libmilter hands them over: unfolded into name and value,
    folded lines kept with their LF."""
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    headers = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and headers:
            n, v = headers[-1]
            headers[-1] = (n, v + b"\n" + line)
        elif b":" in line:
            n, _, v = line.partition(b":")
            headers.append((n, v.lstrip(b" ")))
    return headers, body.replace(b"\n", b"\r\n")


# Assembly: two setup bytes, then ops (see Fuzz/FuzzAssembly): 0 header, 1 body, 2 repeat, 3 long
# header, 4 declared SIZE.
for path in messages:
    headers, body = split_message(open(path, "rb").read())
    out = bytearray([0x35, 0x05]) + bytes([4, 0, 0, 0, 0x10, 0])
    for n, v in headers:
        field = (n + b"\0" + v)[:255]
        out += bytes([0, len(field)]) + field
    for i in range(0, len(body), 255):
        chunk = body[i:i + 255]
        out += bytes([1, len(chunk)]) + chunk
    put("assembly", os.path.basename(path), bytes(out))
# 10,000 headers, a 1 MB header line, NUL and bare CR, a declared 30 MB SIZE on a small message.
put("assembly", "many-headers", bytes([0x00, 0x07, 2, 0x27, 0x10, 0, 7]) + b"X-A\0b c" + bytes([1, 4]) + b"body")
put("assembly", "long-line", bytes([0xf3, 0x07, 3, 0x10, 0x00, 0x00, 0x41, 1, 3]) + b"end")
put("assembly", "nul-cr", bytes([0x11, 0x08, 0, 12]) + b"Subject\0a\rb\nc" + bytes([1, 6]) + b"a\0b\rc\n")
put("assembly", "declared-size", bytes([0x35, 0x00, 4, 0, 0x01, 0xc9, 0xc3, 0x80, 0, 8]) + b"To\0x@y.z" + bytes([1, 5]) + b"EICAR")
# Wave: a Subject line, then layers (kind byte + bytes) separated by 0xFF.
for path in messages:
    msg = email.message_from_bytes(open(path, "rb").read(), policy=email.policy.compat32)
    subject = (msg.get("Subject") or "").replace("\n", " ").encode(errors="replace")
    layers = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("text/plain", "text/html"):
            payload = (part.get_payload(decode=True) or b"")[:3000]
            layers.append(bytes([0 if ctype == "text/plain" else 1]) + payload.replace(b"\xff", b"?"))
    if layers:
        put("wave", os.path.basename(path), subject[:300] + b"\n" + b"\xff".join(layers))
put("wave", "encoded-words", b"=?utf-8?q?=1B[2J_Mini_Cooper?= =?iso-8859-1?b?R2l2ZWF3YXk=?= =?x?q?a?=\n"
    b"\x00You have been selected to receive a brand new Mini Cooper, visit https://win.example.co.uk/x?id=1\xff"
    b"\x01<p>Claim &amp; collect &#x41;&#66; <script>x</script><!-- c --> today</p>")
put("wave", "utf16", b"Hello\n\x02" + "selected to receive a brand new car today from us".encode("utf-16-le")
    + b"\xff\x05" + "<b>selected</b> to receive".encode("utf-16-be"))

# Config: the shipped file (commented defaults) and small real settings.
put("config", "debian-breakwater.conf", open("debian/breakwater.conf", "rb").read())
put("config", "small.conf", "socket = inet:8897@127.0.0.1\nworkers = 4\nmax-message-size = 25M\n"
    "skip-networks = 127.0.0.0/8, ::1\naction = Breakwater.Spam.* reject\nreject-message = \" Rejected: %s \"\n"
    "# comment\n\nwave-min-messages = 20\nmax-wait = 20s\n")
put("config", "errors.conf", "socket = inet:8897@127.0.0.1\nworkrs = 4\n")
put("config", "regress-crlf.conf", "socket = inet:8897@127.0.0.1\r\ncontrol = /run/x.sock\r\n")

# Signatures: mode byte (kind in bits 0-2, ignore case 0x08, trigger 0x10, name from input 0x80),
# then name \0 pattern \0 trigger.
put("signature", "text", b"\x00Local.X\0mini cooper giveaway")
put("signature", "text-icase", b"\x08Local.X\0Congratulations!  You have been selected")
put("signature", "regex", b"\x02Local.X\0(?i)claim\\s+your\\s+prize\\d{2,}: now;")
put("signature", "regex-trigger", b"\x12Local.X\0[a-z]+ cooper|mini\0cooper")
put("signature", "hex", b"\x04Local.X\0deadBEEF??{2-4}(aa|bb)*0102")
put("signature", "sha256", b"\x06Local.X\0" + b"a" * 64)
put("signature", "bad-name", b"\x80Local.Bad\nName\0text here")
for line in open("Signatures/breakwater-spam.ldb", encoding="utf-8"):
    if not line.startswith("#") and "/" in line:
        m = re.search(r";\d+/(.*)/[a-z]*$", line.strip())
        if m:
            put("signature", "shipped-regex", b"\x02Local.X\0" + m.group(1).encode())
            break

# Control: mode byte (chunk size, OK/ERR for the answer), then what a client writes.
for i, req in enumerate([b"PING\n", b"STATUS JSON\r\n", b"status text", b"RELOAD NOWAIT\n",
                         b"WAVES PROMOTED Local.Wave.x\n", b"HELP\n\x01body line\x01second",
                         b"SIGNATURES ADD Local.X text mini cooper\n", b"\xc3\x28\n", b"A\0B\n"]):
    put("control", "req%d" % i, bytes([0x40 | (i * 7 % 64)]) + req)

# HTTP: chunk-size byte, then the request as a client sends it.
put("http", "get", b"\x10GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9897\r\nUser-Agent: Prometheus/2.45\r\nAccept: text/plain\r\n\r\n")
put("http", "head-lf", b"\x03HEAD /metrics?x=1 HTTP/1.0\n\n")
put("http", "bad", b"\x7fget metrics HTTP/2\r\nHost: [::1]\r\n\r\nbody")
