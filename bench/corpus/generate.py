#!/usr/bin/env python3
"""The benchmarks' own mail corpus: deterministic RFC 5322 / MIME messages with known verdicts.

    bench/corpus/generate.py --seed 1 --count 3000 --out DIR [--large-frac 0.02]

Writes DIR/NNNNNN.eml (CRLF line ends, 7-bit clean, an X-Bench-Id header in each) and
DIR/manifest.tsv: filename, class (ham, spam, malware), expected signature ('-' for ham), kind (the
variant that made it), bytes. The same seed and count give the same bytes (on the same
clamav-testfiles package). Only the Python standard library.

The classes (exact fractions of --count, in a shuffled order):
  ham      61 %   plain text, HTML, multipart/alternative, multipart/related with an inline image,
                  attachments (PDF-like, CSV, text, ZIP of text files, PNG-like), and near misses
                  that talk about the spam topics without the spam's phrases
  spam     26 %   two waves of near-identical messages, varied per message and sent as 7bit,
                  quoted-printable or base64: a car giveaway (Bench.Spam.MiniCooperWave) and a
                  credential phish (Bench.Phish.CredHarvest)
  malware  13 %   a file of Debian's clamav-testfiles attached as is, inside a zip, a zip in a zip
                  or a forwarded message (Bench.Malware.ClamTestFile; clam-upx.exe by its hash,
                  Bench.Malware.ClamUpx.SHA256), and EICAR attached, inline or zipped
                  (Bench.Test.EICAR)
  large    --large-frac (default 2 %), in place of as much ham: 1-8 MB attachments, a quarter
                  of them with EICAR zipped behind a large filler
The expected names are those of bench/sigs/ (libclamav adds .UNOFFICIAL; the benchmarks strip it).
Without clamav-testfiles (apt install clamav-testfiles; scripts/setup.sh --bench) the malware is
EICAR only.
"""
import argparse
import base64
import io
import os
import quopri
import random
import shutil
import sys
import zipfile

SIG_CLAM = "Bench.Malware.ClamTestFile"
SIG_UPX = "Bench.Malware.ClamUpx.SHA256"
SIG_EICAR = "Bench.Test.EICAR"
SIG_COOPER = "Bench.Spam.MiniCooperWave"
SIG_PHISH = "Bench.Phish.CredHarvest"

TESTFILES = "/usr/share/clamav-testfiles"
# Files of clamav-testfiles that bench/sigs/ names Bench.Malware.ClamTestFile wherever they are
# attached (checked with `breakwater scan --signatures bench/sigs`). Left out: clam-upx.exe and
# clam-mew.exe, which also match a hash signature (clam-upx.exe is used alone, by its hash), and
# clam_cache_emax.tgz, which hits a recursion limit.
CLAM_FILES = """clam-aspack.exe clam-fsg.exe clam-nsis.exe clam-pespin.exe clam-petite.exe clam-upack.exe
clam-wwpack.exe clam-yc.exe clam.7z clam.arj clam.bin-be.cpio clam.bin-le.cpio clam.bz2.zip clam.cab
clam.chm clam.d64.zip clam.ea05.exe clam.ea06.exe clam.exe clam.exe.binhex clam.exe.bz2 clam.exe.html
clam.exe.mbox.base64 clam.exe.mbox.uu clam.exe.rtf clam.exe.szdd clam.impl.zip clam.mail clam.newc.cpio
clam.odc.cpio clam.ole.doc clam.pdf clam.ppt clam.sis clam.tar.gz clam.tnef clam.zip clam_IScab_ext.exe
clam_IScab_int.exe clam_ISmsi_ext.exe clam_ISmsi_int.exe""".split()
# Two halves, so that this file is not itself an EICAR hit.
EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
ZIP_TIME = (2025, 5, 6, 10, 0, 0)

