"""The quarantine sweep, with real GNU tar reading what it wrote, hostile names, and an
attacker racing the sweep with symlinks and directories that point outside."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from helpers import NIGHTWARDEN, load_config, run_cli, write_config

pytestmark = pytest.mark.root

NOBODY = 65534
ELF = Path("/bin/true").read_bytes()


def setup(tmp_path: Path, extra: str = "") -> tuple[Path, Path]:
    watched = tmp_path / "watch"
    watched.mkdir()
    watched.chmod(0o1777)
    cfg = write_config(tmp_path, f'\n[quarantine]\ndirs = ["{watched}"]\n' + extra)
    return watched, cfg


def plant(path: Path, data: bytes, mode: int = 0o644, uid: int = NOBODY) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chown(path, uid, uid)
    path.chmod(mode)
    os.utime(path, (1_700_000_000, 1_700_000_000))
    return path


def sweep(cfg: Path, *args: str, code: int | None = None):
    return run_cli("--config", str(cfg), "quarantine", "--no-mail", *args, check=code)


def archive(tmp_path: Path) -> Path:
    return tmp_path / "state" / "quarantine" / "quarantine-0001.tar"


@pytest.fixture(autouse=True)
def need_root():
    if os.geteuid() != 0:
        pytest.skip("these tests plant files owned by another user (root needed)")


def test_quarantine_and_gnu_tar_restores_path_owner_mode_mtime(tmp_path):
    watched, cfg = setup(tmp_path)
    plant(watched / "x" / "payload", ELF, 0o4750)
    plant(watched / "run.php", b"<?php system($_GET['c']); ?>", 0o600)
    plant(watched / "notes.txt", b"harmless")
    plant(watched / "root-owned.sh", b"#!/bin/sh\n", uid=0)
    done = sweep(cfg, code=1)
    assert "2 quarantined" in done.stdout
    assert sorted(p.name for p in watched.rglob("*") if p.is_file()) == ["notes.txt", "root-owned.sh"]
    out = tmp_path / "restore"
    out.mkdir()
    subprocess.run(["tar", "-xpf", str(archive(tmp_path)), "-C", str(out)], check=True)
    restored = out / str(watched).lstrip("/") / "x" / "payload"
    st = restored.stat()
    assert restored.read_bytes() == ELF
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777, int(st.st_mtime)) == (
        NOBODY,
        NOBODY,
        0o4750,
        1_700_000_000,
    )
    php = out / str(watched).lstrip("/") / "run.php"
    assert php.stat().st_mode & 0o777 == 0o600
    listing = run_cli("--config", str(cfg), "quarantine", "list", check=0).stdout
    assert "ELF binary" in listing and "script extension .php" in listing


def test_manifest_show_and_restore_never_overwrite(tmp_path):
    watched, cfg = setup(tmp_path)
    plant(watched / "tool.sh", b"#!/bin/bash\necho pwned\n", 0o755)
    sweep(cfg, code=1)
    show = run_cli("--config", str(cfg), "quarantine", "show", "1", check=0).stdout
    assert hashlib.sha256(b"#!/bin/bash\necho pwned\n").hexdigest() in show
    assert "nobody (uid 65534" in show and "0o755" in show
    run_cli("--config", str(cfg), "quarantine", "restore", "1", check=0)
    assert (watched / "tool.sh").read_bytes() == b"#!/bin/bash\necho pwned\n"
    assert (watched / "tool.sh").stat().st_uid == NOBODY
    done = run_cli("--config", str(cfg), "quarantine", "restore", "1")
    assert done.returncode == 73 and "exists; not overwritten" in done.stderr
    run_cli("--config", str(cfg), "quarantine", "restore", "1", "--to", str(tmp_path / "elsewhere"), check=0)
    assert (tmp_path / "elsewhere" / str(watched).lstrip("/") / "tool.sh").exists()
    done = run_cli("--config", str(cfg), "quarantine", "show", "99")
    assert done.returncode == 66


def test_hostile_names_round_trip_through_gnu_tar(tmp_path):
    watched, cfg = setup(tmp_path)
    names = [b"new\nline.sh", b"latin1-\xe9\xff.sh", b"-rf.sh", b"semi;colon", b"x" * 252 + b".sh"]
    deep = watched
    for i in range(30):
        deep = deep / (f"d{i:02d}" + "y" * 90)
    wb = os.fsencode(watched)
    for name in names:
        plant(Path(os.fsdecode(wb + b"/" + name)), b"#!/bin/sh\n" + name)
    plant(deep / "deep.sh", b"#!/bin/sh\ndeep\n")
    assert len(os.fsencode(deep)) > 2800
    sweep(cfg, code=1)
    assert not any(p.is_file() for p in watched.rglob("*")), "every planted file was quarantined"
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-xpf", str(archive(tmp_path)), "-C", str(out)], check=True)
    base = os.fsencode(out) + b"/" + wb.lstrip(b"/")
    for name in names:
        with open(base + b"/" + name, "rb") as f:
            assert f.read() == b"#!/bin/sh\n" + name
    assert (out / str(deep).lstrip("/") / "deep.sh").read_bytes() == b"#!/bin/sh\ndeep\n"


def test_symlinks_are_removed_never_followed(tmp_path):
    watched, cfg = setup(tmp_path)
    outside = tmp_path / "outside"
    plant(outside / "victim.sh", b"#!/bin/sh\nsecret\n")
    (watched / "to-dir").symlink_to(outside)
    (watched / "to-file").symlink_to(outside / "victim.sh")
    os.lchown(watched / "to-dir", NOBODY, NOBODY)
    os.lchown(watched / "to-file", NOBODY, NOBODY)
    sweep(cfg, code=1)
    assert (outside / "victim.sh").read_bytes() == b"#!/bin/sh\nsecret\n"
    assert list(watched.iterdir()) == []
    with tarfile.open(archive(tmp_path)) as tar:
        links = {Path(m.name).name: m.linkname for m in tar.getmembers()}
    assert links == {"to-dir": str(outside), "to-file": str(outside / "victim.sh")}


def test_report_mode_touches_nothing_and_alerts_once(tmp_path):
    watched, cfg = setup(tmp_path, 'mode = "report"\n')
    plant(watched / "miner", ELF, 0o755)
    done = run_cli("--config", str(cfg), "quarantine")
    assert done.returncode == 1 and "action: reported" in done.stdout
    assert (watched / "miner").read_bytes() == ELF and not archive(tmp_path).exists()
    mbox = tmp_path / "state" / "mail" / "mbox"
    assert mbox.read_text().count("Suspicious File Alert") == 1
    done = run_cli("--config", str(cfg), "quarantine")
    assert done.returncode == 0, "the same file is not reported twice"
    assert mbox.read_text().count("Suspicious File Alert") == 1


def test_ignore_rules_in_csf_fignore_format(tmp_path):
    watched, cfg = setup(tmp_path)
    (tmp_path / "etc" / "nightwarden.fignore").write_text(
        f"{watched}/exact.sh\n{watched}/*.pid.sh\n{watched}/clamav.*\nuser:daemon\n[unclosed\n"
    )
    plant(watched / "exact.sh", b"#!/bin/sh\n")
    plant(watched / "123.pid.sh", b"#!/bin/sh\n")
    plant(watched / "clamav-tmp" / "scan.sh", b"#!/bin/sh\n")
    plant(watched / "daemons.sh", b"#!/bin/sh\n", uid=1)
    plant(watched / "caught.sh", b"#!/bin/sh\n")
    done = sweep(cfg, code=1)
    assert "1 quarantined" in done.stdout and "caught.sh" in done.stdout
    log = (tmp_path / "log" / "nightwarden.log").read_text()
    assert "nightwarden.fignore:5: invalid regular expression" in log


def test_bounds_size_count_and_the_same_directory_twice(tmp_path):
    watched, cfg = setup(tmp_path, "max_size = 1000\nmax_files = 3\n")
    cfg.write_text(cfg.read_text().replace(f'dirs = ["{watched}"]', f'dirs = ["{watched}", "{watched}"]'))
    big = plant(watched / "big.sh", b"#!/bin/sh\n" + b"#" * 5000, 0o755)
    for i in range(5):
        plant(watched / f"s{i}.sh", b"#!/bin/sh\n")
    done = sweep(cfg, code=1)
    assert "made unreadable (too large to archive)" in done.stdout
    assert big.stat().st_mode & 0o777 == 0 and big.exists()
    assert done.stdout.count("left: file limit per sweep reached") == 3
    assert "6 suspicious" in done.stdout, "the directory listed twice is swept once"


def test_a_run_killed_mid_archive_is_cut_back_at_the_next_run(tmp_path):
    watched, cfg = setup(tmp_path)
    plant(watched / "one.sh", b"#!/bin/sh\n1\n")
    sweep(cfg, code=1)
    committed = archive(tmp_path).stat().st_size
    with open(archive(tmp_path), "ab") as f:  # what a killed run leaves behind
        f.write(b"\x00garbage" * 300)
    plant(watched / "two.sh", b"#!/bin/sh\n2\n")
    sweep(cfg, code=1)
    names = subprocess.run(
        ["tar", "-tf", str(archive(tmp_path))], capture_output=True, text=True, check=True
    ).stdout.split()
    assert [Path(n).name for n in names] == ["one.sh", "two.sh"]
    assert archive(tmp_path).stat().st_size >= committed


ATTACKER = textwrap.dedent("""
    import os, random, stat, sys, time
    os.setgid(65534); os.setuid(65534)
    watched, canary_file, canary_dir, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    rnd = random.Random(7)

    def clear(p):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            for x in os.listdir(p):
                os.unlink(os.path.join(p, x))
            os.rmdir(p)
        else:
            os.unlink(p)

    end = time.monotonic() + seconds
    swaps = 0
    while time.monotonic() < end and swaps < 5_000_000:
        name = os.path.join(watched, "p%d" % rnd.randrange(8))
        tmp = name + ".new"
        try:
            clear(tmp)
            choice = rnd.randrange(4)
            if choice == 0:
                with open(tmp, "wb") as f:
                    f.write(b"#!/bin/sh\\nplanted\\n")
            elif choice == 1:
                os.symlink(canary_file, tmp)
            elif choice == 2:
                os.symlink(canary_dir, tmp)
            else:
                os.mkdir(tmp)
                os.symlink(canary_file, os.path.join(tmp, "inner.sh"))
            if os.path.isdir(name) and not os.path.islink(name):
                clear(name)
            os.rename(tmp, name)
            swaps += 1
        except OSError:
            pass
    print(swaps)
