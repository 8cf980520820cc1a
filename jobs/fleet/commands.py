"""`nightwarden fleet ...`: init, join, status, block, unblock, allow, decisions, report,
authority."""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from nightwarden.lib.cli.command import Command
from nightwarden.lib.errors import CantCreateError, DataError, RefusedError, UnavailableError, UsageError

ACTIONS = ("init", "join", "status", "block", "unblock", "allow", "decisions", "report", "authority")
PASSPHRASE = "NIGHTWARDEN_FLEET_PASSPHRASE"  # the operator key's passphrase, if it has one


def _arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    i = sub.add_parser("init", help="the fleet key, the broker's users and configuration, a config per host")
    i.add_argument("dir", help="a new directory for the fleet's files (keep it on the admin box)")
    i.add_argument("--hosts", nargs="+", required=True, metavar="HOST", help="the fleet's host names")
    i.add_argument("--server", required=True, help="the broker's address as hosts reach it (nats://IP:4222)")
    i.add_argument("--listen", default="0.0.0.0:4222", help="where the broker listens")
    i.add_argument("--group", action="append", default=[], metavar="HOST=GROUP", help="put a host in a group")
    j = sub.add_parser("join", help="on a host: take its configuration and credentials from `fleet init`")
    j.add_argument("snippet", help="HOST.toml from `fleet init`")
    j.add_argument("credentials", help="HOST.creds from `fleet init`")
    j.add_argument("--no-check", action="store_true", help="do not connect to the broker to check")
    s = sub.add_parser("status", help="hosts, when last seen, version, decisions applied, lag")
    s.add_argument("--json", action="store_true")
    for action, what in (("block", "block"), ("unblock", "lift every block of"), ("allow", "allow")):
        b = sub.add_parser(action, help=f"{what} an address or network on every host (operator-signed)")
        b.add_argument("address", metavar="IP|CIDR")
        b.add_argument("--reason", default="", help="why (in every host's block list and the report)")
        b.add_argument("--scope", default="fleet", help="fleet (default), group:NAME or host:NAME")
        b.add_argument("--key", help="the operator's private key (default: <config dir>/fleet/operator.key)")
        if action != "unblock":
            b.add_argument("--ttl", help="how long: seconds or 30m, 6h, 7d (default: until lifted)")
    d = sub.add_parser("decisions", help="the decisions in force")
    d.add_argument("--json", action="store_true")
    r = sub.add_parser("report", help="mail the fleet's morning digest")
    r.add_argument("--no-mail", action="store_true", help="write it, do not mail it")
    r.add_argument("--hours", type=int, help="the period (default fleet.report_hours)")
    a = sub.add_parser("authority", help="the resident authority: evidence in, signed decisions out")
    a.add_argument("--name", default="", help="this authority's name (default: the host name)")


def fleet(ctx) -> int:
    return globals()["_" + ctx.args.action](ctx)


# -- init and join -----------------------------------------------------------------------------
def _init(ctx) -> int:
    import bcrypt

    from . import broker, signing
    from .settings import NAME

    args = ctx.args
    hosts = list(dict.fromkeys(args.hosts))
    for h in hosts + [g.partition("=")[2] for g in args.group]:
        if not NAME.match(h) or h in ("authority", "operator"):
            raise UsageError(
                f"{h!r}: a host or group name is lower-case letters, digits and '-' (not authority, operator)"
            )
    groups: dict[str, list[str]] = {}
    for g in args.group:
        host, _, group = g.partition("=")
        if host not in hosts:
            raise UsageError(f"--group {g}: {host} is not one of --hosts")
        groups.setdefault(host, []).append(group)
    if not args.server.startswith(("nats://", "tls://")):
        raise UsageError(f"--server {args.server}: write it nats://HOST:PORT")
    d = Path(args.dir).absolute()
    try:
        d.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        raise CantCreateError(f"{d}: exists; `fleet init` makes a new fleet in a new directory") from None
    passphrase = os.environ.get(PASSPHRASE, "").encode() or None
    fleet_key = signing.new_key(d / "fleet.key")
    operator_key = signing.new_key(d / "operator.key", passphrase)
    hashes = {}
    common = {
        "servers": [args.server],
        "fleet_key": signing.public_text(fleet_key),
        "operator_key": signing.public_text(operator_key),
    }
    for user in ["authority", "operator", *hosts]:
        password = secrets.token_urlsafe(24)
        hashes[user] = bcrypt.hashpw(password.encode(), bcrypt.gensalt(11)).decode()
        broker.write_private(d / f"{user}.creds", f'user = "{user}"\npassword = "{password}"\n')
        fleet = dict(common, credentials=f"/etc/nightwarden/fleet/{user}.creds")
        if user not in ("authority", "operator"):
            fleet.update(host=user, groups=groups.get(user, []))
        else:
            fleet.update(apply=False, publish=False)
        if user == "authority":
            fleet["signing_key"] = "/etc/nightwarden/fleet/fleet.key"
        broker.write_private(d / f"{user}.toml", _toml({"fleet": fleet}))
    broker.write_private(d / "nats-server.conf", broker.server_config(d / "jetstream", args.listen, hashes))
    ctx.say(
        f"fleet in {d}: {len(hosts)} host(s), fleet key {common['fleet_key']}\n"
        f"  broker:    nats-server -c {d}/nats-server.conf   (JetStream; keep {d} private)\n"
        f"  authority: copy fleet.key, authority.toml, authority.creds; nightwarden fleet join authority.toml"
        f" authority.creds; nightwarden fleet authority\n"
        f"  each host: copy HOST.toml and HOST.creds; nightwarden fleet join HOST.toml HOST.creds;"
        f" restart the listener\n"
        f"  operator:  keep operator.key (and operator.toml, operator.creds) for fleet block|unblock|allow"
    )
    return 0