VOCABULARY = """account action agenda analysis annual approval approve april archive attached audit
available backup balance benefits billing board booking branch budget building calendar call
campaign catalogue change chapter checklist client cloud colleague comments committee compliance
conference confirm contract copy cost coverage customer data database deadline delivery department
design detail director discuss document draft estimate event expenses facilities feedback figures
final finance follow forecast freight growth guidelines handover holiday incident inventory invoice
issue kitchen laptop launch legal license logistics lunch maintenance manager market meeting
migration milestone minutes monday morning network notes notice office onboarding order outage
parking partner payment pending planning policy presentation pricing printer procedure process
product progress project proposal purchase quarter quota receipt release remote renewal report
request resources results review revision risk room sales schedule security server service session
shipment signature slides software staffing statement status storage summary supplier support
system team test thursday ticket timeline training travel tuesday update vendor version warehouse
wednesday window workflow workshop""".split()
FILLER = """the a of to and in for on with at from by as is are was be will can should would we you
our your this that these it""".split()
FIRST = ["Alice", "Bruno", "Chiara", "Dmitri", "Emma", "Farid", "Greta", "Hannes", "Ilse", "Jakob",
         "Kofi", "Lena", "Marco", "Nadia", "Oskar", "Paula", "Rafael", "Sofia", "Tomas", "Ursula",
         "Viktor", "Wanda", "Xavier", "Yara", "Zeno"]
LAST = ["Adler", "Bauer", "Castro", "Dietrich", "Eriksen", "Ferreira", "Gruber", "Horvat", "Ito",
        "Jensen", "Keller", "Lindqvist", "Moretti", "Nowak", "Okafor", "Petersen", "Quist", "Richter",
        "Santos", "Thorsen", "Urban", "Vogel", "Wagner", "Yilmaz", "Zimmer"]
DOMAINS = ["example.com", "example.net", "example.org", "office.example", "supplier.example.com",
           "partner.example.net", "lists.example.org", "shop.example", "uni.example.edu"]
