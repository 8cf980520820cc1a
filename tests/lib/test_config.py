"""Configuration: defaults without any file, validation errors naming file and key."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import run_cli, write_config
from nightwarden.jobs import load_config
from nightwarden.lib.errors import EXIT_CONFIG, ConfigError


def test_embedded_defaults_need_no_file(tmp_path):
    cfg = load_config(sandbox=tmp_path)
    assert cfg.files == []
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.firewall_backend() == "dryrun"
    assert cfg.mail.transport == "mbox"
    from nightwarden.lib.mail.transports import mail_path

    assert mail_path(cfg, "mbox") == tmp_path / "state" / "mail" / "mbox"


def test_non_root_defaults_live_in_the_users_directories(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("NIGHTWARDEN_SANDBOX", raising=False)
    monkeypatch.delenv("NIGHTWARDEN_CONFIG", raising=False)
    cfg = load_config()
    assert cfg.state_dir == tmp_path / ".local/state/nightwarden"
    assert str(cfg.run_dir).startswith(str(tmp_path))


def test_conf_d_overrides_in_name_order(tmp_path):
    main = write_config(tmp_path)
    confd = main.parent / "conf.d"
    confd.mkdir()
    (confd / "10-a.toml").write_text("[firewall]\ndefault_ttl = 60\n")
    (confd / "20-b.toml").write_text("[firewall]\ndefault_ttl = 120\n")
    cfg = load_config(str(main))
    assert cfg.firewall.default_ttl == 120
    assert [p.name for p in cfg.files] == ["nightwarden.toml", "10-a.toml", "20-b.toml"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[firewall\nname = 'x'\n", "line 1"),
        ("[firewall]\nbackend = 'iptables-nft'\n", "'firewall.backend' must be one of"),
        ("[firewall]\ndefault_ttl = '1h'\n", "'firewall.default_ttl' must be an integer"),
        ("[firewall]\nbacknd = 'auto'\n", "unknown key 'firewall.backnd'"),
        ("[nosuch]\nx = 1\n", "unknown key 'nosuch'"),
        ("[lists]\nallow = ['192.0.2.1', 2]\n", "'lists.allow[2]' must be a string, not an integer"),
        ("[listener]\ntcp_ports = [22, 70000]\n", "'listener.tcp_ports[2]' must be an integer <= 65535"),
        ("[firewall]\ndefault_ttl = -5\n", "'firewall.default_ttl' must be an integer >= 0"),
        ("[logins.limits]\nsshd = 3\nsshdd = 3\n", "a key of 'logins.limits' must be one of ftpd, htaccess"),
        (
            "[[logins.sources]]\npath = '/var/log/x'\nformat = 'nginx'\nservices = ['sshd']\n",
            "'logins.sources[1]': format 'nginx' has no rules for sshd",
        ),
        ("[[logins.sources]]\nformat = 'auto'\n", "'logins.sources[1]' needs a key 'path'"),
        (
            "[[integrity.rules]]\npath = '/etc'\nattrs = ['sha256', 'colour']\n",
            "'integrity.rules[1].attrs[2]' must be one of",
        ),
        ("[schedule.jobs]\nintegrity = '15 4 * * 0'\n", "'schedule.jobs.integrity'"),
        ("[schedule.jobs]\nnosuchjob = '15 4 * * *'\n", "unknown job 'nosuchjob'"),
        ("[general]\nsyslog = 'yes'\n", "'general.syslog' must be a boolean"),
    ],
)
def test_bad_config_is_one_clear_error_naming_file_and_key(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_a_section_merges_key_by_key_and_lists_of_tables_replace(tmp_path):
    main = write_config(
        tmp_path,
        "\n[logins.limits]\nsshd = 3\n\n[[logins.sources]]\npath = '/var/log/x.log'\nservices = ['sshd']\n",
    )
    cfg = load_config(str(main))
    assert cfg.logins.limits["sshd"] == 3 and cfg.logins.limits["ftpd"] == 10
    assert [s.path for s in cfg.logins.sources] == ["/var/log/x.log"]
    assert cfg.schedule.jobs["purge"] == "30 3 * * sun"


def test_the_configuration_cannot_be_changed_in_place(tmp_path):
    cfg = load_config(sandbox=tmp_path)
    with pytest.raises(AttributeError):
        cfg.listener.block_ttl = 5


def test_a_source_whose_services_have_no_rules_is_refused_by_config_check(tmp_path):
    path = write_config(
        tmp_path, "\n[[logins.sources]]\npath = '/var/log/x'\nformat = 'nginx'\nservices = ['sshd']\n"
    )
    done = run_cli("--config", str(path), "config", "check")
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert done.stderr.count("\n") == 1 and str(path) in done.stderr


def test_bad_config_refuses_to_run_and_changes_nothing(tmp_path):
    path = write_config(tmp_path, "\n[mail]\ntransprt = 'smtp'\n")
    done = run_cli("--config", str(path), "block", "192.0.2.1")
    assert done.returncode == EXIT_CONFIG
    assert done.stderr.count("\n") == 1 and "unknown key 'mail.transprt'" in done.stderr
    assert not (tmp_path / "state").exists()


def test_missing_explicit_config_is_an_error(tmp_path):
    done = run_cli("--config", str(tmp_path / "nope.toml"), "config", "check")
    assert done.returncode == EXIT_CONFIG
    assert "does not exist" in done.stderr


def test_config_show_round_trips(tmp_path):
    path = write_config(tmp_path)
    done = run_cli("--config", str(path), "config", "show", check=0)
    rendered = tmp_path / "shown.toml"
    rendered.write_text(done.stdout)
    assert load_config(str(rendered)).firewall.name == "nwtest"


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            '[schedule]\nmailto = "root\\n* * * * * root touch /tmp/PWNED #"\n',
            "'schedule.mailto' holds a control",
        ),
        ('[general]\nhostname = "web1\\nBcc: x@example.org"\n', "'general.hostname' holds a control"),
        ('[listener]\nbind4 = "not-an-ip"\n', "bind4 must be an IPv4 address"),
        ("[quarantine]\nmax_depth = 100000000\n", "'quarantine.max_depth' must be an integer <= 200"),
        ("[firewall]\ndefault_ttl = 99999999999999999999\n", "'firewall.default_ttl'"),
    ],
)
def test_values_that_would_fail_later_are_refused_when_read(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert expected in str(err.value) and str(path) in str(err.value)


def test_a_fifo_or_dev_zero_as_the_configuration_is_one_clear_error(tmp_path):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    done = run_cli("--config", str(fifo), "config", "check", timeout=20)
    assert done.returncode == 66 and "not a regular file" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("--config", "/dev/zero", "config", "check", timeout=20)
    assert done.returncode == 66 and "Traceback" not in done.stderr


def test_an_unreadable_configuration_or_sandbox_is_exit_66(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "nightwarden.toml").write_text("")
    secret.chmod(0)
    # everything imported first: the interpreter's own files may not be readable by nobody
    cmd = [
        sys.executable,
        "-c",
        "import os, sys, tomllib; from nightwarden.lib.cli import main, build_parser, commands; "
        "import nightwarden.jobs as j; j.schema(); build_parser(); commands(); "
        "import nightwarden.lib.runner, nightwarden.lib.logsetup, nightwarden.lib.lists; "
        "os.setgid(65534); os.setuid(65534); sys.exit(main(sys.argv[1:]))",
    ]
    try:
        for args in (["--config", str(secret / "nightwarden.toml")], ["--sandbox", str(secret)]):
            if os.geteuid() != 0:
                pytest.skip("needs root to drop to another user")
            done = subprocess.run([*cmd, *args, "blocks"], capture_output=True, text=True)
            assert done.returncode == 66, (args, done.returncode, done.stderr)
            assert "Traceback" not in done.stderr
    finally:
        secret.chmod(0o700)
