"""One host cannot forge a wave, and a wave's signature is not promoted over ham (issue 19, item 6).

Through the real milter (libmilter, in-process libclamav) with the milter protocol client:

- copies of one campaign with a fresh envelope sender each, from one IPv6 /48 (distinct /64s) and
  from one IPv4 /24, never reach wave-min-sources: forged senders from one network are one source;
  the same copies from distinct /24s are a wave;
- `breakwater waves promote` compiles the suggested signature with libclamav and checks it against
  the text of the mail the daemon accepted clean most recently, and against a ham directory
  (`--ham DIR`): a signature that would have matched ham is refused (nothing added) unless `--force`.
"""
import json
import os
import re
import subprocess

from harness.milterclient import MilterConnection
from test_waves import Generator, eicar_only_signatures, send, wave_header


def cli(bw_binary, *args):
    return subprocess.run([bw_binary, *args], capture_output=True, text=True, timeout=120)


def waves(bw_binary, control):
    r = cli(bw_binary, "waves", "--json", "--control", control)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_forged_senders_from_one_network_are_one_source(breakwater, workdir, bw_binary):
    sigs = eicar_only_signatures(os.path.join(workdir, "sigs"))
    bw = breakwater("--signatures", sigs)  # default wave-threshold 50, wave-min-sources 5
    control = os.path.join(bw.run_dir, "control.sock")
    gen = Generator(31)
    i = 0
    # 80 copies from 80 distinct /64s of one IPv6 /48, then 80 from one IPv4 /24, each with its own
    # envelope sender (the generator forges one per message): two sources at most, never a wave.
    for n in range(160):
        raw, sender, rcpt, _, shape = gen.wave(i)
        i += 1
        ip = f"2001:db8:7:{n:x}::25" if n < 80 else f"192.0.2.{1 + n % 250}"
        reply = send(bw, raw, sender, rcpt, ip)
        assert reply.kind in ("accept", "continue"), reply
        assert not wave_header(reply), f"copy {n + 1} ({shape}, from {ip}) made a wave: {reply}"
    assert waves(bw_binary, control) == []
    assert " wave=" not in bw.log()
    # The same campaign from distinct /24s: a wave as soon as more than 5 networks sent it.
    tagged_at = None
    for n in range(20):
        raw, sender, rcpt, _, _ = gen.wave(i)
        i += 1
        if wave_header(send(bw, raw, sender, rcpt, f"198.51.{100 + n}.9")) and tagged_at is None:
            tagged_at = n + 1
    assert tagged_at is not None and tagged_at <= 6, tagged_at
    listed = waves(bw_binary, control)
    assert len(listed) == 1 and listed[0]["networks"] >= 6, listed
    assert re.search(r"wave w[0-9a-f]+ started: .* ~\d+ senders, ~\d+ client networks", bw.log()), bw.log_tail()


