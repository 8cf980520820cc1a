"""Account tracking over the login-failure reading: lfd's distributed-attack blocks
(LF_DISTATTACK), distributed logins (LF_DISTFTP, LF_DISTSMTP: one account logging in from many
addresses, a stolen password) and login tracking (LT_POP3D, LT_IMAPD: one account fetching mail
from one address too often in an hour).

Each read (the cron job's or the listener's) adds what it found per account to one table;
`decide` looks at the table and says what to block and mail. An address is blocked through the
block manager, so the allow and ignore lists win and a blocked address is not blocked again."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from nightwarden.lib.netaddr import display

MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS login_accounts (
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        service TEXT NOT NULL,
        user TEXT NOT NULL,
        address TEXT NOT NULL,
        count INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS login_accounts_key ON login_accounts(kind, service, user, time);
    CREATE INDEX IF NOT EXISTS login_accounts_time ON login_accounts(time);
    """,
]
HOUR = 3600
MAX_USER = 200  # characters of an account name kept (a client chooses it)


@dataclass
class Action:
    """What to do about one account: block these addresses (maybe none) and mail this."""

    kind: str  # dist_attack, dist_login, tracking
    service: str
    user: str
    addresses: list[str]
    ttl: int
    reason: str
    template: str
    fields: dict = field(default_factory=dict)


class AccountStore:
    def __init__(self, state):
        self.state = state
        state.migrate("login_accounts", MIGRATIONS)

    def add(self, rows: list[tuple]) -> None:
        """rows: (time, kind, service, user, address, count); kind 'fail' or 'ok'."""
        self.state.db.executemany(
            "INSERT INTO login_accounts(time, kind, service, user, address, count) VALUES (?,?,?,?,?,?)", rows
        )

    def prune(self, before: float) -> None:
        self.state.db.execute("DELETE FROM login_accounts WHERE time < ?", (before,))

    def per_account(
        self, kind: str, services: list[str], since: float, extra=()
    ) -> dict[tuple, dict[str, int]]:
        """(service, user) -> {address: count} from `since` on; `extra` rows (not stored) too."""
        if not services:
            return {}
        marks = ",".join("?" * len(services))
        out: dict[tuple, dict[str, int]] = {}
        rows = list(
            self.state.db.execute(
                f"SELECT service, user, address, SUM(count) FROM login_accounts WHERE kind = ? "
                f"AND service IN ({marks}) AND time >= ? GROUP BY service, user, address",
                (kind, *services, since),
            )
        )
        rows += [(s, u, a, n) for t, k, s, u, a, n in extra if k == kind and s in services and t >= since]
        for service, user, address, n in rows:
            per = out.setdefault((service, user), {})
            per[address] = per.get(address, 0) + n
        return out


def wanted(config) -> bool:
    """Whether any of it is on (else nothing is kept)."""
    cfg = config.logins
    return bool(cfg.dist_attack or any(cfg.dist_login.values()) or any(cfg.tracking.values()))


def rows_of(tally, now: float, history: bool = False) -> list[tuple]:
    """What a read found per account: failures (the tally's users, when it kept them) and
    successful logins from an address (at their lines' times). history: the first read of a
    log, whose failures have no time of their own here: they are left out rather than all
    counted as now."""
    from .counting import address

    rows = []
    for (service, raw, user), n in ({} if history else tally.users).items():
        addr = address(raw)
        name = user.decode("utf-8", "backslashreplace")[:MAX_USER]
        if addr and name:
            rows.append((now, "fail", service, name, addr, n))
    for t, service, user, addr, line in tally.successes:
        if addr and user:
            if service == "imapd" and "pop3-login:" in line:
                service = "pop3d"  # dovecot's one wording for both
            rows.append((t, "ok", service, user[:MAX_USER], addr, 1))
    return rows


