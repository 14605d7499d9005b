#!/usr/bin/env python3
"""Checks a generated corpus against its manifest with the real scanner.

    bench/corpus/check.py --corpus DIR [--breakwater BIN] [--signatures bench/sigs] [--jobs 2]

Runs `breakwater scan` over every message of DIR/manifest.tsv and compares: a ham message must be
clean, a spam or malware message must be reported with the signature name the manifest expects
(libclamav's .UNOFFICIAL suffix stripped; other names beside it are allowed). Prints every message
that differs and a summary; exit status 0 when none differs, 1 otherwise, 2 on a usage error.
"""
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def read_manifest(corpus):
    rows = []
    with open(os.path.join(corpus, "manifest.tsv")) as f:
        next(f)
        for line in f:
            name, cls, expected, kind, _size = line.rstrip("\n").split("\t")
            rows.append((name, cls, expected, kind))
    return rows


def scan(binary, signatures, paths, jobs):
    """{path: [signature names]} from `breakwater scan` (paths with no name are clean)."""
    with tempfile.NamedTemporaryFile("w", suffix=".list") as lst:
        lst.write("\n".join(paths) + "\n")
        lst.flush()
        r = subprocess.run([binary, "scan", "--signatures", signatures, "--jobs", str(jobs), "--no-summary",
                            "--files-from", lst.name], capture_output=True, text=True)
    if r.returncode not in (0, 1):
        raise SystemExit(f"check.py: breakwater scan failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    found = {}
    for line in r.stdout.splitlines():
        path, sep, verdict = line.rpartition(": ")
        if sep and verdict.endswith(" FOUND"):
            name = verdict[:-len(" FOUND")]
            found.setdefault(path, []).append(name[:-len(".UNOFFICIAL")] if name.endswith(".UNOFFICIAL") else name)
        elif sep and verdict.startswith("ERROR"):
            found.setdefault(path, []).append(verdict)
    return found


def differences(corpus, found):
    out = []
    for name, cls, expected, kind in read_manifest(corpus):
        got = found.get(os.path.join(corpus, name), [])
        if cls == "ham" and got:
            out.append(f"{name} ({kind}): ham reported as {', '.join(got)}")
        elif cls != "ham" and expected not in got:
            out.append(f"{name} ({kind}): expected {expected}, got {', '.join(got) or 'clean'}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--breakwater", default=os.environ.get("BREAKWATER_BIN",
                                                           os.path.join(REPO, ".build", "release", "breakwater")))
    ap.add_argument("--signatures", default=os.path.join(REPO, "bench", "sigs"))
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    corpus = os.path.abspath(a.corpus)
    if not os.path.isfile(os.path.join(corpus, "manifest.tsv")):
        ap.error(f"no manifest.tsv in {corpus}")
    if not os.access(a.breakwater, os.X_OK):
        ap.error(f"no breakwater binary at {a.breakwater} (--breakwater or BREAKWATER_BIN)")
    rows = read_manifest(corpus)
    found = scan(a.breakwater, a.signatures, [os.path.join(corpus, r[0]) for r in rows], a.jobs)
    diff = differences(corpus, found)
    for d in diff:
        print(d)
    print(f"{len(rows)} messages, {len(diff)} differ from the manifest")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