def ham_with(phrase, seed):
    """A colleague's ordinary message that happens to quote the campaign's phrase."""
    g = Generator(seed)
    before = " ".join(g.sentence() for _ in range(8))
    after = " ".join(g.sentence() for _ in range(8))
    body = f"Hi Anna,\r\n\r\n{before}\r\nThe courier note said: {phrase}.\r\n{after}\r\n\r\nBest, Ben\r\n"
    return ("From: Ben <ben@example.org>\r\nTo: Anna <anna@dest.example>\r\nSubject: Re: the parcel\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body).encode()


def promotable_wave(breakwater, workdir, bw_binary):
    """A daemon with one wave that has a suggested signature: (bw, gen, id, name, phrase, opts, added)."""
    sigs = eicar_only_signatures(os.path.join(workdir, "sigs"))
    local = os.path.join(workdir, "local-signatures")
    os.makedirs(local)
    bw = breakwater("--signatures", sigs, "--local-signatures", local, "--wave-threshold", "10")
    control = os.path.join(bw.run_dir, "control.sock")
    gen = Generator(77)
    for n in range(20):
        raw, sender, rcpt, _, _ = gen.wave(n)
        send(bw, raw, sender, rcpt, f"198.51.{n}.20")
    listed = waves(bw_binary, control)
    assert len(listed) == 1 and listed[0]["suggestion"], listed
    wid, name = listed[0]["id"], listed[0]["suggestion"]["name"]
    phrase = " ".join(re.split(r"\[\^a-z0-9\]\+", listed[0]["suggestion"]["regex"]))
    assert len(phrase.split()) >= 3, phrase
    opts = ["--control", control, "--signatures", sigs, "--local-signatures", local]

    def added():
        return any(name in open(os.path.join(local, f)).read() for f in os.listdir(local)
                   if f.startswith("breakwater-local."))

    return bw, gen, wid, name, phrase, opts, added


def test_promote_refuses_a_signature_that_matches_recent_mail(breakwater, workdir, bw_binary):
    bw, gen, wid, name, phrase, opts, added = promotable_wave(breakwater, workdir, bw_binary)
    control = opts[1]
    # A colleague's message quoting the campaign's phrase goes through the milter (accepted, not part
    # of the wave); the daemon's check of the suggestion finds it.
    reply = send(bw, ham_with(phrase, 6), "<ben@example.org>", "<anna@dest.example>", "203.0.113.5")
    assert reply.kind in ("accept", "continue") and not wave_header(reply), reply
    r = cli(bw_binary, "waves", "promote", wid, *opts)
    print(r.stdout + r.stderr)
    assert r.returncode == 1, f"{r.returncode}\n{r.stdout}\n{r.stderr}"
    assert re.search(r"matches 1 of the \d+ messages the daemon accepted clean", r.stderr), r.stderr
    assert "  hi anna " in r.stderr, r.stderr  # the excerpt of the message it matched
    assert "would have matched ham" in r.stderr, r.stderr
    assert not added()
    assert waves(bw_binary, control)[0]["promoted_as"] is None

    # --force adds it anyway, and the wave then gets the signature's reject.
    r = cli(bw_binary, "waves", "promote", wid, "--force", *opts)
    assert r.returncode == 0, f"{r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "added anyway (--force)" in r.stderr
    assert added()
    assert waves(bw_binary, control)[0]["promoted_as"] == name
    raw, sender, rcpt, _, _ = gen.wave(99)
    reply = send(bw, raw, sender, rcpt, "198.51.200.20")
    assert reply.kind == "reject" and name in reply.text, reply


def test_promote_refuses_a_signature_that_matches_a_ham_directory(breakwater, workdir, bw_binary):
    bw, gen, wid, name, phrase, opts, added = promotable_wave(breakwater, workdir, bw_binary)
    hamdir = os.path.join(workdir, "ham")
    os.makedirs(hamdir)
    with open(os.path.join(hamdir, "1.eml"), "wb") as f:
        f.write(ham_with(phrase, 5))
    r = cli(bw_binary, "waves", "promote", wid, "--ham", hamdir, *opts)
    assert r.returncode == 1, f"{r.returncode}\n{r.stdout}\n{r.stderr}"
    # The daemon's own check found nothing (it holds no ham yet); libclamav's scan of --ham did.
    assert "checked against 0 recently accepted message(s): no match" in r.stdout, r.stdout
    assert "fires on" in r.stderr and "1.eml" in r.stderr, r.stderr
    assert not added()
    r = cli(bw_binary, "waves", "promote", wid, "--ham", hamdir, "--force", *opts)
    assert r.returncode == 0, f"{r.returncode}\n{r.stdout}\n{r.stderr}"
    assert added()


def test_promote_validates_its_arguments(breakwater, workdir, bw_binary):
    sigs = eicar_only_signatures(os.path.join(workdir, "sigs"))
    bw = breakwater("--signatures", sigs)
    control = os.path.join(bw.run_dir, "control.sock")
    for bad in ["w12 PROMOTED w1 x", "w\x1b[2J", "../etc", "wxyz", "w" + "0" * 40]:
        r = cli(bw_binary, "waves", "promote", bad, "--control", control)
        assert r.returncode == 64, (bad, r.returncode, r.stderr)  # a usage error
        assert "is not a wave id" in r.stderr and "\x1b" not in r.stderr, r.stderr
    r = cli(bw_binary, "waves", "promote", "w1234", "--name", "Breakwater.Local.x;y", "--control", control)
    assert r.returncode == 64 and "--name" in r.stderr, r.stderr