""")


@pytest.mark.slow
def test_racing_attacker_cannot_make_the_sweep_touch_anything_outside(open_tmp):
    tmp_path = open_tmp
    watched, cfg = setup(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = b"#!/bin/sh\nCANARY-%d\n" % random.randrange(10**9)
    canary = plant(outside / "canary.sh", secret, 0o755)
    plant(outside / "dir" / "elf", ELF, 0o755)
    before = (canary.stat().st_ino, canary.stat().st_mode, canary.read_bytes())
    attacker = subprocess.Popen(
        [sys.executable, "-c", ATTACKER, str(watched), str(canary), str(outside / "dir"), "11"],
        stdout=subprocess.PIPE,
        text=True,
    )
    cfgobj = load_config(cfg)
    sweeps = 0
    deadline = time.monotonic() + 10.5
    from nightwarden.jobs.quarantine import ignore
    from nightwarden.jobs.quarantine.archive import Quarantine
    from nightwarden.jobs.quarantine.sweep import Sweep
    from nightwarden.lib.state import State

    state = State(cfgobj.db_path)
    try:
        while time.monotonic() < deadline:
            handler = Quarantine(cfgobj, state, report_only=False)
            try:
                Sweep(cfgobj.quarantine, ignore.IgnoreRules(), handler).run([watched])
            finally:
                handler.close()
            sweeps += 1
    finally:
        swaps = int(attacker.communicate(timeout=30)[0])
    assert sweeps >= 20 and swaps > 1000, (sweeps, swaps)
    print(f"{sweeps} sweeps against {swaps} swaps")
    assert (canary.stat().st_ino, canary.stat().st_mode, canary.read_bytes()) == before
    assert (outside / "dir" / "elf").read_bytes() == ELF
    assert sorted(p.name for p in outside.rglob("*")) == ["canary.sh", "dir", "elf"]
    prefix = str(watched).lstrip("/") + "/"
    with tarfile.open(archive(tmp_path)) as tar:
        members = tar.getmembers()
        assert members, "the sweeps quarantined some of what was planted"
        for m in members:
            assert m.name.startswith(prefix), m.name
            if m.isfile():
                assert b"CANARY" not in tar.extractfile(m).read()
    paths = [bytes(r[0]) for r in state.db.execute("SELECT path FROM quarantine")]
    assert all(p.startswith(os.fsencode(watched) + b"/") for p in paths)


# -- attacks from the trust issue ---------------------------------------------------------
def sweep_in_process(cfg: Path, watched: Path, sweep_class=None, handler_class=None):
    """One sweep through the job's own classes, for attacks that need a hook inside it."""
    from nightwarden.jobs.quarantine import ignore
    from nightwarden.jobs.quarantine.archive import Quarantine
    from nightwarden.jobs.quarantine.sweep import Sweep
    from nightwarden.lib.state import State

    cfgobj = load_config(cfg)
    state = State(cfgobj.db_path)
    handler = (handler_class or Quarantine)(cfgobj, state, report_only=False)
    try:
        (sweep_class or Sweep)(cfgobj.quarantine, ignore.IgnoreRules(), handler).run([watched])
    finally:
        handler.close()
    return state, handler


