"""Integrity: the detection matrix (each case named by the attribute that changed), the signed
database's defences (wrong key, flipped byte, another host, a replayed generation), and bad
input. Real tools make the changes: touch, setfacl, setcap, chattr."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import run_cli, write_config

PASS = "correct horse battery staple"
ENV = {"NIGHTWARDEN_INTEGRITY_PASSPHRASE": PASS}


def integrity_config(tmp_path: Path, tree: Path, extra: str = "") -> Path:
    return write_config(
        tmp_path, f'\n[integrity]\npaths = ["{tree}"]\nexcludes = []\npackage_aware = false\n' + extra
    )


def nw(cfg: Path, *args: str, env: dict | None = None, check: int | None = None):
    return run_cli("--config", str(cfg), "integrity", *args, env={**ENV, **(env or {})}, check=check)


def last_report(tmp_path: Path) -> dict:
    latest = sorted((tmp_path / "reports").glob("integrity-*.json"))[-1]
    return json.loads(latest.read_text())


def tool(*argv: str) -> None:
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed (make test installs it as root)")
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the matrix changes owners, capabilities and attribute flags (root needed)")
    tmp_path = tmp_path_factory.mktemp("integrity")
    tree = tmp_path / "tree"
    tree.mkdir()
    names = [
        "content",
        "mode",
        "owner",
        "target-a",
        "hardlinked",
        "hl-source",
        "deleted",
        "newinode",
        "mtime",
        "xattr",
        "acl",
        "caps",
        "immutable",
        "appendonly",
    ]
    for n in names:
        (tree / n).write_bytes(b"original " + n.encode() + b"\n")
    (tree / "hl-source").write_bytes(b"original hardlinked\n")
    (tree / "link").symlink_to("target-a")
    cfg = integrity_config(tmp_path, tree)
    nw(cfg, "keygen", check=0)
    nw(cfg, "init", check=0)
    # content changed, size kept, mtime restored (touch -r)
    ref = tmp_path / "ref"
    subprocess.run(["touch", "-r", str(tree / "content"), str(ref)], check=True)
    (tree / "content").write_bytes(b"ORIGINAL content\n")
    subprocess.run(["touch", "-r", str(ref), str(tree / "content")], check=True)
    (tree / "mode").chmod(0o600)
    os.chown(tree / "owner", 65534, -1)
    (tree / "setuid-new").write_bytes(b"new\n")
    (tree / "setuid-new").chmod(0o4755)
    (tree / "link").unlink()
    (tree / "link").symlink_to("/etc/shadow")
    os.link(tree / "hl-source", tree / "hl-tmp")
    os.replace(tree / "hl-tmp", tree / "hardlinked")
    (tree / "deleted").unlink()
    (tree / "added").write_bytes(b"added\n")
    shutil.copy2(tree / "newinode", tmp_path / "copy")
    os.replace(tmp_path / "copy", tree / "newinode")
    os.utime(tree / "mtime", (1_600_000_000, 1_600_000_000))
    os.setxattr(tree / "xattr", "user.origin", b"downloaded")
    tool("setfacl", "-m", "u:65534:r", str(tree / "acl"))
    tool("setcap", "cap_net_raw+ep", str(tree / "caps"))
    tool("chattr", "+i", str(tree / "immutable"))
    tool("chattr", "+a", str(tree / "appendonly"))
    try:
        done = nw(cfg, "check", "--no-mail")
        yield tree, done, last_report(tmp_path)
    finally:
        subprocess.run(["chattr", "-i", "-a", str(tree / "immutable"), str(tree / "appendonly")])


def changed(report, tree: Path, name: str) -> dict:
    for c in report["changed"]:
        if c["path"] == str(tree / name):
            return {a["name"]: (a["before"], a["after"]) for a in c["attributes"]}
    return {}


@pytest.mark.parametrize(
    "name, attrs, absent",
    [
        ("content", {"sha256", "ctime"}, {"mtime", "size"}),
        ("mode", {"mode"}, {"sha256"}),
        ("owner", {"uid"}, {"gid", "sha256"}),
        ("link", {"target"}, set()),
        ("hardlinked", {"inode", "nlink"}, set()),
        ("newinode", {"inode"}, {"sha256"}),
        ("mtime", {"mtime"}, {"sha256", "size"}),
        ("xattr", {"xattrs"}, {"acl", "sha256"}),
        ("acl", {"acl"}, {"sha256"}),
        ("caps", {"caps"}, {"sha256", "xattrs"}),
        ("immutable", {"flags"}, {"sha256"}),
        ("appendonly", {"flags"}, {"sha256"}),
    ],
)
@pytest.mark.root
@pytest.mark.peer
def test_detection_matrix_names_the_attribute(matrix, name, attrs, absent):
    tree, _, report = matrix
    found = changed(report, tree, name)
    assert attrs <= set(found), f"{name}: expected {attrs}, got {found}"
    assert not (absent & set(found)), f"{name}: did not expect {absent & set(found)}"


@pytest.mark.root
@pytest.mark.peer
def test_matrix_details_and_exit_bits(matrix):
    tree, done, report = matrix
    assert done.returncode == 1 | 2 | 4
    assert changed(report, tree, "caps")["caps"] == ("none", "cap_net_raw+ep")
    assert "immutable" in changed(report, tree, "immutable")["flags"][1]
    assert "append-only" in changed(report, tree, "appendonly")["flags"][1]
    assert "user:65534:r--" in changed(report, tree, "acl")["acl"][1]
    assert changed(report, tree, "link")["target"] == ("target-a", "/etc/shadow")
    added = {p: what for p, _, what in report["added"]}
    assert "4755 (setuid)" in added[str(tree / "setuid-new")] and str(tree / "added") in added
    assert [p for p, _, _ in report["removed"]] == [str(tree / "deleted")]
    assert "Changed (" in done.stdout and "Added (2)" in done.stdout


@pytest.fixture(scope="module")
def keypair(tmp_path_factory):
    """One key pair for the module (its bcrypt KDF takes a while), copied into each test."""
    home = tmp_path_factory.mktemp("keys")
    cfg = integrity_config(home, home / "tree")
    nw(cfg, "keygen", check=0)
    return home / "etc" / "integrity.key", home / "etc" / "integrity.pub"


@pytest.fixture
def initialised(tmp_path, keypair):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_text("a\n")
    cfg = integrity_config(tmp_path, tree)
    for key in keypair:
        shutil.copy2(key, tmp_path / "etc" / key.name)
    nw(cfg, "init", check=0)
    return tmp_path, tree, cfg


@pytest.mark.slow
def test_wrong_passphrase_and_missing_key(initialised):
    tmp_path, tree, cfg = initialised
    done = nw(cfg, "update", "--all", env={"NIGHTWARDEN_INTEGRITY_PASSPHRASE": "Wr0ng-Guess!"})
    assert done.returncode == 65 and "wrong passphrase" in done.stderr
    log = (tmp_path / "log" / "nightwarden.log").read_text()
    assert "Wr0ng-Guess!" not in log + done.stderr and PASS not in log
    (tmp_path / "etc" / "integrity.pub").unlink()
    done = nw(cfg, "check")  # once a database was seen, a missing key is the loud alert
    assert done.returncode == 80 and "no public key" in done.stderr


@pytest.mark.parametrize("where", ["header", "body", "truncated"])
def test_a_flipped_byte_or_truncation_is_refused_loudly(initialised, where):
    tmp_path, tree, cfg = initialised
    db = tmp_path / "state" / "integrity.db"
    data = bytearray(db.read_bytes())
    if where == "truncated":
        data = data[:-10]
    else:
        index = 30 if where == "header" else len(data) - 5
        data[index] ^= 0x01
    db.write_bytes(bytes(data))
    done = nw(cfg, "check")
    assert done.returncode == 80, done.stderr
    assert "nothing in it is trusted" in done.stderr
    mail = (tmp_path / "state" / "mail" / "mbox").read_text()
    assert "DATABASE VERIFICATION FAILED" in mail


def test_a_database_made_for_another_host_is_refused(initialised):
    tmp_path, tree, cfg = initialised
    cfg.write_text(cfg.read_text().replace("[general]\n", '[general]\nhostname = "elsewhere"\n'))
    done = nw(cfg, "check")
    assert done.returncode == 80 and "made for host" in done.stderr


@pytest.mark.slow
def test_an_older_database_replayed_is_refused(initialised):
    tmp_path, tree, cfg = initialised
    db = tmp_path / "state" / "integrity.db"
    old = db.read_bytes()
    (tree / "a").write_text("changed\n")
    nw(cfg, "update", "--all", check=0)
    nw(cfg, "check", check=0)
    db.write_bytes(old)  # validly signed, but generation 1 < 2
    done = nw(cfg, "check")
    assert done.returncode == 80 and "replayed" in done.stderr


def test_update_selected_paths_only(initialised):
    tmp_path, tree, cfg = initialised
    (tree / "a").write_text("changed\n")
    (tree / "b").write_text("new\n")
    nw(cfg, "update", str(tree / "b"), check=0)
    done = nw(cfg, "check", "--no-mail")
    assert done.returncode == 4, "the change to a is still reported, b was accepted"


def test_quick_mode_skips_unchanged_but_sees_ctime(initialised):
    tmp_path, tree, cfg = initialised
    st = (tree / "a").stat()
    (tree / "a").write_text("b\n")  # same size
    os.utime(tree / "a", ns=(st.st_atime_ns, st.st_mtime_ns))
    done = nw(cfg, "check", "--quick", "--no-mail")
    assert done.returncode == 4 and "sha256" in done.stdout


@pytest.mark.slow
def test_missing_policy_path_warns_and_names_with_newlines_round_trip(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    odd = os.fsencode(tree) + b"/new\nline-\xff"
    with open(odd, "wb") as f:
        f.write(b"x")
    cfg = write_config(
        tmp_path,
        f'\n[integrity]\npaths = ["{tree}", "{tmp_path}/nope"]\nexcludes = []\npackage_aware = false\n',
    )
    nw(cfg, "keygen", check=0)
    done = nw(cfg, "init", check=0)
    assert f"policy path {tmp_path}/nope does not exist" in done.stderr
    assert nw(cfg, "check", "--no-mail").returncode == 0
    shown = nw(cfg, "show", "--json", check=0)
    paths = [e["path"] for e in json.loads(shown.stdout)["entries"]]
    assert os.fsdecode(odd) in paths


def test_unreadable_file_is_reported_not_fatal(tmp_path, open_tmp):
    """The scanner runs as an unprivileged user in a forked child (root reads everything):
    the file it cannot read is reported with its reason, and the rest is recorded."""
    from helpers import load_config
    from nightwarden.jobs.integrity.policy import Policy
    from nightwarden.jobs.integrity.scan import TreeScanner

    tree = open_tmp / "tree"
    tree.mkdir()
    (tree / "readable").write_text("ok\n")
    (tree / "secret").write_text("root only\n")
    (tree / "secret").chmod(0o600)
    policy = Policy(load_config(integrity_config(tmp_path, tree)))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: nobody
        try:
            os.setgid(65534)
            os.setuid(65534)
            result = TreeScanner(policy, workers=1, progress=False).run()
            os.write(write_end, json.dumps([sorted(result.records), result.errors]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        records, errors = json.loads(f.read())
    os.waitpid(pid, 0)
    assert errors == {str(tree / "secret"): "unreadable: Permission denied"}
    assert records == [str(tree), str(tree / "readable")]


@pytest.mark.slow
def test_changes_explained_by_a_package_upgrade_stand_apart(tmp_path):
    """dpkg's own formats: info/<pkg>.md5sums and dpkg.log lines, as dpkg 1.21 writes them."""
    import hashlib
    import time as _time

    tree = tmp_path / "tree"
    tree.mkdir()
    tool_path, other = tree / "tool", tree / "other"
    tool_path.write_bytes(b"tool 1.0\n")
    other.write_bytes(b"other 1.0\n")
    info = tmp_path / "dpkg-info"
    info.mkdir()
    rel = lambda p: str(p).lstrip("/")  # noqa: E731
    (info / "tool:amd64.md5sums").write_text(
        f"{hashlib.md5(b'tool 1.1' + bytes([10])).hexdigest()}  {rel(tool_path)}\n"
    )
    (info / "other.md5sums").write_text(f"{hashlib.md5(b'other 1.1 official').hexdigest()}  {rel(other)}\n")
    log = tmp_path / "dpkg.log"
    log.write_text("2020-01-01 10:00:00 upgrade tool:amd64 0.9 1.0\n")
    cfg = integrity_config(tmp_path, tree, f'dpkg_info = "{info}"\ndpkg_log = "{log}"\n')
    cfg.write_text(cfg.read_text().replace("package_aware = false\n", ""))
    nw(cfg, "keygen", check=0)
    nw(cfg, "init", check=0)
    _time.sleep(1.1)
    stamp = _time.strftime("%Y-%m-%d %H:%M:%S")
    with open(log, "a") as f:
        f.write(
            f"{stamp} upgrade tool:amd64 1.0 1.1\n{stamp} status installed tool:amd64 1.1\n"
            f"{stamp} upgrade other:amd64 1.0 1.1\n"
        )
    tool_path.write_bytes(b"tool 1.1\n")
    other.write_bytes(b"other 1.1 TAMPERED\n")  # upgraded too, but not what it shipped
    done = nw(cfg, "check", "--no-mail")
    assert done.returncode == 4
    report = last_report(tmp_path)
    explained = {c["path"]: c["explained"] for c in report["changed"]}
    assert explained[str(tool_path)].startswith("explained by the upgrade of package tool to 1.1 at ")
    assert explained[str(other)] == ""
    assert "Explained by package upgrades (1)" in done.stdout


