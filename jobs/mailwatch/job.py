"""`nightwarden mailwatch`: the mail queue and the mails per script (see the package's
docstring). Exit 1 when something was over its limit for the first time."""

from __future__ import annotations

import json
import time

from nightwarden.lib.runner import Result

NAME = "mailwatch"
HOUR = 3600
MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS script_mail (
        time REAL NOT NULL,
        script TEXT NOT NULL,
        count INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS script_mail_key ON script_mail(script, time);
    """,
]


def add_arguments(parser) -> None:
    parser.add_argument("--no-mail", action="store_true", help="no alert mail")


def _top(counter, n: int = 10) -> str:
    return "\n".join(f"{count:>7}  {who}" for who, count in counter.most_common(n)) or "(none)"


def _said_within(state, kind: str, key: str, seconds: float) -> bool:
    for e in state.events(time.time() - seconds, kind=kind):
        if json.loads(e["detail"] or "{}").get("key") == key:
            return True
    return False


def check_queue(ctx) -> bool:
    from nightwarden.lib.errors import NightwardenError

    from . import queue

    cfg = ctx.config.mailwatch
    if not cfg.queue_alert:
        return False
    try:
        q = queue.read(cfg)
    except NightwardenError as e:
        ctx.log.warning("%s", e.message)
        return False
    if q is None:
        return False
    ctx.say(f"mail queue ({q.mta}): {q.length} message(s), limit {cfg.queue_alert}")
    over = q.length > cfg.queue_alert
    last = ctx.state.events(time.time() - 7 * 86400, kind="mail_queue")
    was_over = bool(last) and json.loads(last[-1]["detail"] or "{}").get("over", False)
    if over == was_over or ctx.dry_run:  # said when it goes over, and when it is back under
        return over and not was_over
    with ctx.state:
        ctx.state.add_event("mail_queue", source=NAME, length=q.length, limit=cfg.queue_alert, over=over)
    if over and cfg.alert and not getattr(ctx.args, "no_mail", False):
        ctx.mailer.alert(
            "queuealert",
            {
                "count": q.length,
                "limit": cfg.queue_alert,
                "mta": q.mta,
                "senders": _top(q.senders),
                "recipients": _top(q.recipients),
            },
        )
    return over


def check_scripts(ctx) -> list[str]:
    from . import scripts

    cfg = ctx.config.mailwatch
    if not cfg.script_alert or not cfg.script_limit:
        return []
    paths = [ctx.config.sandboxed(p) for p in [*cfg.script_logs, cfg.php_mail_log] if p]
    found, samples, cursors, problems = scripts.read_new(ctx.state, paths)
    for p in problems:
        ctx.log.warning("%s", p)
    ctx.state.migrate("mailwatch", MIGRATIONS)
    now = time.time()
    if not ctx.dry_run:
        with ctx.state:
            ctx.state.db.executemany(
                "INSERT INTO script_mail(time, script, count) VALUES (?,?,?)",
                [(now, s, n) for s, n in found.items()],
            )
            ctx.state.db.execute("DELETE FROM script_mail WHERE time < ?", (now - HOUR,))
            for key, cursor in cursors.items():
                ctx.state.set_cursor(key, cursor)
    hour = dict(
        ctx.state.db.execute(
            "SELECT script, SUM(count) FROM script_mail WHERE time >= ? GROUP BY script", (now - HOUR,)
        )
    )
    if ctx.dry_run:
        for s, n in found.items():
            hour[s] = hour.get(s, 0) + n
    over = [(s, n) for s, n in sorted(hour.items(), key=lambda kv: -kv[1]) if n > cfg.script_limit]
    new = [(s, n) for s, n in over if not _said_within(ctx.state, "mail_script", s, HOUR)]
    for s, n in new:
        action = ""
        if cfg.script_disable and not ctx.dry_run and not s.startswith("uid "):
            action = scripts.disable(s, [str(ctx.config.sandboxed(d)) for d in cfg.script_dirs])
            ctx.log.warning("%s", action)
        ctx.say(
            f"{s}: {n} mails in the last hour, over {cfg.script_limit}" + (f"; {action}" if action else "")
        )
        if ctx.dry_run:
            continue
        with ctx.state:
            ctx.state.add_event(
                "mail_script", source=NAME, key=s, count=n, limit=cfg.script_limit, action=action
            )
        if cfg.alert and not getattr(ctx.args, "no_mail", False):
            ctx.mailer.alert(
                "scriptalert",
                {
                    "script": s,
                    "count": n,
                    "limit": cfg.script_limit,
                    "action": action or "none (mailwatch.script_disable is off)",
                    "sample": "\n".join(samples.get(s, [])) or "(in earlier runs)",
                },
            )
    return [s for s, _ in new]


def run(ctx) -> Result:
    queue_over = check_queue(ctx)
    loud = check_scripts(ctx)
    summary = ("mail queue over its limit; " if queue_over else "") + f"{len(loud)} script(s) over the limit"
    return Result(1 if queue_over or loud else 0, summary)


def status(config, state) -> dict:
    """For `nightwarden status`: the queue's watcher and the script limit."""
    from .queue import which_mta

    cfg = config.mailwatch
    mta = which_mta(cfg)
    queue = (
        "off"
        if not cfg.queue_alert
        else (f"{mta}'s, over {cfg.queue_alert}" if mta != "none" else "no MTA found")
    )
    scripts = f"over {cfg.script_limit} mails an hour" if cfg.script_alert and cfg.script_limit else "off"
    return {"mail queue": queue, "scripts": scripts}
