#!/usr/bin/env python3
"""Writes the sample messages for the shipped signatures: Signatures/samples (each must be caught) and
Signatures/ham (legitimate mail that no shipped signature may match).

    python3 Signatures/generate_samples.py            # rewrite both directories
    python3 Signatures/generate_samples.py --check    # exit 1 if a committed file differs

Every message is an RFC 5322 file with CRLF line ends. Each sample carries an
`X-Breakwater-Expect:` header listing every signature name that must match it, no more and no less;
every ham message carries `X-Breakwater-Expect: clean`. The tests (Tests/BreakwaterEngineTests) read that
header, so a sample's expectation lives in the sample.

The output is deterministic (fixed dates, boundaries and archive timestamps), so the committed files only
change when this script does. The ClamAV test program is read from Debian's clamav-testfiles package
(/usr/share/clamav-testfiles/clam.exe) when regenerating; the committed samples do not need it.
Only the Python standard library is used.
"""
import argparse
import base64
import hashlib
import io
import os
import quopri
import struct
import sys
import tarfile
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CLAM_EXE = "/usr/share/clamav-testfiles/clam.exe"
ZIP_DATE = (2024, 3, 1, 9, 30, 0)
DATE = "Mon, 04 Mar 2024 09:15:00 +0000"

# Assembled from two halves so this file itself is not an EICAR hit.
EICAR = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*").encode()

T_EICAR = "Breakwater.Test.EICAR"
T_CLAM = "Breakwater.Malware.ClamAVTestFile"
T_COOPER = "Breakwater.Spam.MiniCooperGiveaway"
T_PHISH = "Breakwater.Phish.CredentialHarvest"
T_FORM = "Breakwater.Phish.PasswordForm"
T_EXE = "Breakwater.Attachment.Executable"
T_EXENAME = "Breakwater.Attachment.ExecutableName"
T_SCRIPT = "Breakwater.Attachment.Script"
T_LNK = "Breakwater.Attachment.Shortcut"


# ---------------------------------------------------------------- building blocks

def crlf(text):
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def b64(data):
    s = base64.b64encode(data).decode()
    return "\r\n".join(s[i:i + 76] for i in range(0, len(s), 76)) + "\r\n"


def qp(text):
    return crlf(quopri.encodestring(text.encode("utf-8")).decode())


class Part:
    """A MIME entity: headers plus an already encoded body, or children for a multipart."""

    def __init__(self, ctype, body="", cte=None, disposition=None, children=None, extra=None):
        self.ctype, self.body, self.cte = ctype, body, cte
        self.disposition, self.children, self.extra = disposition, children, extra or []

    def render(self, depth=0):
        h = ["Content-Type: " + self.ctype]
        if self.cte:
            h.append("Content-Transfer-Encoding: " + self.cte)
        if self.disposition:
            h.append("Content-Disposition: " + self.disposition)
        h += self.extra
        if self.children is None:
            return "\r\n".join(h) + "\r\n\r\n" + self.body
        parts = [c.render(depth + 1) for c in self.children]
        # Derived from the content: deterministic, and an enclosing multipart (or a forwarded message's
        # parent) never reuses its child's boundary.
        boundary = "=_bw_%d_%s" % (depth, hashlib.sha1("".join(parts).encode()).hexdigest()[:16])
        h[0] = '%s; boundary="%s"' % (self.ctype, boundary)
        out = "\r\n".join(h) + "\r\n\r\nThis is a multi-part message in MIME format.\r\n"
        for p in parts:
            out += "\r\n--" + boundary + "\r\n" + p
        return out + "\r\n--" + boundary + "--\r\n"


def text(t, cte="7bit", subtype="plain"):
    body = {"7bit": lambda: crlf(t), "8bit": lambda: crlf(t),
            "quoted-printable": lambda: qp(t), "base64": lambda: b64(crlf(t).encode())}[cte]()
    return Part('text/%s; charset="utf-8"' % subtype, body, cte)


def html(t, cte="quoted-printable"):
    return text(t, cte, "html")


def attachment(name, data, ctype="application/octet-stream", disposition="attachment"):
    return Part('%s; name="%s"' % (ctype, name), b64(data), "base64",
                '%s; filename="%s"' % (disposition, name))


def message(frm, to, subject, root, msgid, extra=()):
    """A whole message: RFC 5322 header fields, then the root MIME entity."""
    h = ["From: " + frm, "To: " + to, "Subject: " + subject, "Date: " + DATE,
         "Message-ID: <%s>" % msgid, "MIME-Version: 1.0"] + list(extra)
    return ("\r\n".join(h) + "\r\n" + root.render()).encode("utf-8")


