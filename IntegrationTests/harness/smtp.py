"""An SMTP client side shared by the MTA harnesses (Postfix, Sendmail): one transaction at a time, and
the reply of the stage that answered last."""
import re
import smtplib

# Where each MTA names the queue id in its reply to the end of data.
QUEUE_ID_PATTERNS = (
    re.compile(r"queued as ([0-9A-Za-z]+)"),  # Postfix: "250 2.0.0 Ok: queued as 4Xyz..."
    re.compile(r"^\d\.\d\.\d+ ([0-9A-Za-z]{14,}) Message accepted"),  # Sendmail: "... 1B6NSjZx012345 Message accepted"
)


class SmtpResult:
    """The outcome of one SMTP transaction: the stage that answered last and its reply."""

    def __init__(self, stage, code, text):
        self.stage, self.code, self.text = stage, code, text

    @property
    def queue_id(self):
        for pattern in QUEUE_ID_PATTERNS:
            m = pattern.search(self.text)
            if m:
                return m.group(1)
        return None

    def __repr__(self):
        return f"SmtpResult({self.stage}, {self.code}, {self.text!r})"


def session(port, timeout=120):
    """An open smtplib.SMTP session to 127.0.0.1:port (EHLO done) for several transactions."""
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=timeout)
    s.ehlo()
    return s


def transaction(s, data, sender="sender@example.org", rcpts=("user@dest.example",), announce_size=False):
    """One MAIL/RCPT/DATA transaction on an open session; returns the SmtpResult of the last stage
    reached. After a refusal the session is reset (RSET) and can carry on.
    announce_size: MAIL FROM carries SIZE=<bytes> (the MTA passes it on to the milter)."""
    if isinstance(data, str):
        data = data.encode()
    if not getattr(s, "does_esmtp", False):
        s.ehlo()

    def refused(stage, code, text):
        try:
            s.rset()
        except smtplib.SMTPException:
            pass
        return SmtpResult(stage, code, text.decode(errors="replace") if isinstance(text, bytes) else text)

    code, text = s.mail(sender, [f"SIZE={len(data)}"] if announce_size else [])
    if code != 250:
        return refused("MAIL", code, text)
    accepted = 0
    for r in rcpts:
        code, text = s.rcpt(r)
        if code in (250, 251):
            accepted += 1
    if accepted == 0:
        return refused("RCPT", code, text)
    try:
        code, text = s.data(data)
    except smtplib.SMTPDataError as e:  # refused at the DATA command itself
        return refused("DATA", e.smtp_code, e.smtp_error)
    return SmtpResult("END-OF-DATA", code, text.decode(errors="replace"))
