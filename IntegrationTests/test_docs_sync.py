"""The documentation the package installs says what the program does.

The program is the reference: `breakwater check-config --print-defaults` lists every configuration
key with its default, and `breakwater --help` every subcommand. This test fails when a key or a
subcommand is added, renamed or given another default without the shipped conffile
(debian/breakwater.conf), breakwater.conf(5) and breakwater(8) following, and when the version
in the man pages or debian/changelog is not the program's.
"""
import os
import re
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFFILE = os.path.join(REPO, "debian", "breakwater.conf")
MAN5 = os.path.join(REPO, "docs", "breakwater.conf.5")
MAN8 = os.path.join(REPO, "docs", "breakwater.8")

KEY_LINE = re.compile(r"^#([a-z][a-z0-9-]*) =(.*)$")


def out(*args):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{' '.join(args)} exited {r.returncode}: {r.stderr}"
    return r.stdout


def commented_keys(text):
    """[(key, default)] of the `#key = default` lines of a config file, in order."""
    return [(m.group(1), m.group(2).strip()) for m in map(KEY_LINE.match, text.splitlines()) if m]


def read(path):
    with open(path) as f:
        return f.read()


def unroff(s):
    return re.sub(r"\\f[BIRP]", "", s).replace("\\-", "-").replace("\\e", "\\").replace("\\&", "")


def test_conffile_lists_every_key_at_its_default(bw_binary):
    program = commented_keys(out(bw_binary, "check-config", "--print-defaults"))
    shipped = commented_keys(read(CONFFILE))
    assert program, "check-config --print-defaults printed no #key = default line"
    missing = sorted(set(program) - set(shipped))
    extra = sorted(set(shipped) - set(program))
    assert not missing, f"debian/breakwater.conf lacks (key, default) {missing}"
    assert not extra, f"debian/breakwater.conf has (key, default) the program does not: {extra}"
    # Nothing is set in the shipped file: every setting line is commented out.
    active = [l for l in read(CONFFILE).splitlines() if l.strip() and not l.lstrip().startswith("#")]
    assert not active, f"debian/breakwater.conf sets {active}: ship defaults only"


def test_conffile_is_valid_as_shipped(bw_binary):
    r = subprocess.run([bw_binary, "check-config", "--config", CONFFILE], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_man5_documents_every_key(bw_binary):
    program = dict(commented_keys(out(bw_binary, "check-config", "--print-defaults")))
    man = read(MAN5)
    documented = {}
    for line in man.splitlines():
        m = re.match(r'^\.BR (\S+) " \(default: (.*)\)"?', line)
        if m:
            documented[unroff(m.group(1))] = unroff(m.group(2)).rstrip(')"')
    # `action` is documented with its rules rather than one default.
    for rule in (v for k, v in commented_keys(out(bw_binary, "check-config", "--print-defaults")) if k == "action"):
        assert f"action = {rule}" in unroff(man), f"breakwater.conf(5) does not list the built-in rule {rule!r}"
    assert re.search(r"^\.BR action ", man, re.M), "breakwater.conf(5) does not document action"
    program.pop("action", None)
    missing = sorted(set(program) - set(documented))
    assert not missing, f"breakwater.conf(5) does not document {missing}"
    extra = sorted(set(documented) - set(program))
    assert not extra, f"breakwater.conf(5) documents keys the program does not have: {extra}"
    for key, default in program.items():
        text = documented[key]
        if default and re.fullmatch(r"[\w.:@/%,-]+( [\w.:@/%,-]+)*", default) and " or " not in default \
                and not default.startswith("number"):
            assert text.split(";")[0].strip() == default, \
                f"breakwater.conf(5) gives {key} the default {text!r}, the program {default!r}"


def test_man8_documents_every_subcommand(bw_binary):
    help_text = out(bw_binary, "--help")
    section = help_text.split("SUBCOMMANDS:", 1)[1]
    subcommands = re.findall(r"^  ([a-z][a-z-]*)\s", section, re.M)
    assert "run" in subcommands
    man = unroff(read(MAN8))
    commands = man.split(".SH COMMANDS", 1)[1].split(".SH ", 1)[0]
    for sub in subcommands:
        assert re.search(rf"^\.BR? {re.escape(sub)}\b", commands, re.M), f"breakwater(8) COMMANDS lacks {sub}"
        assert f"breakwater {sub}" in man.split(".SH DESCRIPTION")[0], f"breakwater(8) SYNOPSIS lacks {sub}"
        # Every option of the subcommand (other than the config keys, which breakwater.conf(5) covers).
        sub_help = out(bw_binary, sub, "--help").split("CONFIGURATION KEYS", 1)[0]
        for opt in re.findall(r"^  (?:-\w, )?(--[a-z][a-z-]*)", sub_help.split("OPTIONS:", 1)[-1], re.M):
            if opt in ("--help", "--version"):
                continue
            assert opt in man, f"breakwater(8) does not mention {sub} {opt}"


def test_versions_agree(bw_binary):
    version = out(bw_binary, "--version").strip()
    for page in (MAN5, MAN8):
        th = next(l for l in read(page).splitlines() if l.startswith(".TH "))
        assert f'"breakwater {version}"' in th, f"{os.path.basename(page)}: {th} (program: {version})"
    changelog = read(os.path.join(REPO, "debian", "changelog")).splitlines()[0]
    m = re.match(r"breakwater \(([^)]+)\)", changelog)
    assert m and re.match(rf"{re.escape(version)}([-+~].*)?$", m.group(1)), \
        f"debian/changelog's version {m and m.group(1)} is not the program's {version}"
