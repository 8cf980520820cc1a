"""One schedule for cron.d, APScheduler and systemd timers: the next fire day of every
default schedule in the cron text (read by a plain cron evaluator here), the APScheduler
trigger and systemd's calendar; cron's and logrotate's own parsers on what install writes."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import ROOT, load_config, need, run_cli, write_config
from nightwarden.lib import schedule
from nightwarden.lib.schedule import cron as cronexpr

CRON_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


def cron_matches(fields: list[str], when: dt.datetime) -> bool:
    """How Vixie cron reads a line (numbers, names, ranges, lists, steps; Sunday is 0)."""

    def allowed(field: str, low: int, high: int, names: dict) -> set[int]:
        out = set()
        for item in field.split(","):
            span, _, step = item.partition("/")
            if span == "*":
                a, b = low, high
            elif "-" in span:
                a, b = (names.get(x, int(x) if x.isdigit() else -1) for x in span.split("-"))
            else:
                a = names.get(span, int(span) if span.isdigit() else -1)
                b = high if step else a
            out.update(range(a, b + 1, int(step or 1)))
        return out

    minute, hour, dom, month, dow = fields
    cron_dow = (when.weekday() + 1) % 7
    dom_ok = when.day in allowed(dom, 1, 31, {})
    dow_ok = cron_dow in allowed(dow, 0, 6, CRON_DAYS) or (
        cron_dow == 0 and 7 in allowed(dow, 0, 7, CRON_DAYS)
    )
    day_ok = (dom_ok or dow_ok) if (dom != "*" and dow != "*") else (dom_ok and dow_ok)
    return (
        when.minute in allowed(minute, 0, 59, {})
        and when.hour in allowed(hour, 0, 23, {})
        and when.month in allowed(month, 1, 12, {})
        and day_ok
    )


def cron_next(fields: list[str], after: dt.datetime) -> dt.datetime:
    t = after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    for _ in range(60 * 24 * 40):
        if cron_matches(fields, t):
            return t
        t += dt.timedelta(minutes=1)
    raise AssertionError(f"{fields} never fires")


# Wednesday 2026-11-18 12:34, and Sunday 2026-11-22 04:00 (after the purge's 03:30)
BASES = [dt.datetime(2026, 11, 18, 12, 34, 10), dt.datetime(2026, 11, 22, 4, 0, 10)]
EXPECTED = {  # job: (next after the first base, next after the second)
    "expire": ("Wed 12:35", "Sun 04:05"),
    "login-failures": ("Wed 12:35", "Sun 04:01"),
    "connections": ("Wed 12:35", "Sun 04:01"),
    "watch": ("Wed 12:35", "Sun 04:05"),
    "mailwatch": ("Wed 12:35", "Sun 04:05"),
    "audit": ("Sun 05:00", "Sun 05:00"),
    "processes": ("Wed 12:35", "Sun 04:01"),
    "quarantine": ("Wed 12:35", "Sun 04:05"),
    "integrity": ("Thu 04:15", "Sun 04:15"),
    "scan-history": ("Thu 06:10", "Sun 06:10"),
    "purge": ("Sun 03:30", "Sun 03:30"),
    "prune": ("Thu 05:45", "Sun 05:45"),
    "report": ("Thu 06:00", "Sun 06:00"),
}


def test_next_fire_day_of_every_default_schedule_in_cron_and_apscheduler(tmp_path):
    cfg = load_config(write_config(tmp_path))
    entries = schedule.entries(cfg)
    assert {e.job for e in entries} == set(EXPECTED)
    for e in entries:
        trig = schedule.trigger(e, dt.UTC)
        for base, want in zip(BASES, EXPECTED[e.job], strict=True):
            by_cron = cron_next(list(e.cron.fields), base)
            by_aps = trig.get_next_fire_time(None, base.replace(tzinfo=dt.UTC))
            assert by_aps.replace(tzinfo=None) == by_cron, (e.job, base)
            assert by_cron.strftime("%a %H:%M") == want, (e.job, base)
    purge = next(e for e in entries if e.job == "purge")
    after = cron_next(list(purge.cron.fields), BASES[1])
    assert (after - BASES[1]).days == 6  # the Sunday after, not the Monday


def test_why_days_are_names_apscheduler_reads_0_as_monday():
    from apscheduler.triggers.cron import CronTrigger

    base = dt.datetime(2026, 11, 18, tzinfo=dt.UTC)
    numeric = CronTrigger.from_crontab("30 3 * * 0", timezone=dt.UTC)
    assert numeric.get_next_fire_time(None, base).strftime("%a") == "Mon"  # cron: Sunday
    with pytest.raises(cronexpr.CronError, match="as a name"):
        cronexpr.parse("30 3 * * 0")


@pytest.mark.parametrize(
    "text,message",
    [
        ("30 3 * *", "five fields"),
        ("61 3 * * sun", "minute 61 is out of range"),
        ("30 3 1 * mon", "not both"),
        ("30 3 * * funday", "unknown day of week"),
        ("30 3 * * 1-5", "as a name"),
        ("*/0 * * * *", "at least 1"),
    ],
)
def test_bad_schedules_are_refused(text, message):
    with pytest.raises(cronexpr.CronError, match=message):
        cronexpr.parse(text)


def test_a_bad_schedule_in_the_config_names_file_and_key(tmp_path):
    cfg = write_config(tmp_path, '\n[schedule.jobs]\npurge = "30 3 * * 0"\n')
    done = run_cli("--config", str(cfg), "schedule", "show", check=78)
    assert f"{cfg}: key 'schedule.jobs.purge'" in done.stderr and "as a name" in done.stderr
    cfg = write_config(tmp_path, '\n[schedule.jobs]\nnightly = "0 1 * * *"\n')
    assert "unknown job 'nightly'" in run_cli("--config", str(cfg), "jobs", check=78).stderr


def test_an_override_reaches_cron_apscheduler_and_systemd_alike(tmp_path):
    cfg = write_config(tmp_path, '\n[schedule.jobs]\npurge = "45 2 * * sat,sun"\nreport = "off"\n')
    done = run_cli("--config", str(cfg), "schedule", "cron", check=0)
    assert re.search(
        r"^45 2 \* \* sat,sun +root +flock -n -o \S+/purge.lock \S+nightwarden "
        r"--config \S+ -q purge$",
        done.stdout,
        re.M,
    )
    assert " -q report\n" not in done.stdout  # the report job is off
    shown = run_cli("--config", str(cfg), "schedule", "show", check=0).stdout
    assert "Sat,Sun *-*-* 02:45:00" in shown and "report" not in shown
    assert "off" in run_cli("--config", str(cfg), "jobs", check=0).stdout


@pytest.mark.peer
def test_systemd_calendar_agrees(tmp_path):
    need("systemd-analyze")
    cfg = load_config(
        write_config(
            tmp_path, '\n[schedule.jobs]\npurge = "30 3 * * sun"\nintegrity = "*/20 1-3 * jan,jul *"\n'
        )
    )
    for e in schedule.entries(cfg):
        done = subprocess.run(
            ["systemd-analyze", "calendar", e.cron.on_calendar()],
            capture_output=True,
            text=True,
            env={**os.environ, "TZ": "UTC"},
        )
        assert done.returncode == 0, done.stderr
        m = re.search(r"Next elapse: \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", done.stdout)
        now = dt.datetime.now(dt.UTC)
        want = schedule.trigger(e, dt.UTC).get_next_fire_time(None, now)
        assert m.group(1) == want.strftime("%Y-%m-%d %H:%M:%S"), (e.job, done.stdout)


# -- the files ---------------------------------------------------------------------------------


def rendered_defaults(tmp_path):
    path = tmp_path / "render.toml"
    path.write_text('[schedule]\ncommand = "/usr/local/sbin/nightwarden"\n')
    cfg = load_config(path)
    cfg.files = []  # as for the system configuration
    return cfg


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="the shipped files are rendered for root's paths")
def test_the_shipped_files_are_the_default_rendering(tmp_path):
    cfg = rendered_defaults(tmp_path)
    assert (ROOT / "cron.d" / "nightwarden").read_text() == schedule.render_cron(cfg)
    assert (ROOT / "logrotate.d" / "nightwarden").read_text() == schedule.render_logrotate(cfg)


def check_with_cron(cron_file: Path, tmp_path: Path) -> None:
    """Debian's cron.d syntax: environment lines, then five time fields, a user, a command.
    The time fields go through cron's own parser (crontab, into a private mount)."""
    assert "." not in cron_file.name
    lines = [ln for ln in cron_file.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    env = [ln for ln in lines if re.match(r"^[A-Z]+=", ln)]
    assert {ln.split("=")[0] for ln in env} == {"SHELL", "PATH", "MAILTO"}
    user_format = []
    for ln in lines[len(env) :]:
        fields = ln.split(None, 6)
        assert fields[5] == "root" and fields[6].startswith("flock -n -o /"), ln
        assert not any(c.isdigit() for c in fields[4]) or fields[4] == "*", ln
        user_format.append(" ".join(fields[:5] + [fields[6]]))
    need("crontab", "unshare")
    plain = tmp_path / "user-crontab"
    plain.write_text("\n".join(env + user_format) + "\n")
    done = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            f"mount -t tmpfs tmpfs /var/spool/cron/crontabs && crontab -u root {plain}",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "error" not in done.stderr.lower(), done.stderr


@pytest.mark.root
@pytest.mark.peer
@pytest.mark.skipif(os.geteuid() != 0, reason="crontab's check runs in a private mount (root)")
def test_install_root_writes_files_cron_logrotate_and_systemd_accept(tmp_path):
    need("logrotate")
    cfg = write_config(tmp_path)
    root = tmp_path / "root"
    done = run_cli("--config", str(cfg), "install", "--root", str(root), check=0)
    assert f"installed {root}/etc/cron.d/nightwarden" in done.stdout
    assert f"installed {root}/etc/logrotate.d/nightwarden" in done.stdout
    assert f"installed {root}/etc/systemd/system/nightwarden-listener.service" in done.stdout
    check_with_cron(root / "etc/cron.d/nightwarden", tmp_path)
    rot = subprocess.run(
        ["logrotate", "-d", "-s", str(tmp_path / "state"), str(root / "etc/logrotate.d/nightwarden")],
        capture_output=True,
        text=True,
    )
    assert rot.returncode == 0 and "error" not in rot.stderr.lower(), rot.stderr
    # a second install changes nothing; a changed file survives uninstall
    again = run_cli("--config", str(cfg), "install", "--root", str(root), check=0).stdout
    assert "installed" not in again and "unchanged" in again
    (root / "etc/logrotate.d/nightwarden").write_text("# mine now\n")
    gone = run_cli("--config", str(cfg), "uninstall", "--root", str(root), check=0).stdout
    assert f"removed {root}/etc/cron.d/nightwarden" in gone
    assert f"kept {root}/etc/logrotate.d/nightwarden: changed since it was installed" in gone
    assert not (root / "etc/cron.d/nightwarden").exists()
    assert (root / "etc/logrotate.d/nightwarden").read_text() == "# mine now\n"
    assert "uninstall --force" in gone  # the manifest stays while the kept file is there
    # a file that is not nightwarden's is left alone without --force, and the exit says so
    again = run_cli("--config", str(cfg), "install", "--root", str(root), check=73).stdout
    assert "left alone" in again and "--force" in again
    gone = run_cli("--config", str(cfg), "uninstall", "--root", str(root), "--force", check=0).stdout
    assert f"removed {root}/etc/logrotate.d/nightwarden" in gone
    assert not (root / "etc/logrotate.d/nightwarden").exists()
    assert not list(root.rglob("installed.json"))


@pytest.mark.peer
def test_timer_units_pass_systemd_analyze_verify(tmp_path):
    need("systemd-analyze")
    cfg = write_config(tmp_path)
    root = tmp_path / "root"
    done = run_cli("--config", str(cfg), "install", "--root", str(root), "--timers", check=0)
    assert "cron.d" not in done.stdout
    units = sorted((root / "etc/systemd/system").glob("nightwarden-*"))
    # the listener, a timer and a service per scheduled job, and the unit that mails a failure
    assert len(units) == 1 + 2 * 13 + 1
    purge = (root / "etc/systemd/system/nightwarden-purge.timer").read_text()
    assert "OnCalendar=Sun *-*-* 03:30:00" in purge and "Persistent=true" in purge
    service = (root / "etc/systemd/system/nightwarden-purge.service").read_text()
    assert "OnFailure=nightwarden-failed@%n.service" in service
    failed = (root / "etc/systemd/system/nightwarden-failed@.service").read_text()
    assert "ExecStart=" in failed and " mail failed %i" in failed
    doc = root / "usr/share/doc/nightwarden/nightwarden.txt"
    assert doc.is_file() and "status" in doc.read_text()  # what Documentation= points at
    assert "Documentation=file:///usr/share/doc/nightwarden/nightwarden.txt" in service
    verify = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_UNIT_PATH": str(root / "etc/systemd/system") + ":"},
    )
    assert verify.returncode == 0, verify.stderr
    listener = (root / "etc/systemd/system/nightwarden-listener.service").read_text()
    assert "Type=notify" in listener and "WatchdogSec=" in listener
    assert "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE" in listener
    # back to cron: the timers go, the cron file comes, the listener's unit stays
    done = run_cli("--config", str(cfg), "install", "--root", str(root), check=0).stdout
    assert f"installed {root}/etc/cron.d/nightwarden" in done
    assert done.count("removed ") == 27
    assert [u.name for u in (root / "etc/systemd/system").glob("nightwarden-*")] == [
        "nightwarden-listener.service"
    ]


