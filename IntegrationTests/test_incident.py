"""The outage replay's smoke test: `bench/incident/replay.py --quick` (issue 24), about 50 seconds.

Run c, small: a private Postfix delivering info@ through pipe(8) to a handler process per message
(10 MB for 1.5 s here) in a memory cgroup (1024 MB), `breakwater run` (tag-only, shipped signatures) in front,
300 giveaway spams from 400 client networks (XCLIENT) in 20 s with 40 ham, a sender that retries 4xx,
and ops running `breakwater signatures add` 5 s into the wave. Checked on the replay's own results:

- no wave message is accepted by the host once the add has returned plus 2 s, and the wave is turned
  away (5xx) from then on, while the part of it before the add reached the handlers (tag-only);
- every ham is filed as a ticket exactly once, none turned away; no OOM kill;
- the series were sampled (handlers, cgroup memory, queues) and the cgroup is gone afterwards;
- the figure is written when matplotlib is there.

The full replay (four runs, about 13 minutes) is `make incident`.
"""
import glob
import json
import os
import subprocess
import sys

import pytest

from conftest import require

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPLAY = os.path.join(REPO, "bench", "incident", "replay.py")


def test_quick_replay_signature_added_mid_wave(bw_binary, postfix_bin, tmp_path):
    require(os.path.isdir("/sys/fs/cgroup/memory") and os.access("/sys/fs/cgroup/memory", os.W_OK),
            "the replay needs a writable memory cgroup v1 (/sys/fs/cgroup/memory)")
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, REPLAY, "--quick", "--bin", bw_binary, "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        log, _ = p.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        p.terminate()
        log, _ = p.communicate(timeout=60)
        pytest.fail("replay --quick took over 240 s:\n" + log[-3000:])
    assert p.returncode == 0, log[-3000:]
    assert not glob.glob(f"/sys/fs/cgroup/memory/bw-incident-{p.pid}-*"), "the replay left its cgroup behind"

    with open(out / "run-c.json") as f:
        r = json.load(f)
    ctx = json.dumps({k: v for k, v in r.items() if k != "samples"})
    assert r["ops"]["rc"] == 0, ctx
    assert r["wave_accepted_after_ops_plus_2s"] == 0, ctx
    assert r["wave_rejected"] > 0 and r["wave_filed"] > 0, ctx
    assert r["wave_accepted"] + r["wave_rejected"] == r["wave"], ctx
    assert r["ham_filed"] == r["ham"] == 40 and r["ham_filed_twice"] == 0 and r["ham_rejected"] == 0, ctx
    assert r["oom_kills"] == 0 and r["filter_running_at_end"], ctx
    assert r["peak_handlers"] >= 2 and r["peak_memory_mb"] > 0 and r["peak_host_queue"] > 0, ctx
    assert len(r["samples"]) >= 20, ctx
    # Every ticket of the run is one a sent message names: the handler filed what pipe gave it.
    assert r["wave_filed"] == r["wave_accepted"], ctx
    has_matplotlib = any(subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode == 0
                         for py in (sys.executable, "/usr/bin/python3"))
    if has_matplotlib:
        assert (out / "run-c.png").stat().st_size > 10000


def test_retry_of_a_tempfailed_wave_message_is_tempfailed_again(breakwater, workdir):
    """The replay's run d found it: a sending MTA retries a wave message answered 4xx with the same
    bytes, which libclamav's clean-file cache does not parse again, so wave detection sees no text;
    the memo that covered such repeats held the last 128 messages only, and a wave of 20 messages a
    second brings hundreds between a message and its retry. Here: a wave (threshold 5), then 200 more
    of it (tempfailed), then the first tempfailed one again: still 451, as a wave member."""
    import test_waves as tw

    sigs = tw.eicar_only_signatures(os.path.join(workdir, "sigs"))
    bw = breakwater("--signatures", sigs, "--wave-action", "tempfail", "--wave-threshold", "5",
                    "--wave-min-sources", "0", "--workers", "2")
    gen = tw.Generator(31)
    msgs = [gen.wave(i) for i in range(210)]
    replies = []
    for i, (raw, sender, rcpt, _ip, _) in enumerate(msgs):
        replies.append(tw.send(bw, raw, sender, rcpt, f"198.51.{i % 250}.9"))
    held = [i for i, r in enumerate(replies) if r.kind == "tempfail"]
    assert len(held) >= 200 and held[0] < 10, [r.kind for r in replies[:12]]
    first = held[0]
    raw, sender, rcpt, _ip, _ = msgs[first]
    again = tw.send(bw, raw, sender, rcpt, f"198.51.{first}.9")
    assert again.kind == "tempfail" and "wave" in again.text, (again, bw.log_tail())
    # A message the wave never saw is still judged on its own (ham is accepted).
    raw, sender, rcpt, ip, _ = gen.ham(0)
    assert tw.send(bw, raw, sender, rcpt, ip).kind in ("accept", "continue")
