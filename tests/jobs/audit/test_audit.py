"""The server security check on a sandbox: sshd's effective settings read by the real
`sshd -T -f FILE` (Debian's openssh-server), accounts from the sandbox's passwd, shadow and
group, world-writable directories, nightwarden's own files, listeners new since the last
audit (a real socket in a private namespace); exit bits by severity; new findings marked."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import pytest

from helpers import need, run_cli

pytestmark = pytest.mark.root

SSHD_CONFIG = """\
HostKey {key}
PermitRootLogin yes
PasswordAuthentication yes
PermitEmptyPasswords yes
X11Forwarding yes
MaxAuthTries 10
Ciphers aes256-ctr,aes128-cbc
MACs hmac-sha2-256,hmac-md5
Match User nobody
    ForceCommand internal-sftp
    ChrootDirectory /srv
"""


@pytest.fixture
def box(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("sshd -T and the sandbox's owners need root")
    need("sshd")
    os.makedirs("/run/sshd", exist_ok=True)  # sshd -T insists on its privilege separation dir
    box = tmp_path / "sb"
    (box / "etc").mkdir(parents=True)
    key = tmp_path / "hostkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    config = tmp_path / "sshd_config"
    config.write_text(SSHD_CONFIG.format(key=key))
    (box / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\n"
        "toor:x:0:0:backdoor:/root:/bin/sh\n"
        "guest:x:1001:1001::/home/guest:/bin/bash\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/bash\n"
        "uploader:x:1002:1002::/home/uploader:/bin/bash\n"
        "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    )
    (box / "etc" / "shadow").write_text("root:$6$x:19000:0:99999:7:::\nguest::19000:0:99999:7:::\n")
    (box / "etc" / "group").write_text("sftponly:x:2000:nobody,uploader\n")
    (box / "srv" / "drop").mkdir(parents=True)
    os.chmod(box / "srv" / "drop", 0o777)  # no sticky bit
    (box / "srv" / "shared").mkdir()
    os.chmod(box / "srv" / "shared", 0o1777)  # sticky: fine
    (box / "nightwarden.toml").write_text(
        f'[audit]\nsshd = ["{shutil.which("sshd") or "/usr/sbin/sshd"}", "-T"]\nsshd_config = "{config}"\n'
        f'trees = ["/srv"]\n'
    )
    return box


def audit(box, *args):
    done = run_cli("--sandbox", str(box), "--config", str(box / "nightwarden.toml"), "audit", *args)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_the_audit_names_each_weakness_with_its_evidence_and_fix(box):
    done = audit(box, "--json")
    found = {f["id"]: f for f in json.loads(done.stdout)}
    assert done.returncode & 4 and done.returncode & 1  # high and low findings
    assert found["ssh.permitrootlogin"]["severity"] == "high"
    assert found["ssh.permitrootlogin"]["evidence"] == "permitrootlogin yes"
    assert "PermitRootLogin prohibit-password" in found["ssh.permitrootlogin"]["fix"]
    for ident in ("ssh.passwordauthentication", "ssh.permitemptypasswords", "ssh.x11forwarding"):
        assert ident in found
    assert (
        "aes128-cbc" in found["ssh.ciphers"]["evidence"]
        and "aes256-ctr" not in found["ssh.ciphers"]["evidence"]
    )
    assert found["ssh.macs"]["evidence"] == "hmac-md5"
    assert "10 password tries" in found["ssh.maxauthtries"]["what"]
    assert found["accounts.uid0.toor"]["severity"] == "high"
    assert "accounts.empty.guest" in found
    # uploader is in sftponly with a shell and no confinement; nobody is confined by sshd
    assert "accounts.transfer.uploader" in found and "accounts.transfer.nobody" not in found
    assert "internal-sftp" in found["accounts.transfer.uploader"]["fix"]
    drop = [f for i, f in found.items() if i.startswith("files.writable.") and i.endswith("/srv/drop")]
    assert drop and not any(i.endswith("/srv/shared") for i in found)
    assert all(f["new"] for f in found.values())


def test_a_listener_new_since_the_last_audit_and_findings_no_longer_new(box, netns):
    audit(box)
    s = socket.socket()
    s.bind(("0.0.0.0", 2323))
    s.listen()
    try:
        done = audit(box, "--json")
    finally:
        s.close()
    found = {f["id"]: f for f in json.loads(done.stdout)}
    new = [f for f in found.values() if f["new"]]
    assert [f["id"] for f in new] == ["services.new.tcp.2323.0.0.0.0"], new
    assert not found["ssh.permitrootlogin"]["new"]


def test_ignored_findings_and_a_clean_sshd(box, tmp_path):
    config = tmp_path / "sshd_config"
    config.write_text(
        f"HostKey {tmp_path}/hostkey\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nX11Forwarding no\nAllowTcpForwarding no\n"
    )
    toml = box / "nightwarden.toml"
    toml.write_text(toml.read_text() + 'ignore = ["accounts", "files", "own", "firewall"]\n')
    found = {f["id"] for f in json.loads(audit(box, "--json").stdout)}
    assert not {i for i in found if i.startswith(("ssh.", "accounts.", "files.writable"))}, found
