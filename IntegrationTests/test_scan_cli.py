"""`breakwater scan` as a user runs it: clamscan-style lines and exit status (0 clean, 1 found, 2 error),
--json, --jobs, stdin, and bad input that must never crash it.

Runs the built binary (BREAKWATER_BIN, default .build/debug/breakwater) against the shipped Signatures/
and its samples and ham set. Needs nothing else; the unreadable-directory case runs the binary as
`nobody` (root reads everything) and needs root for that.
"""
import os
import random
import shutil
import stat
import tempfile

import pytest

import scan_helpers as h

REQUIRE = os.environ.get("BREAKWATER_REQUIRE_PEERS") == "1"


@pytest.fixture(scope="module", autouse=True)
def built_binary():
    if not os.access(h.binary(), os.X_OK):
        msg = f"breakwater binary not found at {h.binary()} (swift build, or set BREAKWATER_BIN)"
        if REQUIRE:
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="bw-scan-cli-")
    os.chmod(d, 0o755)  # the `nobody` case must be able to enter it
    yield d
    shutil.rmtree(d, ignore_errors=True)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def sample(name):
    path = os.path.join(h.SAMPLES, name)
    assert os.path.exists(path), path
    return path


SIGS = ("--signatures", h.SIGNATURES)


# ---------------------------------------------------------------- exit status and lines

def test_ham_is_clean_exit_0():
    p = h.scan(*SIGS, h.HAM)
    assert p.returncode == 0, h.describe(p)
    v = h.verdicts(p.stdout)
    ham = h.messages(h.HAM)
    assert set(v) == set(ham)
    assert all(kind == "ok" for kind, _ in v.values()), h.describe(p)
    s = h.summary(p.stdout)
    assert (s["messages"], s["detected"], s["errors"]) == (len(ham), 0, 0)


def test_samples_are_found_exit_1_with_every_name():
    p = h.scan(*SIGS, h.SAMPLES)
    assert p.returncode == 1, h.describe(p)
    v = h.verdicts(p.stdout)
    files = h.messages(h.SAMPLES)
    assert set(v) == set(files)
    for path in files:
        assert v[path] == ("found", h.expectation(path)), path
    s = h.summary(p.stdout)
    assert (s["messages"], s["detected"], s["errors"]) == (len(files), len(files), 0)
    assert ".UNOFFICIAL" not in p.stdout, "names are reported as written in the signature files"


def test_line_format_is_clamscans(tmp):
    eicar = sample("Breakwater.Test.EICAR/inline-text.eml")
    ham = os.path.join(h.HAM, "plain-meeting.eml")
    missing = os.path.join(tmp, "missing.eml")
    p = h.scan(*SIGS, eicar, ham, missing)
    lines = p.stdout.splitlines()
    assert f"{eicar}: Breakwater.Test.EICAR FOUND" in lines
    assert f"{ham}: OK" in lines
    assert f"{missing}: ERROR No such file or directory" in lines
    assert "----------- SCAN SUMMARY -----------" in lines
    assert p.returncode == 2, "an error wins over a detection, as in clamscan"


def test_default_signature_set_is_the_shipped_one():
    # No --signatures: run from the checkout, the binary loads the checkout's Signatures/.
    p = h.scan(sample("Breakwater.Spam.MiniCooperGiveaway/plain-7bit.eml"))
    assert p.returncode == 1, h.describe(p)
    assert "Breakwater.Spam.MiniCooperGiveaway FOUND" in p.stdout


def test_no_summary_flag():
    p = h.scan(*SIGS, "--no-summary", os.path.join(h.HAM, "plain-meeting.eml"))
    assert p.returncode == 0, h.describe(p)
    assert p.stdout.splitlines() == [os.path.join(h.HAM, "plain-meeting.eml") + ": OK"]


def test_limit_is_reported_never_clean():
    # One layer over --max-file-size: libclamav's "exceeds max" heuristic, reported as a detection.
    path = os.path.join(h.HAM, "pdf-attachment.eml")
    assert h.scan(*SIGS, path).returncode == 0, "baseline: clean with the default limits"
    p = h.scan(*SIGS, "--max-file-size", "200", "--json", path)
    assert p.returncode == 1, h.describe(p)
    [obj] = h.json_lines(p.stdout)
    assert obj["status"] == "found" and obj["limit_exceeded"] is True, obj
    assert any(n.startswith("Heuristics.Limits.Exceeded") for n in obj["signatures"]), obj


# ---------------------------------------------------------------- --json