def forwarded(inner, note="Forwarding this, see the attached message.", cte="7bit"):
    """A message/rfc822 part carrying a whole message (as an MUA's 'forward as attachment' does)."""
    body = inner.decode("utf-8") if cte == "7bit" else b64(inner)
    return Part("message/rfc822", body, cte, 'attachment; filename="forwarded.eml"')


def zip_bytes(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return buf.getvalue()


def tgz_bytes(members):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = len(data), 1709285400, 0o644, "user", "user"
            t.addfile(ti, io.BytesIO(data))
    gz = io.BytesIO()
    import gzip
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as g:
        g.write(raw.getvalue())
    return gz.getvalue()


def tiny_pe():
    """A minimal, valid 32-bit Windows console program whose only instruction is `ret`: a harmless
    stand-in for an executable attachment."""
    dos = bytearray(64)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x40)
    coff = struct.pack("<HHIIIHH", 0x14C, 1, 0x65E5A000, 0, 0, 0xE0, 0x0102)
    opt = struct.pack("<HBBIIIIIIIIIHHHHHHIIIIHHIIIIII",
                      0x10B, 14, 0, 0x200, 0, 0, 0x1000, 0x1000, 0x2000, 0x400000, 0x1000, 0x200,
                      6, 0, 0, 0, 6, 0, 0, 0x2000, 0x200, 0, 3, 0x8540,
                      0x100000, 0x1000, 0x100000, 0x1000, 0, 16)
    opt += b"\0" * (16 * 8)
    sect = struct.pack("<8sIIIIIIHHI", b".text", 0x1000, 0x1000, 0x200, 0x200, 0, 0, 0, 0, 0x60000020)
    head = bytes(dos) + b"PE\0\0" + coff + opt + sect
    head += b"\0" * (0x200 - len(head))
    code = b"\xC3" + b"\0" * 0x1FF
    return head + code


def tiny_lnk():
    """The fixed 76-byte header of a Windows shell link (no target): enough for the content check."""
    clsid = bytes.fromhex("0114020000000000c000000000000046")
    hdr = struct.pack("<I16sII", 0x4C, clsid, 0, 0x20) + b"\0" * 24 + struct.pack("<IIIHH", 0, 0, 1, 0, 0)
    return hdr + b"\0" * (76 - len(hdr)) + b"\0\0"