# -- attacks from the trust issue ---------------------------------------------------------
def loud(tmp_path: Path, done) -> bool:
    """The verification-failure alert: exit 80 and the mail."""
    mbox = tmp_path / "state" / "mail" / "mbox"
    return done.returncode == 80 and mbox.exists() and "DATABASE VERIFICATION FAILED" in mbox.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "emptied", "random", "magic", "deleted", "all-deleted"])
def test_once_a_database_was_seen_every_damage_is_the_loud_alert(initialised, damage):
    tmp_path, tree, cfg = initialised
    db, etc = tmp_path / "state" / "integrity.db", tmp_path / "etc"
    data = db.read_bytes()
    if damage == "truncated":
        db.write_bytes(data[:10])
    elif damage == "emptied":
        db.write_bytes(b"")
    elif damage == "random":
        db.write_bytes(os.urandom(len(data)))
    elif damage == "magic":
        db.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    else:
        db.unlink()
        if damage == "all-deleted":
            for name in ("integrity.pub", "integrity.key", "integrity.seal"):
                (etc / name).unlink()
    done = nw(cfg, "check", "--no-mail")
    assert loud(tmp_path, done), (done.returncode, done.stderr)


def attacker_database(tmp_path: Path, tree: Path, generation: int) -> None:
    """Whoever can write integrity.pub and integrity.db: a key of their own, a database that
    says everything is fine, signed with it."""
    import socket

    from nightwarden.jobs.integrity import dbfile, keys

    theirs = tmp_path / "attacker"
    theirs.mkdir()
    keys.generate(theirs / "k", theirs / "k.pub", b"evil", "x")
    key = keys.load_private(theirs / "k", b"evil")
    header = {
        "host": socket.gethostname(),
        "policy": "",
        "created": 0,
        "generation": generation,
        "key": keys.key_id(key.public_key()),
        "note": "forged",
    }
    dbfile.write(tmp_path / "state" / "integrity.db", header, {}, key)
    shutil.copy(theirs / "k.pub", tmp_path / "etc" / "integrity.pub")


