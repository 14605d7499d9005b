"""What Breakwater negotiates with the MTA, seen from our own milter client.

Over a unix socket the steps that only continue need no reply (connect, headers) and DATA and
end-of-headers are not sent at all: fewer round trips per message. RCPT keeps its reply (past
max-recipients it is answered 452 4.5.3) unless max-recipients = 0. Over TCP every step
keeps its reply (a reply carries the ACK at once; without it Nagle meets the delayed ACK, about
40 ms per stall). A client in skip-networks is therefore accepted at connect over TCP, and at each
MAIL FROM over a unix socket, where connect has no reply."""
import pytest

from harness import mail
from harness.milterclient import (SMFIP_NODATA, SMFIP_NOEOH, SMFIP_NOHELO, SMFIP_NR_CONN, SMFIP_NR_HDR,
                                  SMFIP_NR_RCPT, MilterConnection)

NO_REPLY = SMFIP_NR_CONN | SMFIP_NR_HDR


@pytest.fixture(scope="module")
def daemons(module_breakwater, test_sigs):
    args = ("--signatures", test_sigs, "--skip-networks", "192.0.2.0/24")
    return {"inet": module_breakwater(*args, name="bw-proto-inet"),
            "unix": module_breakwater(*args, socket="unix", name="bw-proto-unix")}


@pytest.mark.parametrize("socket", ["inet", "unix"])
def test_negotiated_steps_and_skipped_network(daemons, socket):
    bw = daemons[socket]
    with MilterConnection.open(bw.milter_spec) as m:
        m.negotiate()
        assert m.protocol & SMFIP_NOHELO
        if socket == "unix":
            assert m.protocol & NO_REPLY == NO_REPLY, hex(m.protocol)
            assert not m.protocol & SMFIP_NR_RCPT, hex(m.protocol)
            assert m.protocol & (SMFIP_NODATA | SMFIP_NOEOH) == SMFIP_NODATA | SMFIP_NOEOH, hex(m.protocol)
        else:
            assert m.protocol & NO_REPLY == 0, hex(m.protocol)
        # A skipped client: accepted at connect (TCP) or at every MAIL FROM (unix).
        r = m.connect(address="192.0.2.7")
        if socket == "unix":
            assert r is None
            for _ in range(2):
                tid = mail.test_id()
                r = m.send_message(mail.eicar_attachment(tid), rcpt_macros={"i": f"Q{tid}"})
                assert (r.stage, r.kind) == ("mail", "accept"), r
        else:
            assert r.kind == "accept", r
        m.quit()
    assert bw.wait_log("client=192.0.2.7 "), bw.log_tail()

    # Any other client is scanned, on the same daemon.
    with MilterConnection.open(bw.milter_spec) as m:
        m.negotiate()
        r = m.connect(address="198.51.100.7")
        assert r is None if socket == "unix" else r.kind == "continue", r
        r = m.send_message(mail.eicar_attachment(mail.test_id()))
        assert (r.stage, r.smtp_code) == ("eom", "550"), r
        m.quit()