def tiny_pdf(title, lines):
    """A small valid PDF with one page of text."""
    stream = "BT /F1 12 Tf 72 760 Td 14 TL (%s) Tj " % title
    stream += " ".join("T* (%s) Tj" % l.replace("(", "[").replace(")", "]") for l in lines) + " ET"
    objs = ["<< /Type /Catalog /Pages 2 0 R >>",
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            "/Resources << /Font << /F1 5 0 R >> >> >>",
            "<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = b"%PDF-1.4\n", []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += ("%d 0 obj\n%s\nendobj\n" % (i, o)).encode()
    xref = len(out)
    out += ("xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)).encode()
    out += "".join("%010d 00000 n \n" % off for off in offsets).encode()
    out += ("trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)).encode()
    return out


def tiny_docx(paragraphs):
    """A minimal Word document (OOXML: a zip of XML parts)."""
    ct = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
          '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
          '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
          '<Default Extension="xml" ContentType="application/xml"/>'
          '<Override PartName="/word/document.xml" ContentType="application/'
          'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
    rels = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
            'relationships/officeDocument" Target="word/document.xml"/></Relationships>')
    body = "".join("<w:p><w:r><w:t>%s</w:t></w:r></w:p>" % p for p in paragraphs)
    doc = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
           '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
           "<w:body>%s</w:body></w:document>" % body)
    return zip_bytes([("[Content_Types].xml", ct.encode()), ("_rels/.rels", rels.encode()),
                      ("word/document.xml", doc.encode())])


def tiny_png():
    """A 2x2 grey PNG."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + b"\x80\x80\x80" * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def expect(*names):
    return ["X-Breakwater-Expect: " + (", ".join(sorted(names)) if names else "clean")]


# ---------------------------------------------------------------- the samples

def samples(clam):
    s = {}
    to = "Alex Meyer <alex.meyer@bench.example>"

    # --- Breakwater.Test.EICAR
    d = "Breakwater.Test.EICAR/"
    s[d + "inline-text.eml"] = message(
        "Ops <ops@example.org>", to, "Filter test", text(
            "This message carries the EICAR test string inline:\n\n%s\n\nIt must be rejected.\n"
            % EICAR.decode()), "eicar-inline@example.org", expect(T_EICAR))
    s[d + "base64-attachment.eml"] = message(
        "Ops <ops@example.org>", to, "Filter test: attachment", Part("multipart/mixed", children=[
            text("The attached file is the EICAR test file.\n"),
            attachment("eicar.txt", EICAR, "text/plain")]), "eicar-b64@example.org", expect(T_EICAR))
    s[d + "in-zip.eml"] = message(
        "Ops <ops@example.org>", to, "Filter test: zip", Part("multipart/mixed", children=[
            text("The attached zip holds the EICAR test file.\n"),
            attachment("test.zip", zip_bytes([("eicar.txt", EICAR)]), "application/zip")]),
        "eicar-zip@example.org", expect(T_EICAR))
    inner_zip = zip_bytes([("readme.txt", b"nested archive test\n"), ("eicar.txt", EICAR)])
    s[d + "zip-in-zip.eml"] = message(
        "Ops <ops@example.org>", to, "Filter test: zip in zip", Part("multipart/mixed", children=[
            text("A zip inside a zip, the EICAR test file inside the inner one.\n"),
            attachment("outer.zip", zip_bytes([("docs/inner.zip", inner_zip)]), "application/zip")]),
        "eicar-zipzip@example.org", expect(T_EICAR))
    inner = message("Someone <someone@example.net>", "ops@example.org", "Original with EICAR",
                    Part("multipart/mixed", children=[
                        text("Original message, EICAR attached.\n"),
                        attachment("eicar.txt", EICAR, "text/plain")]), "eicar-orig@example.net")
    s[d + "forwarded-rfc822.eml"] = message(
        "Ops <ops@example.org>", to, "Fwd: Original with EICAR", Part("multipart/mixed", children=[
            text("Forwarded as an attachment.\n"), forwarded(inner)]),
        "eicar-fwd@example.org", expect(T_EICAR))

    # --- Breakwater.Malware.ClamAVTestFile (clam.exe is a PE named .exe: the attachment checks fire too)
    if clam:
        d = "Breakwater.Malware.ClamAVTestFile/"
        all3 = (T_CLAM, T_EXE, T_EXENAME)
        s[d + "base64-attachment.eml"] = message(
            "Billing <billing@supplier.example.net>", to, "Your invoice", Part("multipart/mixed", children=[
                text("Please find your invoice attached.\n"), attachment("clam.exe", clam)]),
            "clam-b64@supplier.example.net", expect(*all3))
        s[d + "renamed-attachment.eml"] = message(
            "Billing <billing@supplier.example.net>", to, "Scan", Part("multipart/mixed", children=[
                text("Scanned page attached.\n"), attachment("scan.jpg", clam, "image/jpeg")]),
            "clam-renamed@supplier.example.net", expect(T_CLAM, T_EXE))
        s[d + "in-zip.eml"] = message(
            "Billing <billing@supplier.example.net>", to, "Invoice (zip)", Part("multipart/mixed", children=[
                text("Invoice attached as a zip.\n"),
                attachment("invoice.zip", zip_bytes([("clam.exe", clam)]), "application/zip")]),
            "clam-zip@supplier.example.net", expect(*all3))
        s[d + "zip-in-zip.eml"] = message(
            "Billing <billing@supplier.example.net>", to, "Invoice archive", Part("multipart/mixed", children=[
                text("Archive attached.\n"),
                attachment("archive.zip", zip_bytes([("2024/march.zip", zip_bytes([("clam.exe", clam)]))]),
                           "application/zip")]),
            "clam-zipzip@supplier.example.net", expect(*all3))
        inner = message("Billing <billing@supplier.example.net>", "someone@example.net", "Invoice",
                        Part("multipart/mixed", children=[text("Invoice attached.\n"),
                                                          attachment("clam.exe", clam)]),
                        "clam-orig@supplier.example.net")
        s[d + "forwarded-rfc822.eml"] = message(
            "Someone <someone@example.net>", to, "Fwd: Invoice", Part("multipart/mixed", children=[
                text("Is this legitimate? Forwarding the original.\n"), forwarded(inner)]),
            "clam-fwd@example.net", expect(*all3))

    # --- Breakwater.Spam.MiniCooperGiveaway
    d = "Breakwater.Spam.MiniCooperGiveaway/"
    frm = "MINI Rewards Team <winner@prize-center.test>"
    body = ("Dear Alex,\n\nCongratulations! You have been selected to receive a brand new MINI Cooper in\n"
            "our 2024 Customer Appreciation Giveaway.\n\nYour entry number: 7F3A-1182\n"
            "To claim your prize, confirm your shipping details within 48 hours:\n"
            "https://claim-7f3a11.prize-center.test/r/7f3a1182\n\n"
            "Only 3 prizes remain. Shipping and registration fee: 4.99 EUR.\n")
    s[d + "plain-7bit.eml"] = message(frm, to, "Congratulations Alex, you have been selected!",
                                      text(body), "cooper-plain@prize-center.test", expect(T_COOPER))
    s[d + "plain-base64.eml"] = message(frm, to, "Alex, your MINI Cooper is waiting",
                                        text(body, "base64"), "cooper-b64@prize-center.test", expect(T_COOPER))
    page = ('<html><body style="font-family:Verdana"><table width="580"><tr><td>'
            '<img src="https://img.lucky-draw.test/banner.jpg" width="580"></td></tr>'
            "<tr><td><h2>Congratulations Alex!</h2><p>You have been <i>selected</i> to receive a "
            "<b>brand&nbsp;new</b> <b>Mini&nbsp;Cooper</b> in our 2024 Customer Appreciation Giveaway.</p>"
            '<p><a href="https://claim-9c1d.lucky-draw.test/r/9c1d" style="background:#c00;color:#fff">'
            "CLAIM YOUR CAR</a></p></td></tr></table></body></html>\n")
    s[d + "html-only-qp.eml"] = message(frm, to, "Final notice: claim your prize #48213",
                                        html(page), "cooper-html@lucky-draw.test", expect(T_COOPER))
    s[d + "alternative-base64-qp.eml"] = message(
        "Customer Appreciation <rewards@rewards-hub.test>", to, "RE: Your entry in the 2024 Mini Cooper giveaway",
        Part("multipart/alternative", children=[text(body.replace("MINI", "Mini"), "base64"), html(page, "base64")]),
        "cooper-alt@rewards-hub.test", expect(T_COOPER))
    s[d + "uppercase-chosen.eml"] = message(
        "PRIZE DEPARTMENT <noreply@lucky-draw.test>", to, "YOU WON! CONFIRM DELIVERY OF YOUR NEW CAR",
        text("DEAR CUSTOMER,\n\nYOU HAVE BEEN CHOSEN TO RECEIVE A BRAND-NEW 2024 MINI COOPER!\n"
             "CLAIM IT NOW: HTTPS://LUCKY-DRAW.TEST/CLAIM\n", "quoted-printable"),
        "cooper-upper@lucky-draw.test", expect(T_COOPER))
    s[d + "you-have-won.eml"] = message(
        "Giveaway Desk <desk@prize-center.test>", to, "Winner notification",
        text("Hello,\n\nGreat news: you've won a brand new Mini\nCooper S in this month's loyalty giveaway.\n"
             "Reply with your address and pay the 2.99 EUR handling fee to receive it.\n"),
        "cooper-won@prize-center.test", expect(T_COOPER))

    # --- Breakwater.Phish.CredentialHarvest
    d = "Breakwater.Phish.CredentialHarvest/"
    frm = "IT Service Desk <helpdesk@bench-example-support.test>"
    url = "https://a1b2c3d4.secure-mailbox-verify.test/owa/auth/login.php?u=YWxleA"
    plain = ("Dear bench.example user,\n\nWe detected unusual activity and your mailbox alex.meyer@bench.example\n"
             "is scheduled for suspension. To keep your mailbox active, please verify your\n"
             "account within 24 hours:\n\n%s\n\nYou will be asked for your current password to confirm\n"
             "ownership.\n\nIT Service Desk\n" % url)
    s[d + "mailbox-suspension-plain.eml"] = message(
        frm, to, "Action required: mailbox alex.meyer@bench.example will be suspended", text(plain),
        "phish-plain@bench-example-support.test", expect(T_PHISH))
    page = ('<html><body><div style="font-family:Segoe UI,Arial;max-width:560px">'
            "<p>Dear user,</p><p>Your mailbox has been <b>temporarily suspended</b> because of a failed "
            "security check.</p><p>To restore access please Verify&nbsp;Your&nbsp;Account now.</p>"
            '<p><a href="https://office365-webmail.login-portal.test/signin/index.php?id=77">Verify now</a></p>'
            "<p>You will be asked for your current Password.</p></div></body></html>\n")
    s[d + "html-base64.eml"] = message(
        "Microsoft 365 <no-reply@ms365-account-alerts.test>", to, "Mailbox storage quota exceeded - verify now",
        Part("multipart/alternative", children=[
            text("Your mailbox has been suspended. Verify your account at "
                 "https://office365-webmail.login-portal.test/signin/index.php?id=77 and enter your password.\n",
                 "base64"),
            html(page, "base64")]),
        "phish-html@ms365-account-alerts.test", expect(T_PHISH))
    s[d + "bank-qp.eml"] = message(
        "Online Banking <security@bank-example-alerts.test>", to, "Unauthorized login attempt",
        html("<html><body><p>We have detected an unauthorized login on your online banking.</p>"
             "<p>Your access has been restricted. Please confirm your identity within 12 hours or your "
             "account will be closed.</p><p><a href=\"https://secure-bank-example.test/auth/verify.php\">"
             "Confirm identity</a> and re-enter your password and card PIN.</p></body></html>\n"),
        "phish-bank@bank-example-alerts.test", expect(T_PHISH))

    # --- Breakwater.Phish.PasswordForm
    d = "Breakwater.Phish.PasswordForm/"
    form = ('<!DOCTYPE html><html><head><title>Document Viewer</title></head><body>'
            "<h3>Sign in to view the shared document</h3>"
            '<form method="POST" action="https://collect.docs-share-viewer.test/p.php">'
            '<input type="email" name="login" placeholder="Email">'
            '<input type=\'password\' name="passwd" placeholder="Password">'
            '<button type="submit">View document</button></form></body></html>\n')
    s[d + "html-attachment.eml"] = message(
        "Docs Share <share@docs-share-viewer.test>", to, "Shared document: Q1 remittance", Part(
            "multipart/mixed", children=[
                text("A document was shared with you. Open the attached file to view it.\n"),
                attachment("Remittance_Q1.html", form.encode(), "text/html")]),
        "form-attach@docs-share-viewer.test", expect(T_FORM))
    s[d + "inline-html.eml"] = message(
        "Webmail <admin@webmail-upgrade.test>", to, "Webmail upgrade",
        html(form.replace("Sign in to view the shared document", "Sign in to complete the upgrade")
             .replace("<input type='password'", '<input\n class="f" TYPE = "PASSWORD"'), "base64"),
        "form-inline@webmail-upgrade.test", expect(T_FORM))

    # --- Breakwater.Attachment.Executable (content)
    d = "Breakwater.Attachment.Executable/"
    pe = tiny_pe()
    s[d + "pe-named-jpg.eml"] = message(
        "Photos <photos@example.net>", to, "Holiday photo", Part("multipart/mixed", children=[
            text("Here is the photo.\n"), attachment("IMG_2041.jpg", pe, "image/jpeg")]),
        "exe-jpg@example.net", expect(T_EXE))
    s[d + "pe-in-zip-named-pdf.eml"] = message(
        "Accounts <accounts@supplier.example.net>", to, "Statement", Part("multipart/mixed", children=[
            text("Statement attached.\n"),
            attachment("statement.zip", zip_bytes([("statement_march.pdf", pe)]), "application/zip")]),
        "exe-zip@supplier.example.net", expect(T_EXE))

    # --- Breakwater.Attachment.ExecutableName (name)
    d = "Breakwater.Attachment.ExecutableName/"
    s[d + "double-extension.eml"] = message(
        "Accounts <accounts@supplier.example.net>", to, "Invoice 2024-0312", Part("multipart/mixed", children=[
            text("Invoice attached.\n"), attachment("Invoice_2024-0312.pdf.scr", b"not really a screensaver\n")]),
        "exename-double@supplier.example.net", expect(T_EXENAME))
    s[d + "setup-in-zip.eml"] = message(
        "Support <support@vendor.example>", to, "Updated client", Part("multipart/mixed", children=[
            text("Install the updated client from the attached archive.\n"),
            attachment("client.zip", zip_bytes([("Client/SETUP.EXE", pe), ("Client/readme.txt", b"run setup\n")]),
                       "application/zip")]),
        "exename-zip@vendor.example", expect(T_EXE, T_EXENAME))
    s[d + "rfc2231-split-name.eml"] = message(
        "Accounts <accounts@supplier.example.net>", to, "Remittance", Part("multipart/mixed", children=[
            text("Remittance advice attached.\n"),
            Part('application/octet-stream', b64(b"placeholder\n"), "base64",
                 'attachment;\r\n filename*0="Remittance_advice_2024_03_";\r\n filename*1="account_4471.pdf.exe"')]),
        "exename-2231@supplier.example.net", expect(T_EXENAME))

    # --- Breakwater.Attachment.Script (name)
    d = "Breakwater.Attachment.Script/"
    js = b'WScript.Echo("Breakwater sample: a harmless script attachment");\r\n'
    s[d + "js-attachment.eml"] = message(
        "Accounts <accounts@supplier.example.net>", to, "Overdue invoice", Part("multipart/mixed", children=[
            text("Please see the attached invoice.\n"), attachment("Invoice_0312.JS", js, "application/javascript")]),
        "script-js@supplier.example.net", expect(T_SCRIPT))
    s[d + "vbs-in-zip.eml"] = message(
        "Accounts <accounts@supplier.example.net>", to, "Payment confirmation", Part("multipart/mixed", children=[
            text("Payment confirmation attached.\n"),
            attachment("payment.zip", zip_bytes([("payment_confirmation.vbs", b'MsgBox "harmless"\r\n')]),
                       "application/zip")]),
        "script-vbs@supplier.example.net", expect(T_SCRIPT))
    s[d + "hta-trailing-dot.eml"] = message(
        "Shipping <track@parcel-notice.test>", to, "Parcel on hold", Part("multipart/mixed", children=[
            text("Your parcel is on hold, see the attached notice.\n"),
            attachment("parcel_notice.hta.", b"<html><body>harmless</body></html>\r\n", "application/hta")]),
        "script-hta@parcel-notice.test", expect(T_SCRIPT))
    s[d + "bat-in-tgz.eml"] = message(
        "Build <build@ci.example.com>", to, "Tools", Part("multipart/mixed", children=[
            text("Tools attached.\n"),
            attachment("tools.tar.gz", tgz_bytes([("tools/cleanup.bat", b"@echo off\r\necho harmless\r\n")]),
                       "application/gzip")]),
        "script-bat@ci.example.com", expect(T_SCRIPT))
    s[d + "rfc2047-name.eml"] = message(
        "Accounts <accounts@supplier.example.net>", to, "Receipt", Part("multipart/mixed", children=[
            text("Receipt attached.\n"),
            Part("application/octet-stream", b64(js), "base64",
                 'attachment; filename="=?UTF-8?B?%s?="' % base64.b64encode("Quittung_März.js".encode()).decode())]),
        "script-2047@supplier.example.net", expect(T_SCRIPT))

    # --- Breakwater.Attachment.Shortcut (content and name)
    d = "Breakwater.Attachment.Shortcut/"
    lnk = tiny_lnk()
    s[d + "lnk-in-zip.eml"] = message(
        "HR <hr@example.org>", to, "Salary review", Part("multipart/mixed", children=[
            text("Salary review documents attached.\n"),
            attachment("review.zip", zip_bytes([("Salary_Review_2024.pdf.lnk", lnk)]), "application/zip")]),
        "lnk-zip@example.org", expect(T_LNK))
    s[d + "lnk-renamed.eml"] = message(
        "HR <hr@example.org>", to, "Document", Part("multipart/mixed", children=[
            text("Document attached.\n"), attachment("document.txt", lnk, "text/plain")]),
        "lnk-renamed@example.org", expect(T_LNK))

    # --- several signatures in one message: every name must be reported
    d = "combined/"
    s[d + "spam-with-eicar.eml"] = message(
        "MINI Rewards Team <winner@prize-center.test>", to, "Congratulations, you have been selected!",
        Part("multipart/mixed", children=[
            text("Congratulations! You have been selected to receive a brand new Mini Cooper.\n"
                 "Claim your prize with the attached form.\n"),
            attachment("claim_form.js", EICAR, "application/javascript")]),
        "combined@prize-center.test", expect(T_COOPER, T_EICAR, T_SCRIPT))
    return s


# ---------------------------------------------------------------- the ham set

def ham():
    h = {}
    to = "Alex Meyer <alex.meyer@bench.example>"
    clean = expect()

    h["plain-meeting.eml"] = message(
        "Carla Rossi <carla.rossi@example.com>", to, "Agenda for Thursday",
        text("Hi Alex,\n\nagenda for Thursday's project meeting:\n\n1. budget review for Q2\n"
             "2. migration schedule (database, backups)\n3. hiring update\n\nThanks,\nCarla\n"),
        "ham-plain@example.com", clean)
    h["utf8-8bit.eml"] = message(
        "Jürgen Müller <juergen.mueller@example.org>", to, "Protokoll der Sitzung",
        text("Hallo Alex,\n\nanbei das Protokoll: Budget genehmigt, Umzug des Servers am Freitag.\n"
             "Grüße aus Zürich, Jürgen\n", "8bit"), "ham-utf8@example.org", clean)
    news = ('<html><body><h1>Product news, March</h1>'
            "<p>Our spring release is out. Sign in to your account to try the new reports:</p>"
            '<p><a href="https://app.example.com/login">Sign in</a> | '
            '<a href="https://app.example.com/account/settings">Account settings</a></p>'
            '<form action="https://www.example.com/search" method="get"><input type="text" name="q">'
            '<input type="submit" value="Search the help center"></form>'
            "<p>Forgot your password? You can reset it from the sign-in page at any time.</p>"
            '<p><a href="https://newsletter.example.org/unsubscribe?u=88">Unsubscribe</a></p></body></html>\n')
    h["html-newsletter.eml"] = message(
        "Example App <news@newsletter.example.org>", to, "What's new in March",
        Part("multipart/alternative", children=[
            text("Our spring release is out. Sign in at https://app.example.com/login to try it.\n",
                 "quoted-printable"), html(news)]),
        "ham-news@newsletter.example.org", clean + ["List-Unsubscribe: <https://newsletter.example.org/unsubscribe?u=88>"])
    h["pdf-attachment.eml"] = message(
        "Finance <finance@example.com>", to, "Q1 report", Part("multipart/mixed", children=[
            text("Hi,\n\nthe Q1 report is attached.\n"),
            attachment("Q1-report.pdf", tiny_pdf("Q1 report", ["Revenue grew 4%.", "Costs were flat."]),
                       "application/pdf")]),
        "ham-pdf@example.com", clean)
    h["docx-attachment.eml"] = message(
        "Legal <legal@partner.example>", to, "Contract draft v3", Part("multipart/mixed", children=[
            text("Please review the attached draft before Friday.\n"),
            attachment("contract-v3.docx", tiny_docx(["Service agreement", "Term: 12 months."]),
                       "application/vnd.openxmlformats-officedocument.wordprocessingml.document")]),
        "ham-docx@partner.example", clean)
    h["csv-attachment.eml"] = message(
        "Sales <sales@shop.example>", to, "Weekly figures", Part("multipart/mixed", children=[
            text("Weekly figures attached.\n"),
            attachment("figures.csv", b"week,region,revenue\r\n10,north,1200\r\n10,south,980\r\n", "text/csv")]),
        "ham-csv@shop.example", clean)
    docs = zip_bytes([("report/Q1-report.pdf", tiny_pdf("Q1 report", ["Summary."])),
                      ("report/contract-v3.docx", tiny_docx(["Draft."])),
                      ("report/figures.csv", b"a,b\r\n1,2\r\n"),
                      ("report/notes.js.txt", b"notes about the JavaScript build, not a script\n"),
                      ("report/README.md", b"# Report\nEverything for the board meeting.\n")])
    h["zip-of-documents.eml"] = message(
        "Board Office <board@corp.example>", to, "Board pack", Part("multipart/mixed", children=[
            text("The board pack is attached as one zip.\n"), attachment("board-pack.zip", docs, "application/zip")]),
        "ham-zip@corp.example", clean)
    h["related-inline-png.eml"] = message(
        "Design <design@example.net>", to, "Logo proposal", Part("multipart/related", children=[
            html('<html><body><p>Logo proposal:</p><img src="cid:logo@example.net"></body></html>\n'),
            Part('image/png; name="logo.png"', b64(tiny_png()), "base64", 'inline; filename="logo.png"',
                 extra=["Content-ID: <logo@example.net>"])]),
        "ham-png@example.net", clean)
    h["calendar-invite.eml"] = message(
        "Calendar <calendar@example.com>", to, "Invitation: Planning", Part("multipart/mixed", children=[
            text("You are invited to Planning on Tuesday.\n"),
            attachment("invite.ics", crlf("BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nSUMMARY:Planning\n"
                                          "DTSTART:20240312T090000Z\nEND:VEVENT\nEND:VCALENDAR\n").encode(),
                       "text/calendar")]),
        "ham-ics@example.com", clean)
    inner = message("Carla Rossi <carla.rossi@example.com>", "team@example.com", "Minutes",
                    Part("multipart/mixed", children=[text("Minutes attached.\n"),
                                                      attachment("minutes.pdf", tiny_pdf("Minutes", ["Agreed."]),
                                                                 "application/pdf")]),
                    "ham-inner@example.com")
    h["forwarded-message.eml"] = message(
        "Ben Chen <ben.chen@example.com>", to, "Fwd: Minutes", Part("multipart/mixed", children=[
            text("FYI, forwarding Carla's minutes.\n"), forwarded(inner)]), "ham-fwd@example.com", clean)

    # Near misses: mention what the signatures look for without being the threat.
    h["near-miss-mini-owner.eml"] = message(
        "Tara Berg <tara.berg@example.org>", to, "Car pool on Friday",
        text("Hi Alex,\n\nI have been selected to lead the offsite, so I'll drive. My Mini Cooper\n"
             "only has four seats: who else wants a ride? Congratulations on the promotion, by the way.\n"),
        "ham-mini1@example.org", clean)
    h["near-miss-mini-dealer.eml"] = message(
        "MINI Centre <news@mini-dealer.example>", to, "The brand new MINI Cooper is here",
        html("<html><body><h2>Meet the brand new MINI Cooper</h2>"
             "<p>Book a test drive this month and enter our prize draw for a chance to win a weekend with "
             "the brand new MINI Cooper SE. Claim your free coffee at the showroom.</p>"
             '<p><a href="https://mini-dealer.example/test-drive">Book a test drive</a></p></body></html>\n'),
        "ham-mini2@mini-dealer.example", clean)
    h["near-miss-password-reset.eml"] = message(
        "Example App <no-reply@app.example.com>", to, "Reset your password",
        text("Someone asked to reset the password for your account.\n\n"
             "Reset it here (the link expires in 1 hour): https://app.example.com/account/reset?token=5f2c\n\n"
             "If you did not ask for this, ignore this message.\n"), "ham-reset@app.example.com", clean)
    h["near-miss-signup-verify.eml"] = message(
        "Example App <no-reply@app.example.com>", to, "Verify your email address",
        html("<html><body><p>Welcome! Please verify your email address to finish signing up:</p>"
             '<p><a href="https://app.example.com/verify?token=81aa">Verify email</a></p>'
             "<p>You will choose a password on the next page. This link expires in 24 hours.</p></body></html>\n"),
        "ham-signup@app.example.com", clean)
    h["near-miss-security-alert.eml"] = message(
        "Example Accounts <security@accounts.example.com>", to, "Security alert: new sign-in",
        text("We noticed unusual sign-in activity on your account from a new device (Linux, Firefox).\n"
             "If this was you, you can ignore this message. If not, change your password at\n"
             "https://accounts.example.com/security/password\n"), "ham-alert@accounts.example.com", clean)
    h["near-miss-password-expiry.eml"] = message(
        "IT Service Desk <it@bench.example>", to, "Your password expires in 5 days",
        text("Hello Alex,\n\nyour network password expires in 5 days. Change it any time at\n"
             "https://sso.bench.example/login -> Profile -> Change password.\n\nIT Service Desk\n"),
        "ham-expiry@bench.example", clean)
    h["near-miss-subscribe-form.eml"] = message(
        "Events <events@example.org>", to, "Conference registration",
        html('<html><body><p>Register for the conference:</p><form action="https://events.example.org/register">'
             '<input type="email" name="email"><input type="text" name="company">'
             '<input type="submit" value="Register"></form>'
             "<p>No password needed: we send you a link.</p></body></html>\n"),
        "ham-form@example.org", clean)
    h["near-miss-code-review.eml"] = message(
        "Dev Team <dev@corp.example>", to, "Build notes",
        text("The installer build now produces setup.exe and install.bat; the web bundle is app.js.\n"
             "Download them from the CI page, do not mail them around.\n"), "ham-code@corp.example", clean)
    return h


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = ap.parse_args()
    clam = open(CLAM_EXE, "rb").read() if os.path.exists(CLAM_EXE) else None
    if clam is None:
        print("note: %s not found (apt-get install clamav-testfiles): ClamAVTestFile samples left as they are"
              % CLAM_EXE, file=sys.stderr)
    files = {os.path.join("samples", k): v for k, v in samples(clam).items()}
    files.update({os.path.join("ham", k): v for k, v in ham().items()})
    differ = 0
    for rel, data in sorted(files.items()):
        path = os.path.join(HERE, rel)
        old = open(path, "rb").read() if os.path.exists(path) else None
        if old == data:
            continue
        differ += 1
        if args.check:
            print("differs: " + rel)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            print("wrote " + rel)
    if args.check and differ:
        sys.exit(1)
    print("%d files, %d %s" % (len(files), differ, "differ" if args.check else "written"))


if __name__ == "__main__":
    main()