@pytest.mark.slow
def test_a_replaced_public_key_and_database_are_refused_and_rekey_moves_the_pin(initialised):
    tmp_path, tree, cfg = initialised
    saved = {
        p: p.read_bytes() for p in (tmp_path / "state" / "integrity.db", tmp_path / "etc" / "integrity.pub")
    }
    attacker_database(tmp_path, tree, generation=99)
    done = nw(cfg, "check")
    assert loud(tmp_path, done) and "not the pinned key" in done.stderr
    for path, data in saved.items():
        path.write_bytes(data)
    done = nw(cfg, "rekey", env={"NIGHTWARDEN_INTEGRITY_PASSPHRASE_NEW": "a new passphrase"}, check=0)
    assert "pinned" in done.stdout
    done = nw(cfg, "check", env={"NIGHTWARDEN_INTEGRITY_PASSPHRASE": "unused"}, check=0)
    assert "generation 2" in done.stdout


@pytest.mark.slow
def test_with_state_deleted_an_older_database_is_still_a_replay(initialised):
    tmp_path, tree, cfg = initialised
    db = tmp_path / "state" / "integrity.db"
    old = db.read_bytes()
    (tree / "a").write_text("changed\n")
    nw(cfg, "update", "--all", check=0)
    (tmp_path / "state" / "state.db").unlink()
    for wal in (tmp_path / "state").glob("state.db-*"):
        wal.unlink()
    db.write_bytes(old)
    done = nw(cfg, "check")
    assert done.returncode == 80 and "replayed" in done.stderr and "seal" in done.stderr