def rows(state) -> list:
    return state.db.execute("SELECT path, action FROM quarantine ORDER BY id").fetchall()


def test_the_first_big_file_on_a_fresh_host_does_not_stop_the_sweep(tmp_path):
    watched, cfg = setup(tmp_path)
    plant(watched / "big.sh", b"#!/bin/sh\n" + b"x" * (3 << 20))
    plant(watched / "xmrig", ELF, 0o755)
    plant(watched / "shell.php", b"<?php system($_GET['c']); ?>")
    done = sweep(cfg, code=1)
    assert "3 quarantined" in done.stdout, done.stdout
    assert not any((watched / n).exists() for n in ("big.sh", "xmrig", "shell.php"))
    names = subprocess.run(["tar", "-tf", str(archive(tmp_path))], capture_output=True, text=True).stdout
    assert "big.sh" in names and "xmrig" in names and "shell.php" in names


def test_a_file_grown_after_the_size_check_is_never_copied_past_max_size(tmp_path):
    watched, cfg = setup(tmp_path, "max_size = 1048576\n")
    victim = plant(watched / "grow.sh", b"#!/bin/sh\necho hi\n")
    from nightwarden.jobs.quarantine.archive import Quarantine

    class Growing(Quarantine):
        """The attacker's ftruncate lands between the sweep's look and the copy."""

        def file(self, dfd, name, finding, fd):
            os.truncate(victim, 200 << 20)  # 200 MB, sparse, in an instant
            super().file(dfd, name, finding, fd)

    state, _ = sweep_in_process(cfg, watched, handler_class=Growing)
    assert archive(tmp_path).stat().st_size < 2 << 20, "copied past max_size"
    assert [r["action"] for r in rows(state)] == ["made unreadable (grew past max_size while being copied)"]


