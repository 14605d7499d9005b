"""What reached the sink behind an MTA (Postfix or Sendmail): the checks both MTAs' tests make."""
from . import mail


def sender_for(tid):
    """The envelope sender a test uses for message `tid` (Breakwater's log line names it)."""
    return f"s-{tid}@example.org"


def assert_delivered(sink, tid, timeout=30):
    got = sink.wait_for("X-Test-Id", tid, timeout=timeout)
    assert len(got) == 1, f"message {tid} expected once at the sink, found {len(got)}"
    return got[0]


def assert_never_delivered(mta, sink, tid):
    """Sends a marker ham through the same MTA and waits for it; the refused `tid` must not be there."""
    marker = mail.test_id()
    r = mta.send(mail.ham(marker), sender=sender_for(marker))
    assert r.code == 250, r
    assert_delivered(sink, marker)
    assert sink.find("X-Test-Id", tid) == [], f"refused message {tid} reached the sink"
