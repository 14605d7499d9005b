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

import pytest

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
    repeatable = repeatable_keys(bw_binary)
    for key, default in program.items():
        text = documented[key]
        shown, _, rest = text.partition(";")
        shown = shown.strip()
        if key in DESCRIBED:
            # A default that is not one value is described, in words the page may choose.
            assert default == DESCRIBED[key][0], \
                f"the program describes {key}'s default as {default!r}, this test as {DESCRIBED[key][0]!r}: update both pages"
            assert shown == DESCRIBED[key][1], \
                f"breakwater.conf(5) describes {key}'s default as {shown!r}, this test expects {DESCRIBED[key][1]!r}"
        else:
            assert shown == (default or "empty"), \
                f"breakwater.conf(5) gives {key} the default {shown!r}, the program {default or 'empty'!r}"
        assert ("repeatable" in rest) == (key in repeatable), \
            f"breakwater.conf(5) {'does not mark' if key in repeatable else 'marks'} {key} repeatable"


# Keys whose default is not one value (ConfigTests.testDescribedDefaults has the program's side):
# key -> (what check-config --print-defaults says, what breakwater.conf(5) says).
DESCRIBED = {
    "workers": ("number of cores", "the number of CPU cores"),
    "spool-directory": ("$TMPDIR or /tmp", "$TMPDIR, or /tmp"),
    "scan-temporary-directory": ("in memory, else the spool directory", "in memory, else the spool directory"),
}


def repeatable_keys(bw_binary):
    """The keys `breakwater run --help` marks [repeatable]."""
    return set(re.findall(r"^  --([a-z][a-z0-9-]*) \(default: .*\) \[repeatable\]$", out(bw_binary, "run", "--help"), re.M))


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


README = os.path.join(REPO, "README.md")
PACKAGE = os.path.join(REPO, "Package.swift")


def package_targets():
    """The names of Package.swift's targets other than the test targets."""
    text = read(PACKAGE)
    return set(re.findall(r'\.(?:target|executableTarget|systemLibrary|binaryTarget|plugin)\(\s*name:\s*"([^"]+)"', text))


def readme_map_targets():
    """The targets in the first column of the README's map (the first table under `## Architecture`)."""
    section = read(README).split("\n## Architecture\n", 1)[1].split("\n## ", 1)[0]
    table = section.split("\n| target | what |\n", 1)[1].split("\n\n", 1)[0]
    names = set()
    for row in table.splitlines()[1:]:
        names.update(re.findall(r"`([^`]+)`", row.split("|")[1]))
    return names


@pytest.mark.xfail(condition="BreakwaterWaves" not in open(PACKAGE).read(), strict=True,
                   reason="the README's map lists BreakwaterWaves, which issue 20 item 2 adds to Package.swift")
def test_readme_map_lists_exactly_the_package_targets():
    targets, listed = package_targets(), readme_map_targets()
    assert "BreakwaterCore" in targets and "breakwater" in targets, targets
    assert listed == targets, \
        f"README's map lacks {sorted(targets - listed)}, lists {sorted(listed - targets)} that Package.swift does not have"


def test_readme_points_to_the_man_pages_instead_of_copying_them():
    readme = read(README)
    assert "breakwater(8)" in readme and "breakwater.conf(5)" in readme
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"^make run\b", quick, re.M) and re.search(r"^make test\b", quick, re.M), "quick start lost make run / make test"
    assert "smtpd_milters" in readme and "milter_default_action" in readme, "README lost the Postfix lines"
    # A key table with defaults is breakwater.conf(5)'s job: one in the README drifts.
    assert "| key | default |" not in readme, "README copies a key table: point to breakwater.conf(5)"


def test_source_cites_only_existing_man_page_sections():
    """A `breakwater(8), SECTION` or `breakwater.conf(5), SECTION` cited in the sources exists."""
    pages = {"breakwater(8)": read(MAN8), "breakwater.conf(5)": read(MAN5)}
    cited = 0
    for root, _, files in os.walk(os.path.join(REPO, "Sources")):
        for name in files:
            text = read(os.path.join(root, name))
            assert "README.md, \"" not in text, f"{name} cites a README section: cite the man page"
            for page, section in re.findall(r"(breakwater(?:\.conf)?\(\d\)), ([A-Z][A-Z ]+[A-Z])\b", text):
                cited += 1
                assert re.search(rf'^\.S[HS] "?{re.escape(section)}"?$', pages[page], re.M | re.I), \
                    f"{name} cites {page}, {section}, which has no such section"
    assert cited, "no source cites a man page section (ControlProtocol.swift cites breakwater(8), CONTROL SOCKET)"


def test_check_config_help_says_what_it_does(bw_binary, tmp_path):
    # check-config does not load signatures: a signature directory without any database (which
    # libclamav would refuse) passes, so its help must not promise that the signatures load.
    empty = tmp_path / "no-signatures"
    empty.mkdir()
    r = subprocess.run([bw_binary, "check-config", "--config", CONFFILE, "--signatures", str(empty)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    overview = out(bw_binary, "check-config", "--help").split("CONFIGURATION KEYS", 1)[0]
    assert "signatures load" not in overview, overview
