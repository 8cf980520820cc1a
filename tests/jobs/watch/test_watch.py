"""Watched files (LF_DIRWATCH_FILE): the first look takes the baseline; every kind of change
the integrity comparison knows is named by path and attribute, mailed once, and is an event;
csf.dirwatch's list is read too, its bad lines said with file:line."""

from __future__ import annotations

import mailbox
import os
import shutil
import subprocess

import pytest

from helpers import run_cli, write_config


def setup(tmp_path, extra: str = ""):
    etc = tmp_path / "watched"
    (etc / "sudoers.d").mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "sudoers.d" / "admins").write_text("%admin ALL=(ALL) ALL\n")
    (etc / "link").symlink_to("passwd")
    cfg = write_config(
        tmp_path,
        f"""
[watch]
paths = ["{etc}/passwd", "{etc}/sudoers.d", "{etc}/link", "{etc}/missing"]
extra_files = []
{extra}
[mail]
transport = "mbox"
mbox = "{tmp_path}/mbox"
""",
    )
    return cfg, etc


def look(cfg) -> tuple[int, str]:
    done = run_cli("--config", str(cfg), "watch")
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout


def test_the_first_look_is_the_baseline_then_nothing_changed(tmp_path):
    cfg, _ = setup(tmp_path)
    code, out = look(cfg)
    assert code == 0 and "the baseline taken" in out
    assert look(cfg) == (0, "")
    assert not (tmp_path / "mbox").exists()


CHANGES = {
    "content": lambda etc: (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\nevil:x:0:0::/:/bin/sh\n"
    ),
    "mode": lambda etc: os.chmod(etc / "passwd", 0o666),
    "owner": lambda etc: os.chown(etc / "passwd", 65534, -1),
    "added": lambda etc: (etc / "sudoers.d" / "backdoor").write_text("evil ALL=(ALL) NOPASSWD: ALL\n"),
    "removed": lambda etc: (etc / "sudoers.d" / "admins").unlink(),
    "target": lambda etc: ((etc / "link").unlink(), (etc / "link").symlink_to("/etc/shadow")),
    "type": lambda etc: ((etc / "link").unlink(), (etc / "link").mkdir()),
    "hard link": lambda etc: os.link(etc / "passwd", etc / "passwd.copy"),
    "xattr": lambda etc: os.setxattr(etc / "passwd", "user.note", b"x"),
    "times put back": lambda etc: (
        (st := os.stat(etc / "passwd")),
        (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bssh\n"),
        os.utime(etc / "passwd", ns=(st.st_atime_ns, st.st_mtime_ns)),
    ),
}
EXPECT = {
    "content": ["changed: {etc}/passwd", "sha256:"],
    "mode": ["changed: {etc}/passwd", "mode: "],
    "owner": ["changed: {etc}/passwd", "uid: 0 -> 65534"],
    "added": ["added:   {etc}/sudoers.d/backdoor"],
    "removed": ["removed: {etc}/sudoers.d/admins"],
    "target": ["changed: {etc}/link", "target: passwd -> /etc/shadow"],
    "type": ["changed: {etc}/link", "type: "],
    "hard link": ["changed: {etc}/passwd", "nlink: 1 -> 2"],
    "xattr": ["changed: {etc}/passwd", "xattrs: "],
    "times put back": ["changed: {etc}/passwd", "sha256:", "ctime:"],
}


@pytest.mark.parametrize("how", list(CHANGES))
def test_every_kind_of_change_is_named_mailed_once_and_recorded(tmp_path, how):
    if how in ("owner",) and os.geteuid() != 0:
        pytest.skip("chown needs root")
    cfg, etc = setup(tmp_path)
    look(cfg)
    try:
        CHANGES[how](etc)
    except OSError as e:  # xattrs on a file system without them
        pytest.skip(f"{how}: {e.strerror}")
    code, out = look(cfg)
    assert code == 1, out
    for want in EXPECT[how]:
        assert want.format(etc=etc) in out, (how, out)
    (mail,) = list(mailbox.mbox(tmp_path / "mbox"))
    assert "Watched files changed" in mail["Subject"]
    assert EXPECT[how][0].format(etc=etc) in mail.get_payload()[0].get_payload(decode=True).decode()
    assert look(cfg) == (0, "")  # said once
    assert (
        "watch"
        in run_cli("--config", str(cfg), "report", "--no-mail").stderr
        + open(sorted((tmp_path / "reports").glob("report-*.txt"))[-1]).read()
    )


def test_acl_capabilities_and_flags_when_the_tools_are_there(tmp_path):
    cfg, etc = setup(tmp_path)
    look(cfg)
    done = []
    if (
        shutil.which("setfacl")
        and subprocess.run(["setfacl", "-m", "u:65534:rw", str(etc / "passwd")]).returncode == 0
    ):
        done.append("acl: ")
    if (
        shutil.which("setcap")
        and subprocess.run(["setcap", "cap_net_raw+ep", str(etc / "passwd")]).returncode == 0
    ):
        done.append("caps: ")
    if not done:
        pytest.skip("neither setfacl nor setcap works here")
    code, out = look(cfg)
    assert code == 1 and all(d in out for d in done), out


def test_the_csf_dirwatch_list_is_read_and_its_bad_lines_said(tmp_path):
    listing = tmp_path / "csf.dirwatch"
    cfg, etc = setup(tmp_path)
    listing.write_text(f"# csf's list\n{etc}/sudoers.d/admins\nrelative/path\n")
    cfg.write_text(cfg.read_text().replace("extra_files = []", f'extra_files = ["{listing}"]'))
    done = run_cli("--config", str(cfg), "watch")
    assert f"{listing}:3: not an absolute path" in done.stderr
    (etc / "sudoers.d" / "admins").write_text("%admin ALL=(ALL) NOPASSWD: ALL\n")
    code, out = look(cfg)
    assert code == 1 and f"changed: {etc}/sudoers.d/admins" in out
