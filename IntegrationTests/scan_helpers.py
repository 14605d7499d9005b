"""Helpers for IntegrationTests/test_scan_cli.py: run `breakwater scan` as a user would and read what it says.

BREAKWATER_BIN names the binary under test (default .build/debug/breakwater, relative to the checkout).
Only the checkout is needed: the shipped Signatures/ with its samples and ham set.
"""
import json
import os
import re
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGNATURES = os.path.join(REPO, "Signatures")
SAMPLES = os.path.join(SIGNATURES, "samples")
HAM = os.path.join(SIGNATURES, "ham")
TIMEOUT = 120

# Assembled from two halves so this file itself is not an EICAR hit.
EICAR = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*").encode()


def binary(env=None):
    path = (env or os.environ).get("BREAKWATER_BIN", ".build/debug/breakwater")
    return path if os.path.isabs(path) else os.path.join(REPO, path)


def scan(*args, stdin=None, user=None, env=None):
    """Runs `breakwater scan ARGS...`; returns the CompletedProcess (text stdout/stderr).

    `stdin` is bytes to feed (None: /dev/null). `user` runs it as that user (via setpriv; needs root).
    """
    cmd = [binary(env), "scan", *args]
    if user is not None:
        cmd = ["setpriv", "--reuid", user, "--regid", user_group(user), "--clear-groups", "--"] + cmd
    p = subprocess.run(cmd, input=stdin if stdin is not None else b"", capture_output=True,
                       timeout=TIMEOUT, env=env)
    p.stdout = p.stdout.decode("utf-8", "replace")
    p.stderr = p.stderr.decode("utf-8", "replace")
    return p


def user_group(user):
    import grp
    import pwd
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def describe(p):
    return f"exit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"


def messages(root):
    """Every .eml file under root, sorted."""
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.join(d, f) for f in files if f.endswith(".eml")]
    return sorted(out)


def expectation(path):
    """The names a sample's X-Breakwater-Expect header lists (empty set for ham)."""
    with open(path, "rb") as f:
        head = f.read(8192).split(b"\r\n\r\n")[0].decode("utf-8", "replace")
    m = re.search(r"^X-Breakwater-Expect: (.*)$", head, re.M)
    assert m, f"{path}: no X-Breakwater-Expect header"
    value = m.group(1).strip()
    return set() if value == "clean" else {n.strip() for n in value.split(",")}


LINE = re.compile(r"^(?P<path>.*): (?:(?P<ok>OK)|(?P<name>\S+) FOUND|ERROR (?P<error>.*))$")


def verdicts(stdout):
    """Parses clamscan-style lines into {path: ("ok", set()) | ("found", {names}) | ("error", reason)}.
    Asserts every line before the summary is one of the three forms."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("----------- SCAN SUMMARY") or line.startswith("messages: "):
            continue
        m = LINE.match(line)
        assert m, f"unexpected output line: {line!r}"
        path = m.group("path")
        if m.group("ok"):
            assert path not in out, f"{path}: reported twice"
            out[path] = ("ok", set())
        elif m.group("name"):
            kind, names = out.get(path, ("found", set()))
            assert kind == "found", f"{path}: FOUND after {kind}"
            out[path] = ("found", names | {m.group("name")})
        else:
            assert path not in out, f"{path}: reported twice"
            out[path] = ("error", m.group("error"))
    return out


def summary(text):
    """The numbers of the summary line: {"messages": n, "detected": n, "errors": n, ...}."""
    m = re.search(r"^messages: (\d+), detected: (\d+), errors: (\d+), seconds: ([\d.]+), msgs/s: ([\d.]+)",
                  text, re.M)
    assert m, f"no summary line in:\n{text}"
    return {"messages": int(m.group(1)), "detected": int(m.group(2)), "errors": int(m.group(3)),
            "seconds": float(m.group(4)), "rate": float(m.group(5))}


def json_lines(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def crashed(p):
    """A signal (negative status) or an exit status outside clamscan's 0/1/2."""
    return p.returncode not in (0, 1, 2)