RCPT_DOMAIN = "dest.bench.test"
# The waves' boilerplate: one variant of each paragraph per message.
PITCH = [
    ("This exclusive offer is reserved for a small number of our most loyal customers. " * 3,
     "This exclusive promotion is reserved for a few of our most valued customers. " * 3),
    ("To receive your car, confirm your delivery address and pay the registration fee within the deadline. "
     "Cars not claimed in time are given to the next winner on the list. " * 2,
     "To receive the car, confirm the delivery address and pay the registration fee before the deadline. "
     "Unclaimed cars go to the next winner on our list. " * 2),
    ("The vehicle comes with a full tank, winter tyres and a three-year warranty. Delivery is free of charge "
     "to any address in Europe. Our agents will call you to arrange the handover. " * 2,
     "Your vehicle comes with a full tank, winter tyres and a warranty of three years. We deliver free of "
     "charge anywhere in Europe. An agent will call you to arrange the handover. " * 2),
    ("You receive this message because you took part in one of our partner surveys. " * 2,
     "You receive this mail because you joined one of our partner surveys. " * 2),
]
WARNING = [
    ("Our records show that your mailbox has not been validated for the new security standard. " * 2,
     "Our systems show that your mailbox was not validated for the new security standard. " * 2),
    ("Unvalidated mailboxes will be suspended and all stored messages will be deleted permanently. "
     "This is an automated message sent to all users of the mail service. " * 2,
     "Mailboxes that are not validated will be suspended and their messages deleted permanently. "
     "This automated notice goes to every user of the mail service. " * 2),
    ("Copyright Mail Services. All rights reserved. Please do not reply to this message.",
     "Mail Services. All rights reserved. Do not reply to this automated message."),
]


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.seed = seed
        self.clam_files = [f for f in CLAM_FILES if os.path.isfile(os.path.join(TESTFILES, f))]
        self.upx = os.path.isfile(os.path.join(TESTFILES, "clam-upx.exe"))

    # --- pieces ---------------------------------------------------------------------
    def person(self):
        f, l = self.r.choice(FIRST), self.r.choice(LAST)
        return f"{f} {l}", f"{f.lower()}.{l.lower()}@{self.r.choice(DOMAINS)}"

    def words(self, n):
        out = []
        for _ in range(n):
            out.append(self.r.choice(FILLER) if self.r.random() < 0.4 else self.r.choice(VOCABULARY))
        return out

    def sentence(self):
        w = self.words(self.r.randint(6, 18))
        return w[0].capitalize() + " " + " ".join(w[1:]) + "."

    def paragraph(self):
        return " ".join(self.sentence() for _ in range(self.r.randint(2, 6)))

    def text(self, paragraphs):
        return "\n\n".join(wrap(self.paragraph()) for _ in range(paragraphs))

    def subject(self):
        return " ".join(self.words(self.r.randint(3, 7))).capitalize()

    def headers(self, bid, n, subject, sender=None, extra=()):
        name, addr = sender or self.person()
        rname, raddr = f"User {n}", f"user{n % 500}@{RCPT_DOMAIN}"
        day = 1 + n % 28
        h = [f"From: {name} <{addr}>", f"To: {rname} <{raddr}>", f"Subject: {subject}",
             f"Date: Mon, {day:02d} Dec 2025 {n % 24:02d}:{n % 60:02d}:{(n * 7) % 60:02d} +0000",
             f"Message-ID: <{bid}.{self.r.getrandbits(48):012x}@{addr.split('@')[1]}>",
             f"X-Bench-Id: {bid}", "MIME-Version: 1.0"]
        return h + list(extra)

    def boundary(self):
        return f"=_bench_{self.r.getrandbits(64):016x}"

    # --- MIME -----------------------------------------------------------------------
    @staticmethod
    def leaf(ctype, body, encoding="7bit", extra=()):
        """A MIME part (headers and body, CRLF not yet applied): body is str for text, bytes else."""
        if encoding == "base64":
            data = body.encode() if isinstance(body, str) else body
            payload = b64(data)
        elif encoding == "quoted-printable":
            payload = quopri.encodestring(body.encode()).decode()
        else:
            payload = body
        return [f"Content-Type: {ctype}", f"Content-Transfer-Encoding: {encoding}", *extra], payload

    def multipart(self, subtype, parts, extra=()):
        b = self.boundary()
        lines = []
        for hdrs, payload in parts:
            lines.append(f"--{b}")
            lines.extend(hdrs)
            lines.append("")
            lines.append(payload)
        lines.append(f"--{b}--")
        return [f'Content-Type: multipart/{subtype}; boundary="{b}"', *extra], "\n".join(lines)

    def attachment(self, ctype, name, data):
        return self.leaf(f'{ctype}; name="{name}"', data, "base64",
                         (f'Content-Disposition: attachment; filename="{name}"',))

    def message(self, headers, part):
        hdrs, payload = part
        return crlf("\n".join(headers + hdrs) + "\n\n" + payload + "\n")

    # --- attachments ----------------------------------------------------------------
    def binary(self, n):
        return self.r.randbytes(n)

    def fake_pdf(self, n):
        """A PDF-looking file of about n bytes: text operators over at most 500 fresh sentences, repeated."""
        block = "\n".join(f"BT /F1 12 Tf 72 {700 - i} Td ({self.sentence()}) Tj ET"
                          for i in range(min(n // 80 + 1, 500))).encode() + b"\n"
        body = (block * (n // len(block) + 1))[:n]
        return b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\nstream\n" + body + b"\nendstream\n%%EOF\n"

    def csv(self, rows):
        out = ["date,item,quantity,amount"]
        for i in range(rows):
            out.append(f"2025-{1 + i % 12:02d}-{1 + i % 28:02d},{self.r.choice(VOCABULARY)},"
                       f"{self.r.randint(1, 500)},{self.r.randint(1, 99999) / 100:.2f}")
        return "\n".join(out).encode()

    def zip_of(self, members, compress=zipfile.ZIP_DEFLATED):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compress) as z:
            for name, data in members:
                z.writestr(zipfile.ZipInfo(name, ZIP_TIME), data, compress_type=compress)
        return buf.getvalue()

    def ham_attachment(self):
        kind = self.r.choice(("pdf", "csv", "txt", "zip", "png"))
        stem = "_".join(self.words(2))
        if kind == "pdf":
            return self.attachment("application/pdf", f"{stem}.pdf", self.fake_pdf(self.r.randint(8000, 300000)))
        if kind == "csv":
            return self.attachment("text/csv", f"{stem}.csv", self.csv(self.r.randint(50, 4000)))
        if kind == "txt":
            return self.attachment("text/plain", f"{stem}.txt", self.text(self.r.randint(5, 60)).encode())
        if kind == "zip":
            members = [(f"{stem}_{i}.txt", self.text(self.r.randint(3, 30)).encode())
                       for i in range(self.r.randint(1, 4))]
            return self.attachment("application/zip", f"{stem}.zip", self.zip_of(members))
        png = b"\x89PNG\r\n\x1a\n" + self.binary(self.r.randint(4000, 200000))
        return self.attachment("image/png", f"{stem}.png", png)

    # --- the classes ----------------------------------------------------------------
    def ham(self, bid, n):
        kind = self.r.choices(("plain", "html", "alt", "related", "attach", "nearmiss"),
                              (12, 6, 17, 2, 21, 2))[0]
        h = self.headers(bid, n, self.subject())
        if kind == "plain":
            return kind, self.message(h, self.leaf("text/plain; charset=us-ascii", self.text(self.r.randint(2, 16))))
        if kind == "html":
            body = html(self.text(self.r.randint(3, 24)))
            return kind, self.message(h, self.leaf("text/html; charset=us-ascii", body))
        if kind == "alt":
            t = self.text(self.r.randint(2, 14))
            return kind, self.message(h, self.multipart("alternative", [
                self.leaf("text/plain; charset=us-ascii", t, "quoted-printable"),
                self.leaf("text/html; charset=us-ascii",
                          html(t) + "\n" + "<!-- " + "x" * self.r.randint(0, 30000) + " -->", "quoted-printable")]))
        if kind == "related":
            cid = f"img{self.r.getrandbits(32):08x}@bench"
            t = self.text(self.r.randint(2, 8))
            img = self.leaf("image/png", b"\x89PNG\r\n\x1a\n" + self.binary(self.r.randint(2000, 60000)), "base64",
                            (f"Content-ID: <{cid}>", "Content-Disposition: inline"))
            return kind, self.message(h, self.multipart("related", [
                self.leaf("text/html; charset=us-ascii", html(t) + f'\n<img src="cid:{cid}">'), img]))
        if kind == "attach":
            parts = [self.leaf("text/plain; charset=us-ascii", self.text(self.r.randint(1, 4)))]
            parts += [self.ham_attachment() for _ in range(self.r.choice((1, 1, 1, 2, 3)))]
            return kind, self.message(h, self.multipart("mixed", parts))
        # A near miss: the spam waves' topics, none of their phrases.
        t = self.r.choice((
            "The new Mini Cooper for the sales team arrives next week; please book the test drive with the office.",
            "IT reminder: we never ask for your password by mail. To change it, open the intranet yourself.",
            "Did you see the Mini Cooper at the conference? The giveaway there was a raffle for key rings.",
            "Your account review is due this quarter; the password policy is in the attached handbook."))
        return kind, self.message(h, self.leaf("text/plain; charset=us-ascii", wrap(t) + "\n\n" + self.text(2)))

    def spam(self, bid, n):
        enc = self.r.choice(("7bit", "quoted-printable", "base64"))
        if self.r.random() < 0.6:
            kind, name = "spam-cooper", SIG_COOPER
            who = self.person()[0]
            car = self.r.choice(("MINI", "Mini"))
            code = f"{self.r.getrandbits(32):08X}"
            # The phrase stays on one line: a 7bit body is scanned as it is written.
            body = (f"Dear {who},\n\nCongratulations! You have been selected to receive a brand new {car} Cooper"
                    f" {self.r.choice(('S', 'SE', 'Countryman', 'Clubman'))} in our"
                    f" {self.r.choice(('spring', 'summer', 'winter', 'anniversary'))} giveaway.\n"
                    f"Your claim code is {code}. Claim it within {self.r.randint(2, 9)} days at\n"
                    f"http://claim-{code.lower()}.prize-center.test/c/{self.r.getrandbits(40):x}\n\n"
                    f"Only a small handling fee of {self.r.randint(9, 49)}.{self.r.randint(0, 99):02d} EUR applies.\n")
            subject = self.r.choice(("You won a MINI Cooper!", "Claim your new Mini Cooper", "Winner notification",
                                     f"Congratulations {who}"))
        else:
            kind, name = "spam-phish", SIG_PHISH
            host = "".join(self.r.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(self.r.randint(6, 16)))
            user = self.person()[1]
            body = (f"Dear user,\n\nYour mailbox {user} has exceeded its quota. To keep receiving mail,"
                    f" verify your account within {self.r.randint(12, 72)} hours.\n\n"
                    f"https://{host}.secure-mailbox-verify.test/owa/auth/login.php?u={user}\n\n"
                    f"Enter your current password to confirm. Failure to do so will close the mailbox.\n\n"
                    f"{self.r.choice(('IT Service Desk', 'Mail Administrator', 'Webmail Team'))}\n")
            subject = self.r.choice(("Mailbox quota exceeded", "Action required: verify your account",
                                     "Your mailbox will be closed", "Password expiry notice"))
        body += "\n" + "\n\n".join(wrap(self.r.choice(v)) for v in (PITCH if kind == "spam-cooper" else WARNING)) + "\n"
        h = self.headers(bid, n, subject)
        if self.r.random() < 0.3:
            part = self.multipart("alternative", [self.leaf("text/plain; charset=us-ascii", body, enc),
                                                  self.leaf("text/html; charset=us-ascii", html(body), enc)])
        else:
            part = self.leaf("text/plain; charset=us-ascii", body, enc)
        return kind, name, self.message(h, part)

    def malware(self, bid, n):
        h = self.headers(bid, n, self.subject())
        note = self.leaf("text/plain; charset=us-ascii", self.text(1))
        how = self.r.choice(("attach", "attach", "zip", "zipzip", "rfc822",
                             "eicar-attach", "eicar-inline", "eicar-zip"))
        if how.startswith("eicar"):
            if how == "eicar-inline":
                part = self.leaf("text/plain; charset=us-ascii", self.text(1) + "\n\n" + EICAR + "\n")
            elif how == "eicar-zip":
                part = self.multipart("mixed", [note, self.attachment("application/zip", "test.zip",
                                                                      self.zip_of([("eicar.com", EICAR.encode())]))])
            else:
                att = self.attachment("application/octet-stream", "eicar.com", EICAR.encode())
                part = self.multipart("mixed", [note, att])
            return f"mal-{how}:eicar", SIG_EICAR, self.message(h, part)
        if not self.clam_files:
            return self.malware_eicar_only(bid, n, h, note)
        if self.upx and self.r.random() < 0.08:
            f, name = "clam-upx.exe", SIG_UPX
        else:
            f, name = self.r.choice(self.clam_files), SIG_CLAM
        with open(os.path.join(TESTFILES, f), "rb") as fh:
            data = fh.read()
        if how == "zip":
            att = self.attachment("application/zip", f"{f}.zip", self.zip_of([(f, data)]))
        elif how == "zipzip":
            inner = self.zip_of([(f, data)])
            att = self.attachment("application/zip", "archive.zip", self.zip_of([("inner.zip", inner)]))
        elif how == "rfc822":
            name_, addr = self.person()
            inner = [f"From: {name_} <{addr}>", f"To: <user{n % 500}@{RCPT_DOMAIN}>",
                     f"Subject: {self.subject()}", "Date: Sun, 30 Nov 2025 09:15:00 +0000",
                     f"Message-ID: <fwd.{self.r.getrandbits(48):012x}@{addr.split('@')[1]}>", "MIME-Version: 1.0"]
            fwd = self.message(inner,
                               self.multipart("mixed", [self.leaf("text/plain; charset=us-ascii", self.text(1)),
                                                        self.attachment("application/octet-stream", f, data)]))
            att = (["Content-Type: message/rfc822", "Content-Disposition: attachment"],
                   fwd.decode().replace("\r\n", "\n"))
        else:
            att = self.attachment("application/octet-stream", f, data)
        return f"mal-{how}:{f}", name, self.message(h, self.multipart("mixed", [note, att]))

    def malware_eicar_only(self, bid, n, h, note):
        part = self.multipart("mixed", [note, self.attachment("application/octet-stream", "eicar.com", EICAR.encode())])
        return "mal-eicar-attach:eicar", SIG_EICAR, self.message(h, part)

    def large(self, bid, n, malicious):
        h = self.headers(bid, n, self.subject())
        size = int(1_000_000 * 10 ** (self.r.random() * 0.9))  # 1-8 MB, log-uniform
        note = self.leaf("text/plain; charset=us-ascii", self.text(2))
        if malicious:
            filler = self.fake_pdf(size // 2) + self.binary(size // 2)
            z = self.zip_of([("report.dat", filler), ("eicar.com", EICAR.encode())])
            return "large-mal-eicar-zip:eicar", SIG_EICAR, self.message(
                h, self.multipart("mixed", [note, self.attachment("application/zip", "bundle.zip", z)]))
        data = self.binary(size) if self.r.random() < 0.5 else self.fake_pdf(size)
        ext, ctype = ("bin", "application/octet-stream") if data[:4] != b"%PDF" else ("pdf", "application/pdf")
        att = self.attachment(ctype, f"large.{ext}", data)
        return "large-ham", "-", self.message(h, self.multipart("mixed", [note, att]))


def wrap(text, width=76):
    out, line = [], ""
    for w in text.split(" "):
        if line and len(line) + 1 + len(w) > width:
            out.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    out.append(line)
    return "\n".join(out)


def html(text):
    paras = "".join(f"<p>{p.replace(chr(10), ' ')}</p>\n" for p in text.split("\n\n"))
    return f"<html><head><title>message</title></head><body>\n{paras}</body></html>"


def b64(data):
    s = base64.b64encode(data).decode()
    return "\n".join(s[i:i + 76] for i in range(0, len(s), 76))


def crlf(text):
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("ascii")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--large-frac", type=float, default=0.02, help="fraction of 1-8 MB messages (default 0.02)")
    a = ap.parse_args()
    if a.count < 1 or not 0 <= a.large_frac <= 1:
        ap.error("--count must be at least 1 and --large-frac between 0 and 1")
    g = Gen(a.seed)
    if not g.clam_files:
        print(f"generate.py: no clamav-testfiles in {TESTFILES}: the malware is EICAR only", file=sys.stderr)
    tmp = a.out.rstrip("/") + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    # The classes in exact proportions (a wave needs a known number of spam messages), in a shuffled order.
    n_large = round(a.count * a.large_frac)
    n_malware = min(round(a.count * 0.13), a.count - n_large)
    n_spam = min(round(a.count * 0.26), a.count - n_large - n_malware)
    plan = ["large"] * n_large + ["malware"] * n_malware + ["spam"] * n_spam
    plan += ["ham"] * (a.count - len(plan))
    g.r.shuffle(plan)
    rows = []
    for i, what in enumerate(plan, 1):
        bid = f"s{a.seed}-{i:06d}"
        if what == "large":
            kind, name, data = g.large(bid, i, g.r.random() < 0.25)
            cls = "malware" if name != "-" else "ham"
        elif what == "malware":
            kind, name, data = g.malware(bid, i)
            cls = "malware"
        elif what == "spam":
            kind, name, data = g.spam(bid, i)
            cls = "spam"
        else:
            kind, data = g.ham(bid, i)
            cls, name = "ham", "-"
        fname = f"{i:06d}.eml"
        with open(os.path.join(tmp, fname), "wb") as f:
            f.write(data)
        rows.append(f"{fname}\t{cls}\t{name}\t{kind}\t{len(data)}\n")
    with open(os.path.join(tmp, "manifest.tsv"), "w") as f:
        f.write("filename\tclass\texpected\tkind\tbytes\n")
        f.writelines(rows)
    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    os.rename(tmp, a.out)


if __name__ == "__main__":
    main()
