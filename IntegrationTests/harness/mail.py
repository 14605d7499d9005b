"""Test messages and a tiny signature set the tests write themselves.

The signature set does not depend on the shipped one: Test.EICAR (the EICAR test file)
and Test.Spam.MiniCooperWave (the giveaway wave's phrase, in either case of MINI).
libclamav reports names from unsigned databases with ".UNOFFICIAL" appended.
"""
import base64
import os
import quopri
import uuid

# Assembled from two halves so this source file is not itself an EICAR hit.
EICAR = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*").encode()

EICAR_SIG = "Test.EICAR"
SPAM_SIG = "Test.Spam.MiniCooperWave"
_COOPER_PHRASE = b"selected to receive a brand new "


def write_signatures(directory):
    """Writes test.ndb into `directory` (created); returns the directory."""
    os.makedirs(directory, exist_ok=True)
    cooper = _COOPER_PHRASE.hex() + "(4d494e49|4d696e69)" + b" Cooper".hex()
    with open(os.path.join(directory, "test.ndb"), "w") as f:
        f.write(f"{EICAR_SIG}:0:*:{EICAR.hex()}\n")
        f.write(f"{SPAM_SIG}:0:*:{cooper}\n")
    return directory


def test_id():
    return uuid.uuid4().hex[:16]


def _headers(tid, subject, extra=()):
    h = [
        "From: Alice Sender <alice@example.org>",
        "To: Bob <user@dest.example>",
        f"Subject: {subject}",
        "Date: Mon, 04 Mar 2024 07:00:00 +0000",
        f"Message-ID: <{tid}@example.org>",
        f"X-Test-Id: {tid}",
        "MIME-Version: 1.0",
        *extra,
    ]
    return "\r\n".join(h) + "\r\n"


def ham(tid, body_lines=20):
    text = "\r\n".join(f"Line {i}: the quarterly report is attached, see the figures for review."
                       for i in range(body_lines))
    return (_headers(tid, "Quarterly report", ["Content-Type: text/plain; charset=utf-8"])
            + "\r\n" + text + "\r\n").encode()


def eicar_attachment(tid, filename="eicar.txt"):
    b = "bw-" + tid
    att = base64.encodebytes(EICAR).decode().replace("\n", "\r\n")
    return (_headers(tid, "Invoice attached", [f'Content-Type: multipart/mixed; boundary="{b}"'])
            + "\r\n"
            + f"--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease see the attached invoice.\r\n"
            + f'--{b}\r\nContent-Type: text/plain; name="{filename}"\r\n'
            + f'Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="{filename}"\r\n\r\n'
            + att + f"--{b}--\r\n").encode()


def mini_cooper_spam(tid, variant=0):
    """One message of the giveaway wave: multipart/alternative, the text part in
    quoted-printable, the HTML part in base64 (variant changes wording, case and numbers)."""
    mini = "MINI" if variant % 2 == 0 else "Mini"
    phrase = _COOPER_PHRASE.decode()
    text = (f"Dear customer #{variant},\r\n\r\nCongratulations! You have been {phrase}{mini} Cooper "
            f"in our {2024 + variant % 3} Customer Appreciation Giveaway.\r\n"
            f"Claim it within {24 + variant} hours: http://prize.example/{tid}\r\n")
    html = (f"<html><body><p>Dear customer #{variant},</p><p>Congratulations! You have been "
            f"{phrase}{mini} Cooper.</p><p><a href=\"http://prize.example/{tid}\">claim</a></p></body></html>")
    qp = quopri.encodestring(text.encode()).decode()
    b64 = base64.encodebytes(html.encode()).decode().replace("\n", "\r\n")
    b = "alt-" + tid
    return (_headers(tid, f"You won a {mini} Cooper!", [f'Content-Type: multipart/alternative; boundary="{b}"'])
            + "\r\n"
            + f"--{b}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            + qp + "\r\n"
            + f"--{b}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + b64 + f"--{b}--\r\n").encode()


def large_ham(tid, size):
    """A plain-text ham of about `size` bytes (base64 attachment of text lines)."""
    line = b"The quick brown fox jumps over the lazy dog, figures for review 0123456789.\n"
    n = max(0, (size - 600) * 3 * 76 // (4 * 78))  # base64: 4/3, plus CRLF every 76 characters
    payload = (line * (n // len(line) + 1))[:n]
    att = base64.encodebytes(payload).decode().replace("\n", "\r\n")
    b = "bw-" + tid
    return (_headers(tid, "Large report", [f'Content-Type: multipart/mixed; boundary="{b}"'])
            + "\r\n"
            + f"--{b}\r\nContent-Type: text/plain\r\n\r\nThe large report.\r\n"
            + f'--{b}\r\nContent-Type: text/plain; name="report.txt"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            + att + f"--{b}--\r\n").encode()


def large_with_eicar_at_end(tid, size):
    """About `size` bytes of ham text with the EICAR file attached last (needs a full scan to find)."""
    msg = large_ham(tid, size)
    b = ("bw-" + tid).encode()
    att = base64.encodebytes(EICAR).replace(b"\n", b"\r\n")
    end = b"--" + b + b"--\r\n"
    assert msg.endswith(end)
    return (msg[: -len(end)] + b"--" + b + b'\r\nContent-Type: application/octet-stream; name="x.com"\r\n'
            + b"Content-Transfer-Encoding: base64\r\n\r\n" + att + end)


def slow_message(parts=1500, repeat=8):
    """A small message that takes libclamav long to scan: many tiny base64 MIME parts (each is decoded
    to a temporary file and scanned; `repeat` sets each part's size). Needs a raised --max-files to be
    scanned in full."""
    body = []
    for i in range(parts):
        body.append(f'--p\r\nContent-Type: application/octet-stream; name="f{i}.bin"\r\n'
                    "Content-Transfer-Encoding: base64\r\n\r\n"
                    + base64.b64encode(f"part {i} data ".encode() * repeat).decode() + "\r\n")
    return ("From: a@example.org\r\nTo: b@dest.example\r\nSubject: many parts\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="p"\r\n\r\n' + "".join(body) + "--p--\r\n").encode()
