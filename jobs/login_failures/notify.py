"""Login notifications (lfd's LF_SSH_EMAIL_ALERT, LF_SU_EMAIL_ALERT, LF_CONSOLE_EMAIL_ALERT): a
mail for every successful ssh login, every su to root and every root login on a console, from
the lines the login-failure reading found (the cron job's or the listener's), each with the
line itself and whether its source can be trusted (a journal entry names its sender through
journald's own fields; a line in a syslog file can be written by any local user with
`logger`). Every notice is also an event (login_ssh, login_su, login_console)."""

from __future__ import annotations

import re

from nightwarden.lib.cli.output import printable

METHOD = re.compile(r"Accepted (\S+) for ")
KEY = re.compile(r" ssh2?: (\S+ \S+)")
TERMINAL = re.compile(r"(?: on | ON )'?([^\s']+)'?")
FROM = re.compile(r" (?:from|FROM) (\S+)$")
MAX_EACH = 20  # more notices than this in one read make one mail in "each" mode too
MAX_AGE = 900  # seconds: an older login (the first read of an old log, a job that was down)
# is recorded, not mailed


def _su_to_root(line: str) -> bool:
    return "(to root) " in line or "Successful su for root by " in line


def notices(config, successes: list, source: str, trusted: bool) -> list[dict]:
    """The notices for a read's successes: dicts with the template's fields and `kind`."""
    cfg = config.logins
    trust = (
        "trusted (a journal entry, named by journald)"
        if trusted
        else "spoofable (a syslog file: any local user can write such a line)"
    )
    out = []
    for t, service, user, address, line in successes:
        line = printable(line[:1000])
        base = {"time_seen": t, "user": printable(user[:100]), "ip": address, "line": line}
        base |= {"source": source, "trust": trust}
        if service == "sshd" and cfg.ssh_alert:
            method = METHOD.search(line)
            key = KEY.search(line)
            out.append(
                base
                | {
                    "kind": "login_ssh",
                    "method": method.group(1) if method else "?",
                    "key": key.group(1) if key else "-",
                }
            )
        elif service == "su" and cfg.su_alert and _su_to_root(line):
            tty = TERMINAL.search(line)
            out.append(base | {"kind": "login_su", "target": "root", "tty": tty.group(1) if tty else "?"})
        elif service == "console" and cfg.console_alert:
            tty = TERMINAL.search(line)
            remote = FROM.search(line)
            out.append(
                base
                | {
                    "kind": "login_console",
                    "user": "root",
                    "tty": tty.group(1) if tty else "?",
                    "ip": remote.group(1) if remote else "",
                }
            )
    return out


TEMPLATES = {"login_ssh": "sshalert", "login_su": "sualert", "login_console": "consolealert"}


def mails(config, found: list[dict], now: float | None = None) -> list[tuple[str, dict]]:
    """(template, fields) to send: one per notice, or one for them all (logins.notify =
    "batch", or more than MAX_EACH at once); logins older than MAX_AGE are not mailed."""
    import time

    now = time.time() if now is None else now
    found = [n for n in found if n["time_seen"] >= now - MAX_AGE]
    if not found:
        return []
    if config.logins.notify == "each" and len(found) <= MAX_EACH:
        return [(TEMPLATES[n["kind"]], n) for n in found]
    rows = [f"{n['kind'][6:]:<8} {n['user']:<16} {n.get('ip') or n.get('tty', ''):<40}" for n in found]
    return [
        (
            "loginalerts",
            {
                "count": len(found),
                "logins": "\n".join(rows[:500]),
                "lines": "\n".join(n["line"] for n in found[:100]),
                "trust": found[0]["trust"],
            },
        )
    ]


def event(notice: dict) -> tuple[str, str | None, dict]:
    """(kind, address, detail) for the events table."""
    detail = {k: v for k, v in notice.items() if k not in ("kind", "ip", "time_seen")}
    return notice["kind"], notice.get("ip") or None, detail