def _toml(data: dict) -> str:
    from nightwarden.lib.config import to_toml

    return to_toml(data)


def _join(ctx) -> int:
    import tomllib

    from . import broker

    args = ctx.args
    try:
        snippet = tomllib.loads(Path(args.snippet).read_text())
        fleet = snippet["fleet"]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{args.snippet}: not a fleet configuration from `fleet init` ({e})") from None
    user, _password = broker.read_credentials(Path(args.credentials))
    target = ctx.config.config_dir / "fleet"
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    creds = target / f"{user}.creds"
    text = Path(args.credentials).read_text()
    tmp = creds.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    broker.write_private(tmp, text)
    os.replace(tmp, creds)
    fleet["credentials"] = str(creds)
    if fleet.get("signing_key"):
        fleet["signing_key"] = str(target / "fleet.key")
        if not (target / "fleet.key").exists():
            ctx.say(f"put the fleet's private key in {target / 'fleet.key'} (mode 0600) for the authority")
    confd = ctx.config.config_dir / "conf.d"
    confd.mkdir(mode=0o755, parents=True, exist_ok=True)
    from nightwarden.lib.fsutil import atomic_write

    atomic_write(confd / "fleet.toml", _toml({"fleet": fleet}).encode(), 0o640)
    ctx.say(f"joined as {user}: {confd / 'fleet.toml'}, {creds}")
    if not args.no_check:
        from nightwarden.jobs import load_config

        from . import reader

        cfg = load_config(str(ctx.config.files[0]) if ctx.config.files else None)
        found = reader.run(cfg, str(creds), f"nightwarden join {user}", reader.decisions)
        ctx.say(f"the broker answers: {len(found)} decision(s) in the bucket")
    return 0


# -- looking -------------------------------------------------------------------------------------
def _status(ctx) -> int:
    from nightwarden.lib.cli.output import iso, table, when

    from . import reader

    cfg = ctx.config.fleet
    seen = reader.run(ctx.config, cfg.credentials, "nightwarden fleet status", reader.hosts)
    now = time.time()
    rows = []
    for host, info in sorted(seen.items()):
        st = info.get("status", {})
        last = st.get("received")
        rows.append(
            {
                "host": host,
                "last_seen": last,
                "silent": bool(last is None or now - last > 3 * max(cfg.heartbeat, 10)),
                "version": st.get("version", ""),
                "applied": st.get("applied"),
                "refused": st.get("refused"),
                "lag": st.get("lag"),
                "published": st.get("published"),
                "summary": (info.get("summary") or {}).get("received"),
            }
        )
    if ctx.args.json:
        for r in rows:
            r["last_seen"], r["summary"] = iso(r["last_seen"]), iso(r["summary"])
        print(json.dumps({"hosts": rows}, indent=1))
        return 0
    if not rows:
        ctx.say("no host has reported yet")
        return 0
    print(
        table(
            [
                [
                    r["host"],
                    when(r["last_seen"]) + (" (silent)" if r["silent"] else ""),
                    r["version"],
                    r["applied"],
                    r["lag"],
                    r["refused"],
                    when(r["summary"]),
                ]
                for r in rows
            ],
            ["host", "last seen", "version", "applied", "lag", "refused", "last summary"],
        )
    )
    return 0