def decide(config, state, now: float | None = None, extra=()) -> list[Action]:
    """What the table (and `extra` rows not stored) asks for now; addresses already blocked
    are left out, and an account whose addresses are all blocked (or that was mailed about
    within the window) is quiet."""
    cfg = config.logins
    now = time.time() if now is None else now
    store = AccountStore(state)
    out: list[Action] = []
    if cfg.dist_attack:
        since = now - cfg.interval
        for (service, user), addrs in store.per_account("fail", list(cfg.limits), since, extra).items():
            if len(addrs) >= cfg.dist_attack:
                out.append(
                    Action(
                        "dist_attack",
                        service,
                        user,
                        sorted(addrs),
                        cfg.block_ttl,
                        f"{service}: distributed attack on account {user!r} from {len(addrs)} addresses",
                        "distattack",
                    )
                )
    for service, uniq in cfg.dist_login.items():
        if not uniq:
            continue
        since = now - cfg.dist_interval
        for (svc, user), addrs in store.per_account("ok", [service], since, extra).items():
            if len(addrs) >= uniq:
                out.append(
                    Action(
                        "dist_login",
                        svc,
                        user,
                        sorted(addrs) if cfg.dist_login_block else [],
                        cfg.block_ttl,
                        f"{svc}: account {user!r} logged in from {len(addrs)} addresses",
                        "distlogin",
                        {"addresses": sorted(addrs)},
                    )
                )
    hour = now - now % HOUR
    for service, limit in cfg.tracking.items():
        if not limit:
            continue
        for (svc, user), addrs in store.per_account("ok", [service], hour, extra).items():
            for addr, n in addrs.items():
                if n > limit:
                    out.append(
                        Action(
                            "tracking",
                            svc,
                            user,
                            [addr],
                            max(60, int(hour + HOUR - now)),  # the rest of the hour
                            f"{svc}: {n} logins of {user!r} from one address this hour (limit {limit})",
                            "tracking",
                            {"count": n, "limit": limit},
                        )
                    )
    return [a for a in out if _fresh(state, a, now, config)]


def _fresh(state, action: Action, now: float, config) -> bool:
    """Not said already: an address neither blocked nor tried within the action's window
    (an allowed one is tried once, and refused), or, for an alert that blocks nothing, no
    mail about the account within the window."""
    import json

    cfg = config.logins
    window = {"dist_attack": cfg.interval, "dist_login": cfg.dist_interval, "tracking": now % HOUR}
    said: set = set()
    before = False
    for e in state.events(now - window[action.kind], kind=action.kind):
        d = json.loads(e["detail"] or "{}")
        if d.get("user") == action.user and d.get("service") == action.service:
            before = True
            said.update(d.get("addresses", []))
    action.addresses = [a for a in action.addresses if a not in said and state.active_block(a) is None]
    if action.addresses:
        return True
    return action.kind == "dist_login" and not cfg.dist_login_block and not before


def fields(config, action: Action, blocked: list[str]) -> dict:
    """The alert's fields: every address the account was seen from, and which were blocked
    (an allowed or ignored one is not)."""
    shown = action.fields.get("addresses", action.addresses)
    if blocked:
        block = f"{len(blocked)} address(es), temporary, {action.ttl} s"
    elif action.addresses:
        block = "none (allowed, ignored, or blocking is off)"
    else:
        block = "not blocked (logins.dist_login_block)"
    return {
        "service": action.service,
        "user": action.user,
        "reason": action.reason,
        "count": len(shown),
        "addresses": "\n".join(f"{a}{'' if a in blocked else '  (not blocked)'}" for a in shown[:200]),
        "block": block,
        **{k: v for k, v in action.fields.items() if k != "addresses"},
    }


def apply(config, state, mgr, actions: list[Action], dry_run: bool) -> list[tuple[Action, list[str]]]:
    """Blocks through the block manager (lists win); (action, addresses blocked) each, and an
    event per action."""
    done = []
    for a in actions:
        blocked: list[str] = []
        if a.addresses and config.logins.block and not dry_run:
            source = f"login-{a.kind.replace('_', '-')}"
            result = mgr.block(a.addresses, ttl=a.ttl, reason=a.reason, source=source, strict=False)
            blocked = [display(x) for x in result.added]
        if not dry_run:
            detail = dict(
                service=a.service, user=a.user, addresses=a.addresses, blocked=blocked, reason=a.reason
            )
            with state:  # one event per address (grep finds it), or one for the account
                for addr in a.addresses or [None]:
                    state.add_event(a.kind, addr, source=a.service, **detail)
        done.append((a, blocked))
    return done