def test_json_output_shape():
    files = [sample("combined/spam-with-eicar.eml"), os.path.join(h.HAM, "plain-meeting.eml")]
    p = h.scan(*SIGS, "--json", *files)
    assert p.returncode == 1, h.describe(p)
    objs = h.json_lines(p.stdout)  # stdout holds nothing but one JSON object per line
    assert [o["path"] for o in objs] == files
    found, clean = objs
    assert set(found) >= {"path", "status", "signatures", "raw_signatures", "limit_exceeded", "bytes", "scan_seconds"}
    assert found["status"] == "found"
    assert set(found["signatures"]) == h.expectation(files[0]) and len(found["signatures"]) == 3
    assert sorted(found["raw_signatures"]) == sorted(n + ".UNOFFICIAL" for n in found["signatures"])
    assert found["limit_exceeded"] is False
    assert found["bytes"] == os.path.getsize(files[0])
    assert isinstance(found["scan_seconds"], float) and 0 <= found["scan_seconds"] < 60
    assert clean["status"] == "clean" and clean["signatures"] == [] and clean["raw_signatures"] == []
    assert "error" not in clean
    s = h.summary(p.stderr)  # the summary goes to stderr in --json mode
    assert (s["messages"], s["detected"], s["errors"]) == (2, 1, 0)


def test_json_error_object(tmp):
    empty = write(os.path.join(tmp, "empty.eml"), b"")
    p = h.scan(*SIGS, "--json", empty)
    assert p.returncode == 2, h.describe(p)
    [obj] = h.json_lines(p.stdout)
    assert obj["path"] == empty and obj["status"] == "error" and obj["error"], obj
    assert obj["signatures"] == []


# ---------------------------------------------------------------- --jobs

def test_jobs_2_gives_the_same_verdicts_as_jobs_1():
    args = (*SIGS, "--json", h.SAMPLES, h.HAM)
    one = h.scan("--jobs", "1", *args)
    two = h.scan("--jobs", "2", *args)
    assert one.returncode == two.returncode == 1, h.describe(two)

    def by_path(p):
        return {o["path"]: (o["status"], tuple(sorted(o["signatures"]))) for o in h.json_lines(p.stdout)}
    a, b = by_path(one), by_path(two)
    assert len(a) == len(h.messages(h.SAMPLES)) + len(h.messages(h.HAM))
    assert a == b


def test_jobs_more_than_messages():
    p = h.scan(*SIGS, "--jobs", "16", sample("Breakwater.Test.EICAR/in-zip.eml"))
    assert p.returncode == 1, h.describe(p)
    assert h.summary(p.stdout)["messages"] == 1


@pytest.mark.parametrize("jobs", ["0", "-1", "1000", "x"])
def test_bad_jobs_value_is_refused(jobs):
    p = h.scan(*SIGS, "--jobs", jobs, h.HAM)
    # A usage error: swift-argument-parser's EX_USAGE (64), or 2; never 0/1, never a crash.
    assert p.returncode in (2, 64), h.describe(p)
    assert "jobs" in p.stderr.lower() or "error" in p.stderr.lower(), h.describe(p)
    assert p.stdout == ""


# ---------------------------------------------------------------- stdin

def test_stdin_found_and_clean():
    with open(sample("Breakwater.Phish.CredentialHarvest/mailbox-suspension-plain.eml"), "rb") as f:
        phish = f.read()
    p = h.scan(*SIGS, "-", stdin=phish)
    assert p.returncode == 1, h.describe(p)
    assert "stdin: Breakwater.Phish.CredentialHarvest FOUND" in p.stdout.splitlines()
    with open(os.path.join(h.HAM, "html-newsletter.eml"), "rb") as f:
        p = h.scan(*SIGS, "-", stdin=f.read())
    assert p.returncode == 0, h.describe(p)
    assert "stdin: OK" in p.stdout.splitlines()


def test_zero_byte_stdin_is_an_error_line():
    p = h.scan(*SIGS, "-", stdin=b"")
    assert p.returncode == 2, h.describe(p)
    assert h.verdicts(p.stdout) == {"stdin": ("error", "empty message (0 bytes)")}


# ---------------------------------------------------------------- --files-from