def test_loose_modes_on_the_keys_and_the_database_are_warned(initialised):
    tmp_path, tree, cfg = initialised
    (tmp_path / "etc" / "integrity.key").chmod(0o644)
    (tmp_path / "state" / "integrity.db").chmod(0o666)
    done = nw(cfg, "check", check=0)
    assert "WARNING:" in done.stdout and "integrity.key is readable or writable by others" in done.stdout
    assert "integrity.db is writable by others" in done.stdout
    assert json.loads(nw(cfg, "check", "--json", check=0).stdout)["warnings"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "zero", "directory"])
def test_a_database_that_is_no_regular_file_is_refused_at_once(initialised, kind):
    tmp_path, tree, cfg = initialised
    db = tmp_path / "state" / "integrity.db"
    db.unlink()
    if kind == "fifo":
        os.mkfifo(db)
    elif kind == "zero":
        db.symlink_to("/dev/zero")
    else:
        db.mkdir()
    done = nw(cfg, "check")  # run_cli's timeout ends a hang as a failure
    assert loud(tmp_path, done), (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_check_json_show_of_a_missing_path_and_update_naming_what_it_accepted(initialised):
    tmp_path, tree, cfg = initialised
    report = json.loads(nw(cfg, "check", "--json", check=0).stdout)
    assert report["generation"] == 1 and report["key"] and "state" in report["replay_evidence"]
    done = nw(cfg, "show", str(tree / "nope"))
    assert done.returncode == 66 and "not in the integrity database" in done.stderr
    (tree / "a").write_text("new content\n")
    (tree / "b").write_text("b\n")
    done = nw(cfg, "update", "--all", check=0)
    assert (
        f"accepted: {tree / 'a'} (changed: " in done.stdout
        and f"accepted: {tree / 'b'} (added)" in done.stdout
    )


def test_the_verification_alert_is_mailed_even_with_no_mail(initialised):
    tmp_path, tree, cfg = initialised
    db = tmp_path / "state" / "integrity.db"
    db.write_bytes(db.read_bytes()[:-3])
    assert loud(tmp_path, nw(cfg, "check", "--no-mail"))
