"""Root-run ops commands against a directory the service user owns, and ops commands under sudo.

The ops commands (`breakwater signatures add|remove`, `waves promote`) run as root against the
local-signatures directory, which belongs to the service user. That user can plant a symbolic link,
a hard link or a FIFO in place of the lock file or of a signature file, or swap the directory itself
for a link. Here the directory belongs to `nobody` (standing in for the service user) and the link
points at a root-only file outside (standing in for /etc/shadow): the commands refuse with a clear
error and the target keeps its content, owner and mode. A lock file the commands did not create
keeps its owner; one they create gets the directory's owner.

Under sudo (SUDO_UID set), a `--config FILE` the invoking user cannot read is refused without a word
of its content; without SUDO_UID root reads it as before.

The real binary, run as root, as the other CLI tests do.
"""
import os
import pwd
import stat
import subprocess

import pytest

from test_signatures_cli import Ops, cli
from test_waves import Generator, control_path, eicar_only_signatures, send, wave_header

NOBODY = pwd.getpwnam("nobody")
SECRET = "root:$6$saltsalt$SECRETHASHxyz:19000:0:99999:7:::\n"
LOCK = ".breakwater-signatures.lock"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs the ops commands as root")


def shadow(workdir, content=SECRET, mode=0o600):
    """A root-only file outside the ops directory, standing in for /etc/shadow."""
    d = os.path.join(workdir, "etc")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "shadow")
    with open(path, "w") as f:
        f.write(content)
    os.chmod(path, mode)
    os.chown(path, 0, 0)
    return path


def fingerprint(path):
    st = os.lstat(path)
    with open(path, "rb") as f:
        return f.read(), st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_ino


def service_owned(ops):
    os.chown(ops.ops, NOBODY.pw_uid, NOBODY.pw_gid)
    return ops


@pytest.fixture
def ops(bw_binary, workdir, test_sigs):
    return service_owned(Ops(bw_binary, workdir, test_sigs))


def add(ops, name="Breakwater.Local.Spam.Planted"):
    return ops("add", name, "--text", "planted wave text", "--ignore-case", "--no-reload")


# --- item 4: no link followed -------------------------------------------------------------------

def test_lock_file_symlink_is_not_followed(ops, workdir):
    target = shadow(workdir)
    before = fingerprint(target)
    os.symlink(target, os.path.join(ops.ops, LOCK))
    for args in (["add", "Breakwater.Local.Spam.Planted", "--text", "planted wave text", "--no-reload"],
                 ["remove", "Breakwater.Local.Spam.Planted", "--no-reload"]):
        r = ops(*args)
        assert r.returncode == 1, (args, r.returncode, r.stdout, r.stderr)
        assert "symbolic link" in r.stderr and LOCK in r.stderr, r.stderr
        assert SECRET.strip() not in r.stdout + r.stderr
        assert fingerprint(target) == before, f"{args[0]} changed the link's target"
        assert os.path.islink(os.path.join(ops.ops, LOCK))
        assert ops.files() == {}


def test_dangling_lock_symlink_creates_nothing(ops, workdir):
    target = os.path.join(workdir, "etc", "cron.d-breakwater")
    os.makedirs(os.path.dirname(target))
    os.symlink(target, os.path.join(ops.ops, LOCK))
    r = add(ops)
    assert r.returncode == 1 and "symbolic link" in r.stderr, r.stderr
    assert not os.path.exists(target), "the lock file's link was followed to create a file"


@pytest.mark.parametrize("owned", ["breakwater-local.ldb", "breakwater-local.ndb"])
def test_signature_file_symlink_is_not_followed(ops, workdir, owned):
    target = shadow(workdir, content="")  # empty: readable as a database, so only the link stops it
    before = fingerprint(target)
    link = os.path.join(ops.ops, owned)
    os.symlink(target, link)
    r = ops("add", "Breakwater.Local.Spam.Planted", "--text", "planted wave text", "--ignore-case", "--no-reload")
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "symbolic link" in r.stderr and owned in r.stderr, r.stderr
    r = ops("remove", "Breakwater.Local.Spam.Planted", "--no-reload")
    assert r.returncode == 1 and "symbolic link" in r.stderr, r.stderr
    assert fingerprint(target) == before
    assert os.path.islink(link) and os.readlink(link) == target


def test_secret_behind_a_signature_link_is_not_copied(ops, workdir):
    target = shadow(workdir)
    before = fingerprint(target)
    os.symlink(target, os.path.join(ops.ops, "breakwater-local.ldb"))
    r = ops("add", "Breakwater.Local.Spam.Planted", "--hex", "cafebabe", "--no-reload")
    assert r.returncode == 1 and "symbolic link" in r.stderr, r.stderr
    assert "SECRETHASH" not in r.stdout + r.stderr
    assert fingerprint(target) == before
    for name in os.listdir(ops.ops):
        p = os.path.join(ops.ops, name)
        if not os.path.islink(p):
            assert "SECRETHASH" not in open(p).read(), f"the secret was copied into {name}"