def test_files_from_scans_the_listed_paths_with_the_command_line_ones(tmp):
    ham = h.messages(h.HAM)
    phish = sample("Breakwater.Phish.CredentialHarvest/mailbox-suspension-plain.eml")
    # CRLF and LF line ends, an empty line.
    listed = write(os.path.join(tmp, "list"), ("\r\n".join(ham[:2]) + "\n\n" + phish + "\n").encode())
    p = h.scan(*SIGS, "--files-from", listed, ham[2])
    assert p.returncode == 1, h.describe(p)
    v = h.verdicts(p.stdout)
    assert set(v) == {ham[0], ham[1], ham[2], phish}, v
    assert v[phish] == ("found", {"Breakwater.Phish.CredentialHarvest"})
    assert all(v[x] == ("ok", set()) for x in ham[:3])
    assert "messages: 4," in p.stdout


def test_files_from_walks_a_listed_directory_as_the_command_line_does(tmp):
    listed = write(os.path.join(tmp, "list"), (h.HAM + "\n").encode())
    p = h.scan(*SIGS, "--files-from", listed)
    assert p.returncode == 0, h.describe(p)
    assert set(h.verdicts(p.stdout)) == set(h.messages(h.HAM))


def test_files_from_standard_input_and_no_path():
    ham = h.messages(h.HAM)
    p = h.scan(*SIGS, "--files-from", "-", stdin=("\n".join(ham) + "\n").encode())
    assert p.returncode == 0, h.describe(p)
    assert set(h.verdicts(p.stdout)) == set(ham)


def test_files_from_errors_say_what_is_wrong(tmp):
    p = h.scan(*SIGS, "--files-from", os.path.join(tmp, "missing"))
    assert p.returncode == 2 and "--files-from " in p.stderr and "No such file" in p.stderr, h.describe(p)
    assert p.stdout == "", "nothing is scanned when the list cannot be read"
    p = h.scan(*SIGS, "--files-from", tmp)
    assert p.returncode == 2 and "not a regular file" in p.stderr, h.describe(p)
    huge = os.path.join(tmp, "huge-list")
    with open(huge, "wb") as f:
        f.truncate((1 << 30) + 1)  # sparse: refused by its size, never read
    p = h.scan(*SIGS, "--files-from", huge)
    assert p.returncode == 2 and "larger than 1 GiB" in p.stderr, h.describe(p)
    assert p.stdout == ""
    p = h.scan(*SIGS, "--files-from", "-", "-")
    assert p.returncode == 64 and "standard input cannot hold both" in p.stderr, h.describe(p)
    p = h.scan(*SIGS)
    assert p.returncode == 64 and "--files-from" in p.stderr, h.describe(p)


def test_a_listed_path_that_does_not_exist_is_an_error_line(tmp):
    missing = os.path.join(tmp, "gone.eml")
    listed = write(os.path.join(tmp, "list"), (missing + "\n").encode())
    p = h.scan(*SIGS, "--files-from", listed)
    assert p.returncode == 2, h.describe(p)
    assert h.verdicts(p.stdout)[missing][0] == "error"


# ---------------------------------------------------------------- bad input never crashes

def test_empty_file(tmp):
    path = write(os.path.join(tmp, "empty.eml"), b"")
    p = h.scan(*SIGS, path)
    assert p.returncode == 2, h.describe(p)
    assert h.verdicts(p.stdout) == {path: ("error", "empty message (0 bytes)")}


def test_file_that_is_not_mail(tmp):
    # Not mail, but scannable: libclamav scans it as what it is. EICAR in a plain text file is still found.
    text = write(os.path.join(tmp, "notes.txt"), b"just some notes, no headers at all\n")
    eicar = write(os.path.join(tmp, "eicar.com"), h.EICAR)
    p = h.scan(*SIGS, text, eicar)
    assert p.returncode == 1, h.describe(p)
    v = h.verdicts(p.stdout)
    assert v[text] == ("ok", set())
    assert v[eicar] == ("found", {"Breakwater.Test.EICAR"})


def test_binary_garbage(tmp):
    rnd = random.Random(1234)
    paths = []
    for i, size in enumerate([1, 3, 4096, 1 << 20]):
        paths.append(write(os.path.join(tmp, f"garbage{i}.bin"), bytes(rnd.getrandbits(8) for _ in range(size))))
    # Garbage that starts like things libclamav parses: a truncated zip, MIME with a broken boundary.
    paths.append(write(os.path.join(tmp, "trunc.zip"), b"PK\x03\x04" + bytes(40)))
    paths.append(write(os.path.join(tmp, "broken-mime.eml"),
                       b"Content-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%%\r\n"))
    p = h.scan(*SIGS, *paths)
    assert not h.crashed(p), h.describe(p)
    assert p.returncode in (0, 2), h.describe(p)
    assert set(h.verdicts(p.stdout)) == set(paths), "one line per input"
    assert h.summary(p.stdout)["messages"] == len(paths)