def test_the_copy_stops_at_the_time_limit(tmp_path):
    watched, cfg = setup(tmp_path)
    plant(watched / "slow.sh", b"#!/bin/sh\n" + b"y" * (4 << 20))
    from nightwarden.jobs.quarantine.archive import Quarantine

    class Late(Quarantine):
        def begin(self, deadline):
            super().begin(time.monotonic() - 1)  # the time is up before the copy starts

    state, _ = sweep_in_process(cfg, watched, handler_class=Late)
    assert (watched / "slow.sh").exists()
    assert [r["action"] for r in rows(state)] == ["left: the time limit was reached while copying"]


def test_a_hard_link_never_makes_root_change_another_file(tmp_path):
    watched, cfg = setup(tmp_path, "max_size = 1000\n")
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    precious = plant(elsewhere / "precious.sh", b"#!/bin/sh\n" + b"z" * 5000, 0o640)
    os.link(precious, watched / "link.sh")
    done = sweep(cfg, code=1)
    assert stat_mode(precious) == 0o640, "the other name's mode was changed"
    assert "hard links: left unchanged" in done.stdout


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_the_time_limit_inside_a_directory_leaves_nothing_recorded_and_not_removed(tmp_path):
    watched, cfg = setup(tmp_path)
    for i in range(100):
        plant(watched / "d" / f"tool{i:03d}", ELF, 0o755)
    from nightwarden.jobs.quarantine.sweep import Sweep

    class StopsAt50(Sweep):
        def _limit_hit(self):
            if self.stats.entries >= 50:
                self.stats.stopped = "time limit of 120 s reached"
            return bool(self.stats.stopped)

    state, _ = sweep_in_process(cfg, watched, sweep_class=StopsAt50)
    first = rows(state)
    assert first and all(r["action"] == "quarantined" for r in first)
    assert all(not os.path.lexists(bytes(r["path"])) for r in first), "recorded but not removed"
    state, _ = sweep_in_process(cfg, watched)
    assert len(rows(state)) == 100, "a file was archived twice"
    assert not list((watched / "d").iterdir())