def test_fifo_and_hard_link_are_refused(ops, workdir):
    fifo = os.path.join(ops.ops, "breakwater-local.ldb")
    os.mkfifo(fifo)
    r = cli(ops.binary, "signatures", "add", "Breakwater.Local.Spam.Planted", "--text", "planted wave text",
            "--ignore-case", "--no-reload", *ops.flags(), timeout=30)
    assert r.returncode == 1 and "not a regular file" in r.stderr, r.stderr
    os.unlink(fifo)

    target = shadow(workdir, content="")
    before = fingerprint(target)
    os.link(target, os.path.join(ops.ops, "breakwater-local.ldb"))
    r = add(ops)
    assert r.returncode == 1 and "hard links" in r.stderr, r.stderr
    assert fingerprint(target)[:4] == before[:4]


def test_directory_swapped_for_a_link_is_refused(bw_binary, workdir, test_sigs):
    ops = service_owned(Ops(bw_binary, workdir, test_sigs))
    real = ops.ops
    ops.ops = os.path.join(workdir, "ops-link")
    os.symlink(real, ops.ops)
    r = add(ops)
    assert r.returncode == 1 and "symbolic link" in r.stderr and "ops-link" in r.stderr, r.stderr
    assert os.listdir(real) == []


def test_lock_file_keeps_its_owner_and_new_files_get_the_directory_owner(ops):
    lock = os.path.join(ops.ops, LOCK)
    with open(lock, "w"):
        pass
    os.chown(lock, 0, 0)
    os.chmod(lock, 0o600)
    r = add(ops)
    assert r.returncode == 0, r.stderr
    st = os.stat(lock)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600), "the lock file found in place was given away"
    # The signature file it created is the directory owner's, so the daemon (the service user) reads it.
    st = os.stat(os.path.join(ops.ops, "breakwater-local.ldb"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY.pw_uid, NOBODY.pw_gid, 0o644)

    # A lock file created by the command goes to the directory's owner (usable by the service user).
    os.unlink(lock)
    r = add(ops, "Breakwater.Local.Spam.Second")
    assert r.returncode == 0, r.stderr
    st = os.stat(lock)
    assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    # A file the service user owns and replaced atomically keeps its owner; nothing else there.
    assert sorted(os.listdir(ops.ops)) == [LOCK, "breakwater-local.ldb"]


def test_waves_promote_follows_no_link(breakwater, workdir, bw_binary):
    sigs = eicar_only_signatures(os.path.join(workdir, "sigs"))
    local = os.path.join(workdir, "local-signatures")
    os.makedirs(local)
    os.chown(local, NOBODY.pw_uid, NOBODY.pw_gid)
    bw = breakwater("--signatures", sigs, "--local-signatures", local, "--workers", "2",
                    "--wave-threshold", "6", "--wave-min-sources", "2")
    gen = Generator(7)
    wid, tagged = None, 0
    for i in range(60):
        wid = wave_header(send(bw, *gen.wave(i)[:4])) or wid
        tagged += wid is not None
        if tagged >= 12:  # enough samples for a suggestion
            break
    assert wid, "no wave detected"
    target = shadow(workdir)
    before = fingerprint(target)
    os.symlink(target, os.path.join(local, LOCK))
    args = [bw_binary, "waves", "promote", wid, "--control", control_path(bw), "--signatures", sigs,
            "--local-signatures", local]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "symbolic link" in r.stderr and LOCK in r.stderr, r.stderr
    assert fingerprint(target) == before
    assert [f for f in os.listdir(local)] == [LOCK]

    # The same with a link in place of the signature file the suggestion goes into (a regex: .ldb).
    os.unlink(os.path.join(local, LOCK))
    os.symlink(target, os.path.join(local, "breakwater-local.ldb"))
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "symbolic link" in r.stderr and "breakwater-local.ldb" in r.stderr, r.stderr
    assert "SECRETHASH" not in r.stdout + r.stderr
    assert fingerprint(target) == before
    assert os.path.islink(os.path.join(local, "breakwater-local.ldb"))


# --- item 9: no file leaked under sudo ----------------------------------------------------------

def secret_config(workdir):
    """A root-only (0600) file that is not a config: a parse error would quote its first line."""
    return shadow(workdir)


def sudo_env(uid=None, gid=None):
    env = dict(os.environ)
    env.update(SUDO_UID=str(NOBODY.pw_uid if uid is None else uid), SUDO_GID=str(NOBODY.pw_gid if gid is None else gid),
               SUDO_USER="nobody", SUDO_COMMAND="/usr/sbin/breakwater")
    return env


def run(bw_binary, *args, env=None):
    return subprocess.run([bw_binary, *args], capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL)


def test_sudo_config_the_invoking_user_cannot_read_is_refused(bw_binary, workdir, test_sigs):
    conf = secret_config(workdir)
    commands = [["check-config", "--config", conf],
                ["status", "--config", conf, "--control", os.path.join(workdir, "none.sock")],
                ["signatures", "list", "--config", conf],
                ["waves", "--config", conf, "--control", os.path.join(workdir, "none.sock")]]
    for cmd in commands:
        # Without sudo, root reads it: the parse error quotes the line (that is what leaked).
        r = run(bw_binary, *cmd)
        assert r.returncode == 2 and "SECRETHASH" in r.stderr, (cmd, r.returncode, r.stderr)
        r = run(bw_binary, *cmd, env=sudo_env())
        assert r.returncode == 2, (cmd, r.returncode, r.stdout, r.stderr)
        assert "SECRETHASH" not in r.stdout + r.stderr and "root:" not in r.stdout + r.stderr, r.stderr
        assert conf in r.stderr and "cannot read" in r.stderr and f"uid {NOBODY.pw_uid}" in r.stderr, r.stderr


def test_sudo_config_the_invoking_user_can_read_is_used(bw_binary, workdir, test_sigs):
    good = os.path.join(workdir, "breakwater.conf")
    with open(good, "w") as f:
        f.write(f"signatures = {test_sigs}\nworkers = 3\n")
    os.chmod(good, 0o600)
    # Root-only: refused under sudo, fine for root itself.
    r = run(bw_binary, "check-config", "--config", good, env=sudo_env())
    assert r.returncode == 2 and "cannot read" in r.stderr, r.stderr
    r = run(bw_binary, "check-config", "--config", good)
    assert r.returncode == 0 and "3 scan slots" in r.stdout, r.stderr
    # Readable by the invoking user (its group here): used under sudo.
    os.chown(good, 0, NOBODY.pw_gid)
    os.chmod(good, 0o640)
    r = run(bw_binary, "check-config", "--config", good, env=sudo_env())
    assert r.returncode == 0 and "3 scan slots" in r.stdout, r.stderr
    # A directory on the way the user cannot enter also hides it.
    hidden = os.path.join(workdir, "private")
    os.makedirs(hidden)
    os.chmod(hidden, 0o700)
    inner = os.path.join(hidden, "breakwater.conf")
    os.rename(good, inner)
    os.chmod(inner, 0o644)
    r = run(bw_binary, "check-config", "--config", inner, env=sudo_env())
    assert r.returncode == 2 and "cannot read" in r.stderr, r.stderr
    # sudo by root itself (SUDO_UID=0) changes nothing.
    r = run(bw_binary, "check-config", "--config", inner, env=sudo_env(uid=0, gid=0))
    assert r.returncode == 0, r.stderr


def test_sudo_files_the_invoking_user_cannot_read_are_not_read(bw_binary, workdir, test_sigs):
    """--check mail, --sha256-of and `signatures test` files are read with the sudo user's permissions:
    otherwise `--check /etc/shadow` with a regex answers "fires on" (an oracle for its content)."""
    ops = Ops(bw_binary, workdir, test_sigs)
    secret = shadow(workdir)
    hidden = os.path.join(workdir, "private-mail")
    os.makedirs(hidden)
    os.chmod(hidden, 0o700)
    with open(os.path.join(hidden, "1.eml"), "w") as f:
        f.write("From: a@example.org\r\nSubject: x\r\n\r\nSECRETHASHxyz\r\n")

    def sudo(*args):
        return subprocess.run([bw_binary, "signatures", *args, *ops.flags()], capture_output=True, text=True,
                              timeout=120, env=sudo_env(), stdin=subprocess.DEVNULL)

    for target in (secret, hidden):
        r = sudo("add", "Breakwater.Local.Spam.Oracle", "--regex", "SECRETHASH[a-z]+", "--check", target, "--no-reload")
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        assert "fires on" not in r.stderr and "user who ran sudo" in r.stderr, r.stderr
    assert ops.files() == {}
    r = sudo("add", "Breakwater.Local.Malware.Shadow", "--sha256-of", secret, "--no-reload")
    assert r.returncode == 1 and "user who ran sudo" in r.stderr, r.stderr
    assert ops.files() == {}
    r = sudo("test", secret)
    assert r.returncode == 2 and "ERROR" in r.stdout and "user who ran sudo" in r.stdout, r.stdout + r.stderr
    # Root without sudo reads them (what it always did): the regex fires on the hidden message.
    r = ops("add", "Breakwater.Local.Spam.Oracle", "--regex", "SECRETHASH[a-z]+", "--check", hidden, "--no-reload")
    assert r.returncode == 1 and "fires on " + hidden in r.stderr, r.stderr


def test_list_reads_no_link_in_the_ops_directory(ops, workdir):
    """A link in the ops directory to a root-only file would print its lines as signature names."""
    r = add(ops)
    assert r.returncode == 0, r.stderr
    target = shadow(workdir)
    os.symlink(target, os.path.join(ops.ops, "planted.ldb"))
    os.mkfifo(os.path.join(ops.ops, "fifo.ndb"))
    r = cli(ops.binary, "signatures", "list", "--local", *ops.flags(), timeout=30)
    assert r.returncode == 0, r.stderr
    assert "SECRETHASH" not in r.stdout + r.stderr, r.stdout
    assert "planted.ldb is a symbolic link" in r.stderr and "fifo.ndb is not a regular file" in r.stderr, r.stderr
    assert "Breakwater.Local.Spam.Planted" in r.stdout