def test_nonexistent_path(tmp):
    path = os.path.join(tmp, "does", "not", "exist")
    p = h.scan(*SIGS, path)
    assert p.returncode == 2, h.describe(p)
    assert h.verdicts(p.stdout) == {path: ("error", "No such file or directory")}


def test_special_file():
    p = h.scan(*SIGS, "/dev/null")
    assert p.returncode == 2, h.describe(p)
    assert h.verdicts(p.stdout) == {"/dev/null": ("error", "not a regular file")}


def test_directory_and_file_without_permission(tmp):
    if os.geteuid() != 0:
        pytest.skip("switching to `nobody` needs root (run as a non-root user, chmod 000 alone is enough)")
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is missing")
    # nobody must be able to run the binary and load the signatures for the case to mean anything. When
    # the checkout is closed to other users (e.g. under /root), use copies in the test's own directory.
    sigs, env = SIGS, None
    probe = h.scan(*sigs, os.path.join(h.HAM, "plain-meeting.eml"), user="nobody")
    if probe.returncode != 0:
        shutil.copy2(h.binary(), os.path.join(tmp, "breakwater"))
        shutil.copytree(h.SIGNATURES, os.path.join(tmp, "sigs"), ignore=shutil.ignore_patterns("samples", "ham"))
        os.chmod(os.path.join(tmp, "sigs"), 0o755)
        sigs, env = ("--signatures", os.path.join(tmp, "sigs")), dict(os.environ, BREAKWATER_BIN=os.path.join(tmp, "breakwater"))
        write(os.path.join(tmp, "probe.eml"), b"Subject: x\r\n\r\nhello\r\n")
        probe = h.scan(*sigs, os.path.join(tmp, "probe.eml"), user="nobody", env=env)
        if probe.returncode != 0:
            pytest.skip(f"`nobody` cannot run the binary even from a copy: {h.describe(probe)}")
    locked = os.path.join(tmp, "locked")
    os.mkdir(locked)
    write(os.path.join(locked, "inside.eml"), b"Subject: x\r\n\r\nhello\r\n")
    os.chmod(locked, 0)
    secret = write(os.path.join(tmp, "secret.eml"), b"Subject: x\r\n\r\nhello\r\n")
    os.chmod(secret, 0)
    readable = write(os.path.join(tmp, "ok.eml"), b"Subject: x\r\n\r\nhello\r\n")
    os.chmod(readable, 0o644)
    try:
        p = h.scan(*sigs, locked, secret, readable, user="nobody", env=env)
    finally:
        os.chmod(locked, 0o755)
    assert p.returncode == 2, h.describe(p)
    v = h.verdicts(p.stdout)
    assert v == {locked: ("error", "Permission denied"), secret: ("error", "Permission denied"),
                 readable: ("ok", set())}, h.describe(p)


# ---------------------------------------------------------------- signature problems

def test_broken_signature_file_names_the_file(tmp):
    sigs = os.path.join(tmp, "sigs")
    os.mkdir(sigs)
    write(os.path.join(sigs, "good.ndb"), b"Good.Sig:0:*:676f6f64\n")
    write(os.path.join(sigs, "broken.ldb"), b"Broken.Logic;Engine:51-255,Target:0;0&1;414243\n")
    p = h.scan("--signatures", sigs, os.path.join(h.HAM, "plain-meeting.eml"))
    assert p.returncode == 2, h.describe(p)
    assert os.path.join(sigs, "broken.ldb") in p.stderr, h.describe(p)
    assert p.stdout == "", "nothing is scanned without an engine"


def test_missing_signature_directory(tmp):
    missing = os.path.join(tmp, "no-such-sigs")
    p = h.scan("--signatures", missing, os.path.join(h.HAM, "plain-meeting.eml"))
    assert p.returncode == 2, h.describe(p)
    assert missing in p.stderr


def test_several_signature_directories(tmp):
    ops = os.path.join(tmp, "ops")
    os.mkdir(ops)
    write(os.path.join(ops, "local.ndb"), b"Ops.Local.Agenda:0:*:6167656e646120666f72205468757273646179\n")
    meeting = os.path.join(h.HAM, "plain-meeting.eml")
    p = h.scan(*SIGS, "--signatures", ops, meeting)
    assert p.returncode == 1, h.describe(p)
    assert h.verdicts(p.stdout) == {meeting: ("found", {"Ops.Local.Agenda"})}
