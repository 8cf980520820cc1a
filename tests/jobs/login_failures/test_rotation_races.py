"""Reading a log while logrotate works on it, one step at a time, with a read that can be
caught between any two steps and between any two of its own stages: after opening the
current file and before looking at the copies, between two chunks, before the cursor is
taken. A daemon writes through a descriptor it keeps (as rsyslog does) and reopens the log
only when told, after the rotation. Every line must be read exactly once, except those
copytruncate itself loses (written between its copy and its truncation).

Each case is one seed of a random interleaving; the cases that found a bug keep their seed."""

from __future__ import annotations

import gzip
import os
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest

from nightwarden.jobs.login_failures import sources
from nightwarden.lib.errors import NightwardenError


class Race:
    def __init__(self, tmp_path: Path, seed: int, monkeypatch):
        self.rnd = random.Random(seed)
        self.dir = tmp_path
        self.log = tmp_path / "auth.log"
        self.log.write_text("")
        self.writer = os.open(self.log, os.O_WRONLY | os.O_APPEND)
        self.written: dict[int, str] = {}
        self.lost: set[int] = set()  # copytruncate's own loss
        self.copying = False
        self.seen: list[str] = []
        self.cursor: dict | None = None
        self.pending: list = []  # a rotation step that happens inside the next read
        real = sources.siblings

        def siblings(path):
            self.interrupt()
            found = real(path)
            self.interrupt()
            return found

        monkeypatch.setattr(sources, "siblings", siblings)

    def interrupt(self) -> None:
        if self.pending and self.rnd.random() < 0.5:
            self.pending.pop(0)()

    def write(self) -> None:
        for _ in range(self.rnd.randint(1, 3)):
            n = len(self.written) + 1
            self.written[n] = f"line {n:06d} " + "x" * self.rnd.randint(5, 60)
            os.write(self.writer, (self.written[n] + "\n").encode())
            if self.copying:
                self.lost.add(n)

    def read(self) -> None:
        self.interrupt()
        try:
            plan = sources.plan(self.log, self.cursor)
        except NightwardenError:  # the log is missing for a moment: read again later
            return
        got = []
        try:
            for part in plan.parts:
                self.interrupt()
                for text, _ in sources.read_part(part, self.rnd.choice([64, 4096])):
                    got += text.decode().splitlines()
                    self.interrupt()
            self.interrupt()
            cursor = sources.cursor_after(self.log, plan)
        except (NightwardenError, OSError):  # a copy renamed meanwhile: nothing of it counts
            return
        finally:
            plan.close()
        self.seen += got
        self.cursor = cursor

    # -- logrotate's steps -------------------------------------------------------------------
    def _shift(self):
        def number(p: Path) -> int:
            return int(p.name.split(".")[2])

        for p in sorted(self.dir.glob("auth.log.*"), key=number, reverse=True):
            gz = ".gz" if p.name.endswith(".gz") else ""
            yield lambda p=p, gz=gz: p.rename(self.dir / f"auth.log.{number(p) + 1}{gz}")

    def create(self, compress: bool):
        yield from self._shift()
        yield lambda: self.log.rename(self.dir / "auth.log.1")
        yield lambda: os.close(os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))

        def reopen():  # postrotate: the daemon is told to reopen its log
            os.close(self.writer)
            self.writer = os.open(self.log, os.O_WRONLY | os.O_APPEND)

        yield reopen
        if compress:
            box = {}
            one = self.dir / "auth.log.1"

            def start():
                box["data"] = gzip.compress(one.read_bytes())
                box["cut"] = self.rnd.randint(0, len(box["data"]))
                box["f"] = open(self.dir / "auth.log.1.gz", "wb")
                box["f"].write(box["data"][: box["cut"]])
                box["f"].flush()

            def finish():
                box["f"].write(box["data"][box["cut"] :])
                box["f"].close()

            yield start
            yield finish
            yield one.unlink

    def copytruncate(self):
        yield from self._shift()

        def copy():
            shutil.copyfile(self.log, self.dir / "auth.log.1")
            self.copying = True

        def truncate():
            os.truncate(self.log, 0)
            self.copying = False

        yield copy
        yield truncate

    def play(self, how: str, p_read: float) -> None:
        rnd = self.rnd
        steps = {
            "create": lambda: self.create(False),
            "compress": lambda: self.create(True),
            "copytruncate": self.copytruncate,
        }[how]
        self.read()
        for _ in range(rnd.randint(1, 3)):
            for _ in range(rnd.randint(0, 3)):
                self.write()
                if rnd.random() < p_read:
                    self.read()
            for step in steps():
                if rnd.random() < p_read:
                    self.pending.append(step)
                    self.read()
                    while self.pending:
                        self.pending.pop(0)()
                else:
                    step()
                if rnd.random() < 0.3:
                    self.write()
        self.write()
        self.read()
        self.read()

    def check(self) -> None:
        want = sorted(text for n, text in self.written.items() if n not in self.lost)
        got = sorted(text for text in self.seen if int(text.split()[1]) not in self.lost)
        twice = [text[:11] for text, k in Counter(got).items() if k > 1]
        missing = [text[:11] for text in want if text not in set(got)]
        assert not twice and not missing, f"read twice: {twice}; never read: {missing}"


@pytest.mark.parametrize("how", ["create", "compress", "copytruncate"])
@pytest.mark.parametrize("p_read", [0.3, 0.5, 1.0])
def test_every_line_is_read_once_whatever_step_a_read_is_caught_in(tmp_path, monkeypatch, how, p_read):
    for seed in range(150):
        here = tmp_path / str(seed)
        here.mkdir()
        race = Race(here, seed, monkeypatch)
        try:
            race.play(how, p_read)
            race.check()
        except AssertionError as e:
            raise AssertionError(f"{how}, seed {seed}: {e}") from None
        finally:
            os.close(race.writer)


@pytest.mark.parametrize("how", ["compress", "twice"])
def test_a_rotation_between_opening_the_log_and_looking_at_its_copies(tmp_path, monkeypatch, how):
    """The follower's periodic read opens the (empty) log, and logrotate runs before it lists
    the rotated copies: the file it holds open is now one of them. Read as both, its lines
    were counted twice (a brute-forcer's 4 attempts became 6, over a limit of 5)."""
    log = tmp_path / "auth.log"
    log.write_text("")
    plan = sources.plan(log, None)
    cursor = sources.cursor_after(log, plan)
    plan.close()
    first = "".join(f"line {i} before the rotation\n" for i in range(4))
    later = "".join(f"line {i} after it\n" for i in range(3))
    log.write_text(first)
    real = sources.siblings
    rotated = []

    def rotate_first(path):
        if not rotated:
            rotated.append(1)
            os.rename(log, tmp_path / "auth.log.1")
            if how == "compress":
                with gzip.open(tmp_path / "auth.log.1.gz", "wb") as z:
                    z.write((tmp_path / "auth.log.1").read_bytes())
                os.unlink(tmp_path / "auth.log.1")
                log.write_text(later)
            else:  # two rotations: the file held open ends as .2
                log.write_text(later)
                os.rename(tmp_path / "auth.log.1", tmp_path / "auth.log.2")
                os.rename(log, tmp_path / "auth.log.1")
                log.write_text("")
        return real(path)

    monkeypatch.setattr(sources, "siblings", rotate_first)
    got = []
    for _ in range(2):  # the read caught by the rotation, and the next one
        plan = sources.plan(log, cursor)
        for part in plan.parts:
            got += [t for t, _ in sources.read_part(part)]
        cursor = sources.cursor_after(log, plan)
    assert b"".join(got).decode() == first + later
