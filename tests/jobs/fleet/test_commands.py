"""`nightwarden fleet` as a person meets it: what init writes and with which modes, and a
clear line and exit code for each mistake (a used directory, a bad name, credentials others
can read, no broker, no authority)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import time
import tomllib

import pytest

from helpers import free_port, need, run_cli, write_config


def test_init_writes_keys_users_and_a_config_per_host_only_we_can_read(tmp_path):
    d = tmp_path / "fleet"
    run_cli(
        "--sandbox",
        str(tmp_path / "admin"),
        "fleet",
        "init",
        str(d),
        "--hosts",
        "web1",
        "db1",
        "--server",
        "nats://10.0.0.1:4222",
        "--group",
        "web1=front",
        check=0,
    )
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for name in ("fleet.key", "operator.key", "nats-server.conf", "web1.creds", "web1.toml", "db1.creds"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    web1 = tomllib.loads((d / "web1.toml").read_text())["fleet"]
    assert (
        web1["host"] == "web1" and web1["groups"] == ["front"] and web1["servers"] == ["nats://10.0.0.1:4222"]
    )
    password = tomllib.loads((d / "web1.creds").read_text())["password"]
    conf = (d / "nats-server.conf").read_text()
    assert password not in conf and "$2b$" in conf  # the broker keeps only a bcrypt hash
    assert '"nw.evt.web1.>"' in conf and '"_INBOX_web1.>"' in conf
    again = run_cli(
        "--sandbox",
        str(tmp_path / "admin"),
        "fleet",
        "init",
        str(d),
        "--hosts",
        "web1",
        "--server",
        "nats://10.0.0.1:4222",
    )
    assert again.returncode == 73 and "exists" in again.stderr and len(again.stderr.splitlines()) == 1


@pytest.mark.parametrize("name", ["Web1", "web.1", "web*", "authority", "-x"])
def test_a_host_name_that_is_not_one_subject_token_is_refused(tmp_path, name):
    done = run_cli(
        "--sandbox",
        str(tmp_path),
        "fleet",
        "init",
        str(tmp_path / "f"),
        f"--hosts={name}",
        "--server",
        "nats://10.0.0.1:4222",
    )
    assert done.returncode == 64 and "host or group name" in done.stderr
    assert not (tmp_path / "f").exists()


def test_join_refuses_credentials_others_can_read(tmp_path):
    d = tmp_path / "fleet"
    run_cli(
        "--sandbox",
        str(tmp_path / "admin"),
        "fleet",
        "init",
        str(d),
        "--hosts",
        "web1",
        "--server",
        "nats://10.0.0.1:4222",
        check=0,
    )
    os.chmod(d / "web1.creds", 0o644)
    cfg = write_config(tmp_path / "host")
    done = run_cli("--config", str(cfg), "fleet", "join", str(d / "web1.toml"), str(d / "web1.creds"))
    assert done.returncode == 65 and "mode 0600" in done.stderr and "Traceback" not in done.stderr
    os.chmod(d / "web1.creds", 0o600)
    run_cli(
        "--config",
        str(cfg),
        "fleet",
        "join",
        str(d / "web1.toml"),
        str(d / "web1.creds"),
        "--no-check",
        check=0,
    )
    joined = tomllib.loads((tmp_path / "host" / "etc" / "conf.d" / "fleet.toml").read_text())["fleet"]
    assert joined["credentials"] == str(tmp_path / "host" / "etc" / "fleet" / "web1.creds")


def test_no_broker_and_no_authority_are_one_line_each(tmp_path):
    need("nats-server")
    pytest.importorskip("nats")
    d = tmp_path / "fleet"
    port = free_port()
    run_cli(
        "--sandbox",
        str(tmp_path / "admin"),
        "fleet",
        "init",
        str(d),
        "--hosts",
        "web1",
        "--server",
        f"nats://127.0.0.1:{port}",
        "--listen",
        f"127.0.0.1:{port}",
        check=0,
    )
    cfg = write_config(tmp_path / "op")
    run_cli(
        "--config",
        str(cfg),
        "fleet",
        "join",
        str(d / "operator.toml"),
        str(d / "operator.creds"),
        "--no-check",
        check=0,
    )
    shutil.copy(d / "operator.key", tmp_path / "op" / "etc" / "fleet" / "operator.key")
    down = run_cli("--config", str(cfg), "fleet", "decisions")
    assert down.returncode == 69 and "broker" in down.stderr and len(down.stderr.splitlines()) == 1
    server = subprocess.Popen(
        [shutil.which("nats-server"), "-c", str(d / "nats-server.conf")], stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        alone = run_cli("--config", str(cfg), "fleet", "block", "203.0.113.9", "--ttl", "1h")
        assert alone.returncode == 69 and "no fleet authority answered" in alone.stderr
        bad = run_cli("--config", str(cfg), "fleet", "block", "203.0.113.9/8")
        assert bad.returncode == 65 and "host bits" in bad.stderr
    finally:
        server.terminate()
        server.wait(10)