def _decisions(ctx) -> int:
    from nightwarden.lib.cli.output import iso, table, when

    from . import reader, signing

    cfg = ctx.config.fleet
    verifier = signing.Verifier(signing.public_key(cfg.fleet_key, "fleet_key")) if cfg.fleet_key else None
    found = reader.run(ctx.config, cfg.credentials, "nightwarden fleet decisions", reader.decisions, verifier)
    now = time.time()
    rows = [(k, d, t) for k, d, _rev, t in found if d is None or d.action != "block" or d.in_force(now)]
    if ctx.args.json:
        print(
            json.dumps(
                [
                    {"key": k, "trouble": t}
                    if d is None
                    else {
                        "key": k,
                        "action": d.action,
                        "target": d.target,
                        "scope": d.scope,
                        "to": d.to,
                        "issued": iso(d.issued),
                        "issued_unix": d.issued,
                        "expires": iso(d.expires),
                        "expires_in": None if d.expires is None else max(0, int(d.expires - now)),
                        "by": d.by,
                        "reason": d.reason,
                        "evidence": d.evidence,
                        "seq": d.seq,
                    }
                    for k, d, t in rows
                ],
                indent=1,
            )
        )
        return 0
    print(
        table(
            [
                [k, "NOT SIGNED: " + t, "", "", "", ""]
                if d is None
                else [
                    d.target,
                    d.action,
                    d.scope + (f" {d.to}" if d.to else ""),
                    when(d.expires) if d.expires else "until lifted",
                    d.by,
                    d.reason,
                ]
                for k, d, t in rows
            ],
            ["target", "action", "scope", "until", "by", "reason"],
        )
        if rows
        else "no decisions in force"
    )
    return 0


# -- an operator's commands ------------------------------------------------------------------------
def _scope(text: str) -> tuple[str, str]:
    from .settings import NAME

    kind, _, name = text.partition(":")
    if kind == "fleet" and not name:
        return "fleet", ""
    if kind in ("group", "host") and NAME.match(name):
        return kind, name
    raise UsageError(f"--scope {text}: fleet, group:NAME or host:NAME")


def _operator(ctx, action: str) -> int:

    from nightwarden.lib.blocks import validate_ttl
    from nightwarden.lib.netaddr import display, parse_network

    from . import decisions, reader, signing
    from .broker import COMMANDS

    args = ctx.args
    target = display(parse_network(args.address))
    scope, to = _scope(args.scope)
    ttl = getattr(args, "ttl", None)
    ttl = None if ttl is None else (validate_ttl(ttl) or None)
    key_path = Path(args.key) if args.key else ctx.config.config_dir / "fleet" / "operator.key"
    passphrase = os.environ.get(PASSPHRASE, "").encode() or None
    key = signing.load_key(key_path, "operator key", passphrase)
    cmd = decisions.operator_command(
        action, target, scope, to, ttl, args.reason or f"{action} by the operator"
    )
    signed = decisions.sign_operator(key, cmd)

    async def send(nc):
        from nats.errors import NoRespondersError
        from nats.errors import TimeoutError as NatsTimeout

        try:
            msg = await nc.request(f"{COMMANDS}.{action}", json.dumps(signed).encode(), timeout=15)
        except (NoRespondersError, NatsTimeout):
            raise UnavailableError(
                "no fleet authority answered (is `nightwarden fleet authority` running?)"
            ) from None
        return json.loads(msg.data)

    answer = reader.run(ctx.config, ctx.config.fleet.credentials, "nightwarden operator", send)
    if not answer.get("ok"):
        raise RefusedError(f"the authority refused: {answer.get('error')}")
    where = "every host" if scope == "fleet" else f"{scope} {to}"
    ctx.say(f"fleet: {action} {target} on {where} (decision {answer['key']}, revision {answer['seq']})")
    return 0


def _block(ctx) -> int:
    return _operator(ctx, "block")


def _unblock(ctx) -> int:
    return _operator(ctx, "unblock")


def _allow(ctx) -> int:
    return _operator(ctx, "allow")


# -- the report and the authority -------------------------------------------------------------------
def _report(ctx) -> int:
    from nightwarden.lib.runner import run_job

    from . import report

    return run_job(report, ctx.config, ctx.args, False)


def _authority(ctx) -> int:
    from . import authority

    name = ctx.args.name or ctx.config.hostname.split(".")[0].lower()
    try:
        return authority.run(ctx.config, name)
    except KeyboardInterrupt:
        return 0


COMMANDS = [
    Command(
        "fleet",
        "the fleet over NATS: init, join, status, block, unblock, allow, decisions, report, authority",
        fleet,
        _arguments,
        read_only_actions=("status", "decisions"),
    )
]
