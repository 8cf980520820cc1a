"""Reads what the auth logs (or the journal) gained since the last run, counts login
failures per service and address (README: "How failures are counted"), and blocks an
address that reached its service's limit within the interval: a temporary block that
escalates (blocks.perm_block_count). The allow and ignore lists win. One alert per block,
with lfd's fields and the log lines. Exit 1 when something was blocked."""

from __future__ import annotations

import time

from nightwarden.lib.runner import Result

from . import notify, sources, tracking
from .store import AttemptStore

NAME = "login-failures"


def add_arguments(parser) -> None:
    parser.add_argument("--no-mail", action="store_true", help="do not send alerts")


def _minutes(series, since: float):
    """Attempts summed per service, address and minute (the rows kept in state)."""
    acc: dict = {}
    for service, addr, t, n in series:
        if t >= since:
            key = (service, addr, t - t % 60)
            acc[key] = acc.get(key, 0) + n
    return [(s, a, t, n) for (s, a, t), n in acc.items()]


def run(ctx) -> Result:
    from . import reading

    cfg = ctx.config.logins
    now = time.time()
    windows = {svc: cfg.intervals.get(svc) or cfg.interval for svc in cfg.limits}
    since = now - max([cfg.interval, *windows.values()])
    sources = reading.configured(ctx.config)
    if not sources:
        ctx.say("no log source present (see logins.sources)")
        return Result(0, "no log source present")
    locks, followed = _take(ctx, sources)
    try:
        return _run(ctx, [s for s in sources if s not in followed], followed, windows, since, now)
    finally:
        for lock in locks:
            lock.release()


def _take(ctx, sources) -> tuple[list, list]:
    """Each source's lock; a source the listener follows (its lock is held) is its to read."""
    from nightwarden.lib.errors import BusyError

    from . import reading

    locks, followed = [], []
    for src in sources:
        lock = reading.source_lock(ctx.config, src)
        try:
            locks.append(lock.acquire())
        except BusyError as e:
            ctx.log.info("%s: skipped, %s", src.name, e)
            followed.append(src)
    return locks, followed


def _run(ctx, sources, followed, windows: dict, since: float, now: float) -> Result:
    from . import reading

    cfg = ctx.config.logins
    cursors = {src.key: ctx.state.get_cursor(src.key) for src in sources}
    scans = [reading.scan_new(src, cursors[src.key], ctx.config) for src in sources]
    _log_problems(ctx, scans)
    rows = [r for s in scans if not s.error for r in _minutes(s.tally.series(), since)]
    due = _over_limits(ctx, rows, windows, since, now)
    found = [
        n
        for s in scans
        if not s.error
        for n in notify.notices(ctx.config, s.tally.successes, s.source.name, s.source.trusted)
    ]
    accounts = [
        r
        for s in scans
        if not s.error
        for r in tracking.rows_of(s.tally, now, history=cursors[s.source.key] is None)
    ]
    if not ctx.dry_run:
        _record(ctx, scans, rows, since, found, accounts)
    _notify(ctx, found)
    _track(ctx, accounts)
    blocked, skipped = _block(ctx, due)
    if blocked and cfg.alert and not getattr(ctx.args, "no_mail", False):
        for item in blocked:
            _alert(ctx, scans, *item)
    problems = [s.error for s in scans if s.error]
    lines = sum(s.tally.lines for s in scans)
    summary = (
        f"{lines:,} lines from {len(sources)} source(s); {len(due)} address(es) over a limit"
        f", {len(blocked)} blocked"
        + (f", {len(skipped)} allowed/ignored" if skipped else "")
        + (f"; {len(problems)} source problem(s)" if problems else "")
        + (f"; {len(followed)} source(s) followed by the listener" if followed else "")
    )
    ctx.say(summary)
    return Result(1 if blocked else 0, summary, {"blocked": [b[1] for b in blocked], "problems": problems})


def _log_problems(ctx, scans) -> None:
    for s in scans:
        if s.error:
            ctx.log.error("%s", s.error)
        if s.lost:
            ctx.log.warning("%s", s.lost)
        for line in s.forged[:20]:
            ctx.log.warning("journal: forged entry: %s", line)
        if s.overlong:
            ctx.log.warning(
                "%s: %d line(s) longer than %d bytes skipped", s.source.name, s.overlong, sources.MAX_LINE
            )


def _over_limits(ctx, rows: list, windows: dict, since: float, now: float) -> list:
    """(service, address, [failures, first, last]) at or over the service's limit, counting
    what state holds and what this run found, each service within its own window."""
    cfg = ctx.config.logins
    window: dict = {}
    for service, addr, t, n in AttemptStore(ctx.state).since(since) + rows:
        if t < now - windows.get(service, cfg.interval):
            continue
        w = window.setdefault((service, addr), [0, t, t])
        w[0] += n
        w[1], w[2] = min(w[1], t), max(w[2], t)
    limits = cfg.limits
    return sorted(
        ((svc, addr, w) for (svc, addr), w in window.items() if limits.get(svc) and w[0] >= limits[svc]),
        key=lambda x: -x[2][0],
    )


def _notify(ctx, found: list) -> None:
    """Login notices: said, and mailed (after they were recorded with the cursors: a crash
    between the two loses a mail, never sends one twice)."""
    for n in found:
        ctx.say(f"{n['kind'].replace('_', ' ')}: {n['user']} {n.get('ip') or n.get('tty', '')}")
    if ctx.dry_run or getattr(ctx.args, "no_mail", False):
        return
    for template, fields in notify.mails(ctx.config, found):
        ctx.mailer.alert(template, fields)