def test_install_dry_run_writes_nothing(tmp_path):
    cfg = write_config(tmp_path)
    root = tmp_path / "root"
    done = run_cli("--config", str(cfg), "install", "--root", str(root), "--dry-run", check=0)
    assert f"would be installed {root}/etc/cron.d/nightwarden" in done.stdout
    assert not (root / "etc").exists()


# -- running the schedule -----------------------------------------------------------------------


def test_a_scheduled_run_is_its_own_process_and_recorded(tmp_path):
    box = tmp_path / "sb"
    cfg = load_config_sandbox(box)
    code = schedule.spawn_job(schedule.job_argv(cfg, "expire"), "expire")
    assert code == 0
    done = run_cli("--sandbox", str(box), "runs", "--job", "expire", "--json", check=0)
    import json

    (row,) = json.loads(done.stdout)
    assert row["job"] == "expire" and row["exit_code"] == 0 and "expired" in row["summary"]
    table = run_cli("--sandbox", str(box), "runs", "--job", "expire", check=0).stdout
    assert table.splitlines()[0].split() == ["job", "started", "took", "exit", "summary"]
    assert table.splitlines()[2].startswith("expire ")


def load_config_sandbox(box: Path):
    from nightwarden.jobs import load_config

    return load_config(sandbox=str(box))


