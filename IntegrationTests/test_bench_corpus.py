"""The benchmarks' own corpus generator (bench/corpus/generate.py) and its checker (bench/corpus/check.py).

`make bench` needs nothing outside the repository: the generator writes the messages and a manifest of
their expected verdicts, and the benchmarks judge every verdict against it. So the manifest must be
right: generated messages are scanned with the real binary and bench/sigs/, every ham must be clean and
every spam and malware message reported with the expected name. Needs Debian's clamav-testfiles (the
malware); the checker must also fail when the manifest is wrong.
"""
import filecmp
import os
import re
import subprocess
import sys

from conftest import require

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERATE = os.path.join(REPO, "bench", "corpus", "generate.py")
CHECK = os.path.join(REPO, "bench", "corpus", "check.py")
SIGS = os.path.join(REPO, "bench", "sigs")
TESTFILES = "/usr/share/clamav-testfiles"


def generate(out, seed, count, large_frac="0.02"):
    subprocess.run([sys.executable, GENERATE, "--seed", str(seed), "--count", str(count), "--out", out,
                    "--large-frac", large_frac], check=True, capture_output=True, timeout=300)
    with open(os.path.join(out, "manifest.tsv")) as f:
        return [line.rstrip("\n").split("\t") for line in f][1:]


def check(binary, corpus):
    return subprocess.run([sys.executable, CHECK, "--corpus", corpus, "--breakwater", binary, "--signatures", SIGS],
                          capture_output=True, text=True, timeout=600)


def test_generated_verdicts_hold_with_the_real_scanner(bw_binary, workdir):
    require(os.path.isfile(os.path.join(TESTFILES, "clam.exe")), f"no clamav-testfiles in {TESTFILES}")
    corpus = os.path.join(workdir, "corpus")
    rows = generate(corpus, 5, 400)
    kinds = {r[3].split(":")[0] for r in rows}
    # Every class and the main variants are there, so that the check covers them.
    for kind in ("plain", "alt", "attach", "spam-cooper", "spam-phish", "mal-attach", "mal-zip", "mal-rfc822",
                 "mal-eicar-inline"):
        assert kind in kinds, f"no {kind} message among {sorted(kinds)}"
    assert {r[1] for r in rows} == {"ham", "spam", "malware"}
    r = check(bw_binary, corpus)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "400 messages, 0 differ from the manifest" in r.stdout


def test_check_fails_when_the_manifest_is_wrong(bw_binary, workdir):
    corpus = os.path.join(workdir, "corpus")
    rows = generate(corpus, 6, 60, large_frac="0")
    ham = next(r for r in rows if r[1] == "ham")
    spam = next(r for r in rows if r[1] == "spam")
    with open(os.path.join(corpus, "manifest.tsv"), "w") as f:
        f.write("filename\tclass\texpected\tkind\tbytes\n")
        for r in rows:
            if r is ham:
                r = [r[0], "spam", "Bench.Spam.MiniCooperWave", r[3], r[4]]
            elif r is spam:
                r = [r[0], "spam", "Bench.Test.EICAR", r[3], r[4]]
            f.write("\t".join(r) + "\n")
    r = check(bw_binary, corpus)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{ham[0]} ({ham[3]}): expected Bench.Spam.MiniCooperWave, got clean" in r.stdout
    assert f"{spam[0]} ({spam[3]}): expected Bench.Test.EICAR, got {spam[2]}" in r.stdout
    assert "60 messages, 2 differ from the manifest" in r.stdout


def test_same_seed_same_bytes(workdir):
    a, b = os.path.join(workdir, "a"), os.path.join(workdir, "b")
    generate(a, 9, 50)
    generate(b, 9, 50)
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b)) and len(names) == 51
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors


def test_messages_are_crlf_seven_bit_with_a_bench_id(workdir):
    corpus = os.path.join(workdir, "corpus")
    rows = generate(corpus, 3, 80, large_frac="0")
    ids = set()
    for r in rows:
        with open(os.path.join(corpus, r[0]), "rb") as f:
            data = f.read()
        assert len(data) == int(r[4])
        assert max(data) < 0x80, r[0]
        assert b"\n" not in data.replace(b"\r\n", b""), r[0]
        head = data.split(b"\r\n\r\n", 1)[0]
        bid = [line for line in head.split(b"\r\n") if line.startswith(b"X-Bench-Id: ")]
        assert len(bid) == 1, r[0]
        ids.add(bid[0])
    assert len(ids) == len(rows)


def test_expected_names_are_those_of_bench_sigs():
    with open(GENERATE) as f:
        source = f.read()
    sigs = ""
    for name in os.listdir(SIGS):
        with open(os.path.join(SIGS, name)) as f:
            sigs += f.read()
    names = set(re.findall(r'^SIG_[A-Z]+ = "([^"]+)"', source, re.M))
    assert len(names) == 5, names
    for name in names:
        assert name in sigs, f"{name} is not a signature of bench/sigs/"
