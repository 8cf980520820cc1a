"""`nightwarden fleet` as a person meets it: what init writes and with which modes, and a
clear line and exit code for each mistake (a used directory, a bad name, credentials others
can read, no broker, no authority)."""

from __future__ import annotations

import os
import shutil
import stat
import tomllib

import pytest

from helpers import NatsServer, free_port, run_cli, write_config


def init(tmp_path, *options: str, server: str = "nats://10.0.0.1:4222", check: int | None = 0):
    """`fleet init` into tmp_path/fleet; options: --hosts ... and the like."""
    return run_cli(
        "--sandbox", str(tmp_path / "admin"), "fleet", "init", str(tmp_path / "fleet"), *options,
        "--server", server, check=check,
    )  # fmt: skip


def join(tmp_path, who: str, *more: str, check: int | None = 0):
    cfg = write_config(tmp_path / who)
    fleet = tmp_path / "fleet"
    done = run_cli(
        "--config", str(cfg), "fleet", "join", str(fleet / f"{who}.toml"), str(fleet / f"{who}.creds"), *more,
        check=check,
    )  # fmt: skip
    return cfg, done


def test_init_writes_keys_users_and_a_config_per_host_only_we_can_read(tmp_path):
    d = tmp_path / "fleet"
    init(tmp_path, "--hosts", "web1", "db1", "--group", "web1=front")
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
    again = init(tmp_path, "--hosts", "web1", check=None)
    assert again.returncode == 73 and "exists" in again.stderr and len(again.stderr.splitlines()) == 1


@pytest.mark.parametrize("name", ["Web1", "web.1", "web*", "authority", "-x"])
def test_a_host_name_that_is_not_one_subject_token_is_refused(tmp_path, name):
    done = init(tmp_path, f"--hosts={name}", check=None)
    assert done.returncode == 64 and "host or group name" in done.stderr
    assert not (tmp_path / "fleet").exists()


def test_join_refuses_credentials_others_can_read(tmp_path):
    init(tmp_path, "--hosts", "web1")
    os.chmod(tmp_path / "fleet" / "web1.creds", 0o644)
    _, done = join(tmp_path, "web1", check=None)
    assert done.returncode == 65 and "mode 0600" in done.stderr and "Traceback" not in done.stderr
    os.chmod(tmp_path / "fleet" / "web1.creds", 0o600)
    join(tmp_path, "web1", "--no-check")
    joined = tomllib.loads((tmp_path / "web1" / "etc" / "conf.d" / "fleet.toml").read_text())["fleet"]
    assert joined["credentials"] == str(tmp_path / "web1" / "etc" / "fleet" / "web1.creds")


def test_no_broker_and_no_authority_are_one_line_each(tmp_path):
    pytest.importorskip("nats")
    port = free_port()
    init(tmp_path, "--hosts", "web1", "--listen", f"127.0.0.1:{port}", server=f"nats://127.0.0.1:{port}")
    cfg, _ = join(tmp_path, "operator", "--no-check")
    shutil.copy(tmp_path / "fleet" / "operator.key", tmp_path / "operator" / "etc" / "fleet" / "operator.key")
    down = run_cli("--config", str(cfg), "fleet", "decisions")
    assert down.returncode == 69 and "broker" in down.stderr and len(down.stderr.splitlines()) == 1
    with NatsServer(tmp_path / "fleet" / "nats-server.conf", port):
        alone = run_cli("--config", str(cfg), "fleet", "block", "203.0.113.9", "--ttl", "1h")
        assert alone.returncode == 69 and "no fleet authority answered" in alone.stderr
        bad = run_cli("--config", str(cfg), "fleet", "block", "203.0.113.9/8")
        assert bad.returncode == 65 and "host bits" in bad.stderr


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_credentials_that_are_a_link_or_a_fifo_are_refused_without_waiting(tmp_path, kind):
    init(tmp_path, "--hosts", "web1")
    creds = tmp_path / "fleet" / "web1.creds"
    planted = tmp_path / "planted.creds"
    if kind == "link":
        planted.symlink_to(creds)  # a link to a good file: still not followed
    else:
        os.mkfifo(planted, 0o600)  # a reader that opened it would wait for ever
    cfg = write_config(tmp_path / "web1")
    done = run_cli(
        "--config", str(cfg), "fleet", "join", str(tmp_path / "fleet" / "web1.toml"), str(planted), timeout=20
    )
    assert done.returncode == 65 and len(done.stderr.splitlines()) == 1, done.stderr
    assert ("symbolic link" if kind == "link" else "not a regular file") in done.stderr
    assert not (tmp_path / "web1" / "etc" / "conf.d" / "fleet.toml").exists()
