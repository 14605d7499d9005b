"""The mmap wrapper (Sources/CClamAVPrefault) only where it was verified (issue 19, item 10): at start
the daemon decides whether libclamav's page maps come populated, from libclamav's version (the tested
range, 1.4.x) and a self-test against the real library, and says so in its log and in `status`."""
import json
import re

import pytest

from test_signatures_cli import control_of, request

ON = re.compile(r"prefault: on \(libclamav 1\.4\.\d+, tested range 1\.4\.x; self-test passed: a 9 MiB file read back "
                r"through \d+ skipped aging remaps in \d+ ms\)")


def test_startup_log_says_on_with_the_reason(breakwater, test_sigs):
    bw = breakwater("--signatures", test_sigs)
    assert bw.wait_log("prefault: "), bw.log_tail()
    line = next(l for l in bw.log().splitlines() if "prefault: " in l)
    if "prefault: off (not compiled in" in line:
        pytest.skip("a sanitizer build (BREAKWATER_BIN): its own mmap interceptor stays in charge")
    assert " notice " in line and ON.search(line), line
    head, body = request(control_of(bw), b"STATUS\n").split("\n", 1)
    st = json.loads(body)
    assert st["prefault"]["enabled"] is True and ON.search("prefault: on (" + st["prefault"]["reason"] + ")"), st["prefault"]
    assert re.search(r"^prefault: +on \(libclamav 1\.4\.", request(control_of(bw), b"STATUS TEXT\n"), re.M)


def test_startup_log_says_off_with_the_reason(breakwater, test_sigs):
    bw = breakwater("--signatures", test_sigs, "--prefault-size", "0")
    assert bw.wait_log("prefault: off (prefault-size is 0)"), bw.log_tail()
    st = json.loads(request(control_of(bw), b"STATUS\n").split("\n", 1)[1])
    assert st["prefault"] == {"enabled": False, "reason": "prefault-size is 0"}, st["prefault"]