def test_schedule_run_starts_in_the_foreground_and_stops_on_sigterm(tmp_path):
    box = tmp_path / "sb"
    from helpers import NIGHTWARDEN

    proc = subprocess.Popen(
        [NIGHTWARDEN, "--sandbox", str(box), "schedule", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 20
        log = box / "log" / "nightwarden.log"
        while time.time() < deadline and not (log.exists() and "scheduler: 13 jobs" in log.read_text()):
            time.sleep(0.2)
        assert "purge '30 3 * * sun'" in log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, proc.stderr.read()
    finally:
        proc.kill()


@pytest.mark.slow
def test_schedule_run_stops_cleanly_even_at_once(tmp_path):
    """SIGTERM right after start (before the scheduler runs) still ends it with 0."""
    from helpers import NIGHTWARDEN

    box = tmp_path / "sb"
    for delay in (0.05, 0.3, 0.8):
        proc = subprocess.Popen(
            [NIGHTWARDEN, "--sandbox", str(box), "schedule", "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        assert code in (0, -signal.SIGTERM), (delay, code, proc.stderr.read())


def test_the_listener_unit_gives_quarantine_on_arrival_the_real_tmp_only_when_asked(tmp_path):
    need("systemd-analyze")
    tight = schedule.render_listener_unit(load_config(write_config(tmp_path)))
    assert "PrivateTmp=yes" in tight and "CAP_FOWNER" not in tight and "ReadWritePaths=/tmp" not in tight
    cfg = load_config(
        write_config(tmp_path, '\n[quarantine]\nfollow = true\ndirs = ["/tmp", "/srv/upload"]\n')
    )
    unit = schedule.render_listener_unit(cfg)
    assert "PrivateTmp=no" in unit and "PrivateDevices=no" in unit
    assert "ReadWritePaths=/tmp /var/tmp /dev/shm /srv/upload" in unit
    caps = next(line for line in unit.splitlines() if line.startswith("CapabilityBoundingSet="))
    assert {"CAP_NET_ADMIN", "CAP_FOWNER", "CAP_DAC_OVERRIDE"} <= set(caps.split("=")[1].split())
    path = tmp_path / "nightwarden-listener.service"
    path.write_text(
        "\n".join("ExecStart=/bin/true" if ln.startswith("ExecStart=") else ln for ln in unit.splitlines())
    )
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and "nightwarden-listener" not in done.stderr, done.stderr


def test_install_warns_of_a_program_the_unit_would_hide(tmp_path):
    cfg = write_config(tmp_path, '\n[schedule]\ncommand = "/home/admin/venv/bin/nightwarden"\n')
    done = run_cli("--config", str(cfg), "install", "--root", str(tmp_path / "root"), check=0)
    assert "is under /home, which the listener's unit hides (ProtectHome=yes)" in done.stderr
    assert "uninstall" in run_cli("uninstall", "--help", check=0).stdout
    assert "remove" in run_cli("--help", check=0).stdout.split("uninstall", 1)[1].splitlines()[0]


def test_install_puts_the_fleet_authoritys_unit_only_where_it_signs(tmp_path):
    need("systemd-analyze")
    plain = write_config(tmp_path / "plain")
    run_cli("--config", str(plain), "install", "--root", str(tmp_path / "r1"), check=0)
    assert not (tmp_path / "r1/etc/systemd/system/nightwarden-fleet-authority.service").exists()
    signing = write_config(tmp_path / "auth", '\n[fleet]\nsigning_key = "/etc/nightwarden/fleet/fleet.key"\n')
    run_cli("--config", str(signing), "install", "--root", str(tmp_path / "r2"), check=0)
    unit = tmp_path / "r2/etc/systemd/system/nightwarden-fleet-authority.service"
    text = unit.read_text()
    assert f"--config {signing} -q fleet authority" in text and "Type=notify" in text
    from nightwarden.lib.schedule import install

    assert "systemctl enable --now nightwarden-fleet-authority.service" in "\n".join(
        install.next_steps(False, True)
    )
    assert "fleet-authority" not in "\n".join(install.next_steps(False, False))
    check = tmp_path / "nightwarden-fleet-authority.service"
    check.write_text(
        "\n".join("ExecStart=/bin/true" if ln.startswith("ExecStart=") else ln for ln in text.splitlines())
    )
    verify = subprocess.run(["systemd-analyze", "verify", str(check)], capture_output=True, text=True)
    assert verify.returncode == 0 and "nightwarden-fleet-authority" not in verify.stderr, verify.stderr
