"""Mails per script (LF_SCRIPT_ALERT): new lines of the mail logs, read on from cursors across
rotation as the login-failure job reads its logs, and the script each mail came from:
- exim's `cwd=/home/alice/public_html 3 args: /usr/sbin/sendmail -t -i` (log_selector
  +arguments): the directory the sending process ran in (exim's own spool is left out);
- postfix's `postfix/pickup[N]: ID: uid=33 from=<www-data>`: the local user that sent it;
- PHP's mail.log, `mail() on [/var/www/html/contact.php:12]: To: ...`: the script itself;
- PHP's X-PHP-Originating-Script header where the MTA logs it (`33:contact.php`).
PHP's log is written by the web server's user: a path named there is that user's word, which
is why disabling one is opt-in and bounded (see disable)."""

from __future__ import annotations

import os
import re
import stat
from collections import Counter, defaultdict
from pathlib import Path

from nightwarden.jobs.login_failures import sources

EXIM_CWD = re.compile(rb"\bcwd=(/\S*) \d+ args: ")
PICKUP = re.compile(rb"postfix/pickup\[\d+\]: \w+: uid=(\d+) from=<([^>]*)>")
PHP = re.compile(rb"mail\(\) on \[(/[^\]]*?):\d+\]")
# PHP's mail.add_x_header, where the MTA logs it (postfix header_checks WARN, exim's +all)
PHP_HEADER = re.compile(rb"X-PHP-Originating-Script: (\d+):([^\s;,]+)")
SPOOLS = ("/var/spool/exim", "/var/spool/exim4")
SAMPLES = 5


def scan(text: bytes, found: Counter, samples: dict) -> None:
    """Count the scripts named in whole lines of text."""
    for line in text.split(b"\n"):
        script = None
        m = EXIM_CWD.search(line)
        if m:
            path = m.group(1).decode("utf-8", "backslashreplace")
            if path != "/" and not path.startswith(SPOOLS):
                script = path
        elif (m := PICKUP.search(line)) is not None:
            script = f"uid {int(m.group(1))} ({m.group(2).decode('utf-8', 'backslashreplace')[:100]})"
        elif (m := PHP.search(line)) is not None:
            script = m.group(1).decode("utf-8", "backslashreplace")
        elif (m := PHP_HEADER.search(line)) is not None:
            script = f"{m.group(2).decode('utf-8', 'backslashreplace')} (uid {int(m.group(1))})"
        if script is not None:
            script = script[:500]
            found[script] += 1
            if len(samples[script]) < SAMPLES:
                samples[script].append(line[:500].decode("utf-8", "backslashreplace"))


def read_new(state, paths: list[Path]) -> tuple[Counter, dict, dict, list[str]]:
    """(mails per script, sample lines, the new cursors, problems) of what the logs gained
    since the last run; a log seen for the first time is taken from its end."""
    found: Counter = Counter()
    samples: dict = defaultdict(list)
    cursors, problems = {}, []
    for path in paths:
        if not os.path.lexists(path):
            continue
        key = f"mailwatch:{path}"
        try:
            cursor = state.get_cursor(key)
            if cursor is None:  # the first look: what the log held before is history, not this hour
                cursors[key] = sources.cursor_at_end(path)
                continue
            plan = sources.plan(path, cursor)
            try:
                for part in plan.parts:
                    for text, _ in sources.read_part(part):
                        scan(text, found, samples)
            finally:
                plan.close()
            cursors[key] = sources.cursor_after(path, plan)
            if plan.lost:
                problems.append(plan.lost)
        except Exception as e:  # one log's trouble is said; the others are read
            problems.append(getattr(e, "message", None) or f"{path}: {e}")
    return found, dict(samples), cursors, problems


def disable(path: str, dirs: list[str]) -> str:
    """chmod 000 a script (a file) or the directory it ran in, refusing anything outside `dirs`,
    reached through a symlink, owned by root, or a file with more than one link. Returns what
    was done or why not."""
    if not path.startswith("/") or not any(path.startswith(d.rstrip("/") + "/") for d in dirs):
        return f"not disabled: {path} is not under {', '.join(dirs)}"
    if os.path.realpath(path) != path:
        return f"not disabled: {path} goes through a symbolic link"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        return f"not disabled: {path}: {e.strerror}"
    try:
        st = os.fstat(fd)
        if st.st_uid == 0:
            return f"not disabled: {path} is root's"
        if stat.S_ISREG(st.st_mode) and st.st_nlink != 1:
            return f"not disabled: {path} has {st.st_nlink} links"
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return f"not disabled: {path} is neither a file nor a directory"
        os.fchmod(fd, 0)
        return f"disabled: chmod 000 {path} (was {stat.S_IMODE(st.st_mode):04o})"
    finally:
        os.close(fd)