def _track(ctx, accounts: list) -> None:
    """Distributed attacks and logins, login tracking (tracking.py): blocks and one mail each."""
    if not tracking.wanted(ctx.config):
        return
    # a dry run recorded nothing: what is stored and what this run found are judged together
    actions = tracking.decide(ctx.config, ctx.state, extra=accounts if ctx.dry_run else ())
    if actions and ctx.config.logins.block and not ctx.dry_run:
        ctx.blocks.ensure_ready()
    for action, blocked in tracking.apply(ctx.config, ctx.state, ctx.blocks, actions, ctx.dry_run):
        done = f"blocked {', '.join(blocked)}" if blocked else "not blocked"
        ctx.say(f"{action.kind.replace('_', ' ')}: {action.reason}; " + ("dry run" if ctx.dry_run else done))
        if ctx.config.logins.alert and not ctx.dry_run and not getattr(ctx.args, "no_mail", False):
            ctx.mailer.alert(action.template, tracking.fields(ctx.config, action, blocked))


def _record(ctx, scans, rows: list, since: float, found: list, accounts: list) -> None:
    """The attempts, the login notices, the accounts' logins and the new cursors in one
    transaction: a crash before it reads the same lines again, after it nothing is counted
    twice."""
    attempts = AttemptStore(ctx.state)
    store = tracking.AccountStore(ctx.state) if tracking.wanted(ctx.config) else None
    with ctx.state:
        attempts.add(rows)
        attempts.prune(since)
        if store is not None:
            store.add(accounts)
            store.prune(time.time() - max(ctx.config.logins.interval, ctx.config.logins.dist_interval, 3600))
        for n in found:
            kind, addr, detail = notify.event(n)
            ctx.state.add_event(kind, addr, source=detail.pop("source"), when=n["time_seen"], **detail)
        for s in scans:
            if not s.error and s.cursor is not None:
                ctx.state.set_cursor(s.source.key, s.cursor)
            if s.lost:
                ctx.state.add_event("log_gap", source=s.source.name, why=s.lost)
            if s.forged:
                ctx.state.add_event(
                    "log_forged", source=s.source.name, count=len(s.forged), sample=s.forged[:5]
                )
            if s.overlong:
                ctx.state.add_event(
                    "log_overlong", source=s.source.name, count=s.overlong, limit=sources.MAX_LINE
                )


def _block(ctx, due: list) -> tuple[list, list]:
    cfg = ctx.config.logins
    blocked, skipped = [], []
    if due and cfg.block and not ctx.dry_run:
        ctx.blocks.ensure_ready()
    for service, addr, (failures, first, last) in due:
        if ctx.state.active_block(addr) is not None:
            continue
        reason = f"{service}: {failures} login failures in {int(last - first)} s"
        if not cfg.block:
            skipped.append((addr, "blocking is off (logins.block)"))
            continue
        if ctx.dry_run:
            why = ctx.blocks.refusal(ctx.blocks.parse_all([addr])[0])
            ctx.say(f"dry run: would block {addr} ({reason})" + (f"; refused: {why}" if why else ""))
            continue
        result = ctx.blocks.block(
            [addr], ttl=cfg.block_ttl, reason=reason, source="login-failures", strict=False
        )
        with ctx.state:
            AttemptStore(ctx.state).clear(service, addr)
            if result.refused:
                skipped.append((addr, result.refused[0][1]))
                ctx.state.add_event(
                    "login_ignored", addr, source=service, failures=failures, why=result.refused[0][1]
                )
                continue
            ctx.state.add_event(
                "login_block", addr, source=service, failures=failures, first=first, last=last
            )
        blocked.append((service, addr, failures, first, last))
        ctx.log.warning("blocked %s: %s", addr, reason)
    for addr, why in skipped:
        ctx.log.info("not blocking %s: %s", addr, why)
    return blocked, skipped


def _alert(ctx, scans, service: str, addr: str, failures: int, first: float, last: float) -> None:
    """lfd's alert, with the log lines that name the address."""
    from . import reading
    from .follow import alert_fields

    text = []
    for s in scans:
        for raw in (addr.encode(), f"::ffff:{addr}".encode()):
            text += reading.sample_lines(s, raw, ctx.config.logins.alert_lines)
    ctx.mailer.alert("alert", alert_fields(ctx.config, service, addr, failures, first, last, text))


def status(config, state) -> dict:
    """For `nightwarden status`: the sources present, and who reads each one now."""
    from . import reading

    present = reading.configured(config)
    if not present:
        return {
            "sources": "none present",
            "problem": "no log source present (logins.sources, logins.journal)",
        }
    followed = [src.name for src in present if reading.source_lock(config, src).holder() is not None]
    out = {"sources": ", ".join(s.name for s in present)}
    if followed:
        out["followed by the listener"] = ", ".join(followed)
    cfg = config.logins
    notices = [
        n for n, on in (("ssh", cfg.ssh_alert), ("su", cfg.su_alert), ("console", cfg.console_alert)) if on
    ]
    out["login notices"] = (", ".join(notices) + f" ({cfg.notify})") if notices else "off"
    tracked = [f"distributed attacks from {cfg.dist_attack} addresses"] if cfg.dist_attack else []
    tracked += [f"{svc} logins from {n} addresses" for svc, n in cfg.dist_login.items() if n]
    tracked += [f"{svc} over {n} logins an hour" for svc, n in cfg.tracking.items() if n]
    out["account tracking"] = "; ".join(tracked) or "off"
    return out