def test_a_directory_renamed_out_during_the_sweep_keeps_its_files(tmp_path):
    watched, cfg = setup(tmp_path)
    for name in ("a", "b", "c"):
        plant(watched / "drop" / name, ELF, 0o755)
    away = tmp_path / "away"
    from nightwarden.jobs.quarantine.archive import Quarantine

    class Mover(Quarantine):
        def file(self, dfd, name, finding, fd):
            super().file(dfd, name, finding, fd)
            if not away.exists():
                os.rename(watched / "drop", away)  # the attacker moves the directory out

    state, _ = sweep_in_process(cfg, watched, handler_class=Mover)
    assert sorted(p.name for p in away.iterdir()) == ["a", "b", "c"], "files deleted outside the tree"
    assert all("left the watched tree" in r["action"] for r in rows(state))


def test_restore_to_a_relative_directory_is_relative_to_the_current_one(tmp_path):
    watched, cfg = setup(tmp_path)
    plant(watched / "x.php", b"<?php ?>")
    sweep(cfg, code=1)
    work = tmp_path / "work"
    work.mkdir()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTWARDEN_")}
    back = f"nw-back-{os.getpid()}-{random.randrange(10**9)}"  # never there at the root
    done = subprocess.run(
        [NIGHTWARDEN, "--config", str(cfg), "quarantine", "restore", "1", "--to", back],
        cwd=work,
        capture_output=True,
        text=True,
        env=full_env,
    )
    assert done.returncode == 0, done.stderr
    assert (work / back / str(watched).lstrip("/") / "x.php").read_bytes() == b"<?php ?>"
    assert not Path("/", back).exists()


def test_a_sweep_shows_progress_on_a_terminal_and_nothing_under_cron(tmp_path):
    """A terminal (a pseudo-terminal from script(1)) gets the progress line; a pipe gets none."""
    watched, cfg = setup(tmp_path)
    for i in range(300):
        (watched / f"note-{i}.txt").write_text("x")
    piped = sweep(cfg)
    assert "entries examined" not in piped.stderr
    command = f"{NIGHTWARDEN} --config {cfg} quarantine --no-mail"
    tty = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=60)
    assert "quarantine: 300 entries examined" in tty.stdout, tty.stdout
